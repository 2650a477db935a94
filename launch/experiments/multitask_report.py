#!/usr/bin/env python3
"""Tables for docs/experiments/multitask.md from runs/multitask/{pt,ft}-<scheme>/metrics.jsonl.

Usage: python3 launch/experiments/multitask_report.py RUNS_DIR
"""
import json
import os
import re
import sys

runs = sys.argv[1]
schemes = ["fixed", "realtime", "gradnorm"]


def records(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def cpu(log):
    """CPU seconds and start time recorded by multitask.sh's `timed` wrapper."""
    text = open(log).read()
    m = re.search(r"cpu_seconds ([\d.]+) user ([\d.]+) sys, wall ([\d.]+)", text)
    start = re.search(r"^# (\S+) ", text)
    if not m:
        return "?", "?", start.group(1) if start else "?"
    return f"{float(m.group(1)) + float(m.group(2)):.0f}", m.group(3), start.group(1) if start else "?"


print("## (a) pretraining, held-out (eval) at each evaluation\n")
print("| scheme | step | eval MLM loss | eval MLM acc | eval SOP loss | eval SOP acc | w_mlm | w_sop | CPU s | wall s | started (UTC) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for s in schemes:
    p = os.path.join(runs, f"pt-{s}", "metrics.jsonl")
    if not os.path.exists(p):
        continue
    rs = records(p)
    w = {r["step"]: r for r in rs if "w_mlm" in r}
    c, wall, start = cpu(os.path.join(runs, f"pt-{s}.log"))
    for r in rs:
        if "eval_mlm_loss" not in r or r["step"] == 0:
            continue
        wr = w.get(r["step"], {})
        print(f"| {s} | {r['step']} | {r['eval_mlm_loss']:.4f} | {100 * r['eval_mlm_acc']:.2f}% | "
              f"{r['eval_sop_loss']:.4f} | {100 * r['eval_sop_acc']:.2f}% | "
              f"{wr.get('w_mlm', float('nan')):.4g} | {wr.get('w_sop', float('nan')):.4g} | {c} | {wall} | {start} |")

print("\n## (b) multi-task fine-tuning, dev accuracy (%) per epoch\n")
rows = []
for s in schemes:
    p = os.path.join(runs, f"ft-{s}", "metrics.jsonl")
    if not os.path.exists(p):
        continue
    rs = records(p)
    cfg = next(r for r in rs if r["event"] == "config")
    tasks = cfg["tasks"]
    c, wall, start = cpu(os.path.join(runs, f"ft-{s}.log"))
    if not rows:
        print("| scheme | epoch | " + " | ".join(tasks) + " | mean | " +
              " | ".join("w_" + t for t in tasks) + " | CPU s | wall s | started (UTC) |")
        print("|---|---|" + "---|" * (2 * len(tasks) + 4))
    for r in rs:
        if r["event"] != "epoch":
            continue
        rows.append(s)
        print(f"| {s} | {r['epoch']} | " +
              " | ".join(f"{r[t + '_dev_accuracy']:.2f}" for t in tasks) +
              f" | {r['mean_dev_accuracy']:.2f} | " +
              " | ".join(f"{r['w_' + t]:.3g}" for t in tasks) + f" | {c} | {wall} | {start} |")
