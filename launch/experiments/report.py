#!/usr/bin/env python3
"""Markdown reports (+ gnuplot summary plots) for launch/experiments/*.sh.

A hand-written "## Discussion" section (and everything after it) of an existing report is kept
when the report is regenerated, so the committed interpretation survives a re-run.
"""
import argparse
import json
import os
import subprocess
import sys



REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rel(path):
    """Repository-relative path (../ for shared data beside it): reports name no machine path."""
    return os.path.relpath(os.path.abspath(path), REPO)

def read_jsonl(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line.replace("-nan", "null").replace("nan", "null")))
    return out


def manifest(corpus):
    m = {}
    with open(os.path.join(corpus, "manifest.txt")) as f:
        for line in f:
            if line.startswith("#"):
                continue
            parts = line.split(None, 1)
            if len(parts) == 2:
                m[parts[0]] = parts[1].strip()
    return m


def data_section(args):
    m = manifest(args.corpus)
    docs, toks, ev = int(m.get("documents", 0)), int(m.get("tokens", 0)), int(m.get("eval_documents", 0))
    return (f"- corpus: `{rel(args.corpus)}` ({m.get('input', '?')}): {docs:,} documents, "
            f"{toks:,} tokens, {ev:,} held-out documents (eval_fraction {m.get('eval_fraction')}); "
            f"sequences pack the following documents (`data.pack_documents: true`)\n"
            f"- vocab: `{rel(args.vocab)}` ({m.get('vocab_size')} entries)\n")


def machine(runs):
    with open(os.path.join(runs, "experiment.txt")) as f:
        return f.read().strip()


def keep_discussion(path, fallback):
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        i = text.find("\n## Discussion")
        if i >= 0:
            return text[i + 1:]
    return fallback


def gnuplot(script):
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        sys.exit("gnuplot failed: " + r.stderr)


def terminal():
    r = subprocess.run(["gnuplot", "-e", "set terminal"], text=True, capture_output=True)
    return "pngcairo size 900,520" if "pngcairo" in (r.stdout + r.stderr) else "png size 900,520"


def ln_variants(args):
    lrs, variants = args.lrs.split(), args.variants.split()
    rows = {}
    for v in variants:
        for lr in lrs:
            d = os.path.join(args.runs, f"{v}_lr{lr}")
            recs = read_jsonl(os.path.join(d, "metrics.jsonl"))
            ev = [r for r in recs if "eval_mlm_acc" in r]
            tr = [r for r in recs if "loss" in r]
            with open(os.path.join(d, "wall_s")) as f:
                wall = float(f.read())
            last = ev[-1]
            rows[(v, lr)] = dict(
                loss=last.get("eval_mlm_loss"), acc=last.get("eval_mlm_acc"),
                best=max((r["eval_mlm_acc"] or 0) for r in ev), step=int(last["step"]),
                train=tr[-1].get("loss") if tr else None,
                skipped=int(tr[-1].get("skipped_steps", 0)) if tr else 0, wall=wall)

    def fmt(x, p=4):
        return "nan" if x is None else f"{x:.{p}f}"

    # Summary plot: final held-out accuracy and loss against the learning rate.
    dat = os.path.join(args.runs, "lr-sweep.dat")
    with open(dat, "w") as f:
        for v in variants:
            f.write(f"# {v}\n")
            for lr in lrs:
                r = rows[(v, lr)]
                f.write(f"{lr} {r['acc'] if r['acc'] is not None else 'NaN'} "
                        f"{r['loss'] if r['loss'] is not None else 'NaN'}\n")
            f.write("\n\n")
    png = os.path.join(args.report, "ln-variants-lr-sweep.png")
    plots_acc = ", ".join(f"'{dat}' index {i} using 1:2 with linespoints lw 2 pt 7 title '{v}'"
                          for i, v in enumerate(variants))
    plots_loss = ", ".join(f"'{dat}' index {i} using 1:3 with linespoints lw 2 pt 7 title '{v}'"
                           for i, v in enumerate(variants))
    logx = "set logscale x\n" if len(lrs) > 1 else ""
    gnuplot(f"""set terminal {terminal()}
set termoption noenhanced
set output '{png}'
set multiplot layout 1,2 title 'ln-variants ({args.scale}): final held-out MLM vs peak learning rate'
{logx}set grid
set xlabel 'peak lr'
set key bottom left
set ylabel 'held-out MLM accuracy'
plot {plots_acc}
set ylabel 'held-out MLM loss'
set key top left
plot {plots_loss}
unset multiplot
""")

    t = []
    t.append("| variant | " + " | ".join(f"lr {lr}: loss / acc" for lr in lrs) + " | best lr | acc spread over lrs |")
    t.append("|---|" + "---|" * len(lrs) + "---|---|")
    for v in variants:
        accs = [(rows[(v, lr)]["acc"] or 0.0) for lr in lrs]
        best_lr = lrs[max(range(len(lrs)), key=lambda i: accs[i])]
        spread = max(accs) - min(accs)
        t.append(f"| {v} | " + " | ".join(
            f"{fmt(rows[(v, lr)]['loss'], 3)} / {fmt(rows[(v, lr)]['acc'])}" for lr in lrs) +
                 f" | {best_lr} | {spread * 100:.2f} points |")
    detail = ["| run | final held-out MLM loss | final acc | best acc | last train loss (MLM+SOP) | skipped steps | wall s |",
              "|---|---|---|---|---|---|---|"]
    for lr in lrs:
        for v in variants:
            r = rows[(v, lr)]
            detail.append(f"| {v}, lr {lr} | {fmt(r['loss'])} | {fmt(r['acc'])} | {fmt(r['best'])} | "
                          f"{fmt(r['train'])} | {r['skipped']} | {r['wall']:.0f} |")
    # Ranked by held-out loss (accuracy ties when models still predict mostly frequent tokens).
    def key(v, lr):
        loss = rows[(v, lr)]["loss"]
        return float("inf") if loss is None else loss

    order = []
    for lr in lrs:
        ranked = sorted(variants, key=lambda v: key(v, lr))
        order.append(f"- lr {lr}: " + " < ".join(
            f"{v} ({fmt(rows[(v, lr)]['loss'])}, {(rows[(v, lr)]['acc'] or 0) * 100:.2f}%)"
            for v in ranked))
    best_of = {v: min(key(v, lr) for lr in lrs) for v in variants}
    ranked = sorted(variants, key=lambda v: best_of[v])
    order.append("- each at its best lr: " + " < ".join(f"{v} ({best_of[v]:.4f})" for v in ranked))
    masked = [r.get("eval_sequences") for r in read_jsonl(os.path.join(
        args.runs, f"{variants[0]}_lr{lrs[0]}", "metrics.jsonl")) if "eval_sequences" in r]
    runs_wall = sum(r["wall"] for r in rows.values())
    plots = "\n".join(f"![lr {lr}](ln-variants-lr{lr}.png)" for lr in lrs)
    path = os.path.join(args.report, "ln-variants.md")
    fallback = "## Discussion\n\n(not written yet)\n"
    md = f"""# Post-LN vs Pre-LN vs RealFormer at small scale (+ learning-rate sweep)

Generated by `launch/experiments/ln_variants.sh` (scale `{args.scale}`) through
`launch/experiments/report.py`; the Discussion section at the end is written by hand and kept when
the report is regenerated.

Claim under test (seeds.md §1.2–1.3, the RealFormer post/paper): held-out MLM quality ranks
**RealFormer ≥ Post-LN ≥ Pre-LN**, and RealFormer is robust to the learning rate. Paper Table 2 (MLM dev
accuracy Post-LN / Pre-LN / RealFormer, recalled, **unverified**): Small 61.57 / 61.67 / 62.02,
Base 70.20 / 69.74 / 70.42, Large 73.64 / 73.21 / 73.94 — models of 30M–340M parameters trained for
up to 1M steps, i.e. orders of magnitude beyond this run.

## Setup

```
{machine(args.runs)}
```

- model: {args.model}, dropout 0.1, RoPE, sqrt_d attention scale; variants:
  `post-ln` (default), `pre-ln` (`--set model.pre_ln=true`, with a final LayerNorm),
  `realformer` (Post-LN + residual attention scores, running sum: `--set model.realformer=true`)
- training: {args.train}; MLM (15%) + SOP; AdamW (β 0.9/0.999, wd 0.01), grad clip 1.0, seed 1234
  for every run, so every run sees the same batches in the same order with the same masks
- learning rates: {", ".join(lrs)}
{data_section(args)}- seeds: 1 per configuration
- wall time: the {len(rows)} training runs {runs_wall:.0f} s in all, whole script {args.total_seconds} s\n- held-out set: the first {int(masked[-1]) if masked else '?'} held-out sequences (the same ones at every evaluation and for every run)

## Results

Final held-out MLM loss / accuracy (step {rows[(variants[0], lrs[0])]['step']}):

{chr(10).join(t)}

{chr(10).join(detail)}

Ranking by final held-out MLM loss (lower is better; loss, accuracy):

{chr(10).join(order)}

![lr sweep](ln-variants-lr-sweep.png)

Held-out curves per learning rate (`roformer plot`; panels: eval MLM loss, eval MLM accuracy, train
loss, grad norm):

{plots}

## Reproducibility

The same configuration (realformer, lr {args.determinism_lr}, {args.determinism_steps} steps) was
trained twice with the same seed and thread count: metrics.jsonl (every field except timings) was
**{args.determinism}**.

"""
    md += keep_discussion(path, fallback)
    with open(path, "w") as f:
        f.write(md)


POST = {"sqrt_d": [43.27, 36.53, 23.02, 15.12, 11.54], "log_n": [43.11, 41.17, 34.04, 20.15, 13.58]}
POST_LENS = [64, 128, 256, 512, 1024]


def length_extrapolation(args):
    evals = read_jsonl(os.path.join(args.runs, "eval.jsonl"))
    models = []
    res = {}
    for e in evals:
        m, r = e["model"], e["result"]
        if m not in models:
            models.append(m)
        res[(m, r["seq_len"])] = r
    lens = sorted({n for (_, n) in res})
    dat = os.path.join(args.runs, "acc-vs-length.dat")
    with open(dat, "w") as f:
        for m in models:
            f.write(f"# {m}\n")
            for n in lens:
                f.write(f"{n} {res[(m, n)]['mlm_acc'] * 100}\n")
            f.write("\n\n")
        for m in ("sqrt_d", "log_n"):
            f.write(f"# post {m}\n")
            for n, a in zip(POST_LENS, POST[m]):
                f.write(f"{n} {a}\n")
            f.write("\n\n")
    png = os.path.join(args.report, "length-extrapolation.png")
    names = models + ["post: Attention-O (sqrt_d)", "post: Attention-E (log_n)"]
    styles = ["lw 2 pt 7"] * len(models) + ["dt 2 lw 1 pt 6"] * 2
    plots = ", ".join(f"'{dat}' index {i} using 1:2 with linespoints {s} title '{n}'"
                      for i, (n, s) in enumerate(zip(names, styles)))
    gnuplot(f"""set terminal {terminal()}
set termoption noenhanced
set output '{png}'
set title 'held-out MLM accuracy vs length, trained at 64 ({args.scale}); dashed: the post (seeds.md 7.4)'
set logscale x 2
set grid
set xlabel 'sequence length n'
set ylabel 'MLM accuracy (%)'
set key top right
plot {plots}
""")
    head = "| model | " + " | ".join(f"n={n}" for n in lens) + " |"
    sep = "|---|" + "---|" * len(lens)
    acc = [head, sep]
    for m in models:
        acc.append(f"| {m} | " + " | ".join(f"{res[(m, n)]['mlm_acc'] * 100:.2f}" for n in lens) + " |")
    for m, label in (("sqrt_d", "post: Attention-O"), ("log_n", "post: Attention-E")):
        vals = dict(zip(POST_LENS, POST[m]))
        acc.append(f"| {label} | " + " | ".join(f"{vals[n]:.2f}" if n in vals else "–" for n in lens) + " |")
    loss = [head, sep]
    for m in models:
        loss.append(f"| {m} | " + " | ".join(f"{res[(m, n)]['mlm_loss']:.3f}" for n in lens) + " |")
    if "sqrt_d" in models and "log_n" in models:
        loss_gap = "| log_n − sqrt_d accuracy (points) | " + " | ".join(
            f"{(res[('log_n', n)]['mlm_acc'] - res[('sqrt_d', n)]['mlm_acc']) * 100:+.2f}" for n in lens) + " |"
        post_gap = {n: b - a for n, a, b in zip(POST_LENS, POST["sqrt_d"], POST["log_n"])}
        gap = [head.replace("| model |", "| |"), sep, loss_gap,
               "| the post (points) | " + " | ".join(f"{post_gap[n]:+.2f}" if n in post_gap else "–" for n in lens) + " |"]
    else:
        gap = []
    r0 = res[(models[0], lens[0])]
    data_rows = ["| n | held-out sequences | distinct held-out chunks at n | mean real tokens / sequence | fill | full sequences | masked tokens scored |",
                 "|---|---|---|---|---|---|---|"]
    for n in lens:
        r = res[(models[0], n)]
        data_rows.append(f"| {n} | {r['sequences']} | {r['eval_chunks']} | {r['mean_real_tokens']:.1f} | "
                         f"{r['fill'] * 100:.1f}% | {r['full_sequences']} | {r['masked_tokens']} |")
    evtime = sum(r["seconds"] for r in res.values())
    train_wall = {}
    for m in ("sqrt_d", "log_n"):
        with open(os.path.join(args.runs, m, "wall_s")) as f:
            train_wall[m] = float(f.read())
    path = os.path.join(args.report, "length-extrapolation.md")
    md = f"""# Length extrapolation: Attention-O (sqrt_d) vs Attention-E (log_n), trained at 64

Generated by `launch/experiments/length_extrapolation.sh` (scale `{args.scale}`) through
`launch/experiments/report.py`; the Discussion section at the end is written by hand and kept when
the report is regenerated.

Claim under test (seeds.md §7.4, kexue.fm 8823): with the entropy-invariant scale
softmax(log₅₁₂(n)·QKᵀ/√d) a RoFormer trained with MLM at length 64 keeps more of its MLM accuracy at
longer lengths; the post reports Attention-E more than 10 points ahead at n=256 (its model, data and
steps are not given; "RoFormer-small").

## Setup

```
{machine(args.runs)}
```

- model: {args.model}, dropout 0, Post-LN, RoPE; `model.attention_scale` `sqrt_d` vs `log_n`
  (log₅₁₂(max(n,16))/√d, n = unmasked keys); `max_position_embeddings: 64` in training
- training: {args.train}; MLM (15%) + SOP; seed 1234 for both runs (same batches and masks)
{data_section(args)}- evaluation: `roformer eval-mlm --ckpt RUN/checkpoints --corpus SHARDS --vocab V --seq-len n
  --samples K --seed 4321` (dropout off; RoPE table widened to n; held-out documents packed with
  the following held-out documents so long sequences are full). `sqrt_d+log_n@eval` is the sqrt_d
  model evaluated with `--set model.attention_scale=log_n` (the log-n factor at inference only).
- seeds: 1 training seed per model
- wall time: training {args.train_seconds} s (sqrt_d {train_wall['sqrt_d']:.0f} s, log_n
  {train_wall['log_n']:.0f} s), evaluation {args.eval_seconds} s ({evtime:.0f} s inside eval-mlm),
  whole script {args.total_seconds} s

Held-out sequences at each length (same for every model):

{chr(10).join(data_rows)}

## Results

Held-out MLM accuracy (%):

{chr(10).join(acc)}

{chr(10).join(gap)}

Held-out MLM loss:

{chr(10).join(loss)}

![accuracy vs length](length-extrapolation.png)

Training curves at length 64 (`roformer plot`):

![training](length-extrapolation-train.png)

## Reproducibility

`roformer eval-mlm` run twice on the same checkpoint, length and seed printed **{args.determinism}**
numbers (loss, accuracy, SOP loss compared as printed).

"""
    md += keep_discussion(path, "## Discussion\n\n(not written yet)\n")
    with open(path, "w") as f:
        f.write(md)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("experiment", choices=["ln-variants", "length-extrapolation"])
    for a in ("runs", "report", "scale", "corpus", "vocab", "model", "train", "determinism",
              "train-seconds", "total-seconds", "eval-seconds", "lrs", "variants",
              "determinism-steps", "determinism-lr"):
        p.add_argument("--" + a, default="")
    args = p.parse_args()
    if args.experiment == "ln-variants":
        ln_variants(args)
    else:
        length_extrapolation(args)


if __name__ == "__main__":
    main()
