#!/bin/bash
# Progressive growth vs training the large model from scratch (issue #6, anchors-growth.md §4.6):
# a small RealFormer trained first, then grown losslessly 2x wide (heads x2, FFN x2) and one layer
# deeper by `roformer schedule`, against the large model trained from scratch with the same seed
# (same data order and masking) and the same total training FLOPs. Writes growth.md and
# growth-loss-vs-flops.png into --report: held-out MLM loss against cumulative training FLOPs, the
# pre/post-growth losses, and the FLOPs the staged run needs to reach the from-scratch run's final
# held-out loss. A control, the small model alone for the same FLOPs, shows whether a gain comes
# from growing or merely from the small model being the better use of a small budget.
# GROWTH_REUSE=1 keeps finished runs (those with a wall_s file) and only trains the missing ones.
#
#   bash launch/experiments/growth.sh [--scale smoke|small|full] [--bin PATH]
#        [--corpus SHARDS --vocab VOCAB] [--runs DIR] [--report DIR] [--threads N] [--jobs N]
#
# Scales (Post-LN RealFormer, RoPE, dropout 0.1, seed 1234; FLOPs = model/flops.h estimate):
#   smoke  H32 L2 A2 FFN64 -> H64 L3 A4 FFN128, seq 32, batch 8, a few steps (seconds)
#   small  H128 L2 A2 FFN512 -> H256 L3 A4 FFN1024, seq 64, batch 32; scratch 360 steps of the
#          large model; staged 480 small steps (lr 1e-3 constant after warmup) + 240 large steps
#          (re-warmup 20, linear decay); eval every 20 steps on 256 held-out sequences
#   full   H384 L6 A6 FFN1536 -> H768 L12 A12 FFN3072 (BERT-base), seq 128, batch 256 (not run here)
# Other flags: see launch/experiments/common.sh.
set -euo pipefail
EXP_NAME=growth
EXP_ARGS="$*"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
exp_parse_args "$@"

case "$SCALE" in
  smoke) H=32; L=2; A=2; F=64; H2=64; L2=3; A2=4; F2=128; SEQ=32; B=8; MICRO=8
         BASE=16; S0=16; S1=12; W0=2; W1=2; WB=2; EVAL_EVERY=4; EVAL_N=16; LR=1e-3 ;;
  small) H=128; L=2; A=2; F=512; H2=256; L2=3; A2=4; F2=1024; SEQ=64; B=32; MICRO=32
         BASE=360; S0=480; S1=240; W0=48; W1=20; WB=36; EVAL_EVERY=20; EVAL_N=256; LR=1e-3 ;;
  full) H=384; L=6; A=6; F=1536; H2=768; L2=12; A2=12; F2=3072; SEQ=128; B=256; MICRO=32
        BASE=20000; S0=24000; S1=14000; W0=2000; W1=500; WB=2000; EVAL_EVERY=500; EVAL_N=2048
        LR=5e-4 ;;
esac
# New layers of the grown model: spread evenly through the small stack (L=2 -> 3: one after layer 1).
INSERT=""
for ((i = 0; i < L2 - L; i++)); do INSERT+="insert_layers: $(( (i + 1) * L / (L2 - L + 1) )) "; done

base_block() {
  cat <<TXT
base {
  model {
    hidden_size: $H num_hidden_layers: $L num_attention_heads: $A intermediate_size: $F
    realformer: true max_position_embeddings: 512
  }
  train {
    micro_batch: $MICRO global_batch: $B seq_len: $SEQ lr: $LR lr_decay: "linear"
    log_every: $(( EVAL_EVERY / 2 > 0 ? EVAL_EVERY / 2 : 1 )) eval_every: $EVAL_EVERY
    eval_samples: $EVAL_N seed: 1234
  }
  data { corpus: "$CORPUS" vocab: "$VOCAB" pack_documents: true }
  checkpoint { every: 100 keep: 1 }
}
TXT
}
BIG="model { hidden_size: $H2 num_hidden_layers: $L2 num_attention_heads: $A2 intermediate_size: $F2 }"
{
  base_block
  echo "stages { name: \"small\" steps: $S0 config { train { warmup_steps: $W0 lr_decay: \"constant\" } } }"
  echo "stages { name: \"grown\" steps: $S1 config { $BIG train { warmup_steps: $W1 lr_decay: \"linear\" } }"
  echo "  growth { seed: 7 noise_scale: 0.1 $INSERT} }"
} > "$RUNS/staged.textproto"
{
  base_block
  echo "stages { name: \"scratch\" steps: $BASE config { $BIG train { warmup_steps: $WB } } }"
} > "$RUNS/scratch.textproto"
# Control: the small model alone for the same total FLOPs (stage 0 identical to the staged run's,
# then the rest of the budget at the small size with the grown stage's re-warmup and decay), so
# the report can tell a gain from growth from the small model merely being more compute-efficient
# at this budget. Its length uses the FLOPs estimate of model/flops.h.
VOCAB_N=$(wc -l < "$VOCAB")
SC=$(python3 - "$H" "$L" "$F" "$H2" "$L2" "$F2" "$SEQ" "$VOCAB_N" "$BASE" "$S0" <<'PY2'
import sys
h, l, f, h2, l2, f2, seq, vocab, base, s0 = map(int, sys.argv[1:])
def train_flops(H, L, I):  # model/flops.h: TrainFlopsPerSequence, tp = 1, masked = 0.15 (seq - 3)
    V = (vocab + 127) // 128 * 128
    masked = 0.15 * (seq - 3)
    enc = seq * L * (2.0 * (4 * H * H + 2 * H * I) + 4.0 * seq * H)
    return 3 * (enc + masked * 2.0 * (H * H + H * V) + 2.0 * (H * H + 2 * H))
print(max(1, round(base * train_flops(h2, l2, f2) / train_flops(h, l, f)) - s0))
PY2
)
{
  base_block
  echo "stages { name: \"small\" steps: $S0 config { train { warmup_steps: $W0 lr_decay: \"constant\" } } }"
  echo "stages { name: \"small-continued\" steps: $SC config { train { warmup_steps: $W1 lr_decay: \"linear\" eval_every: $(( EVAL_EVERY * 2 )) } } }"
} > "$RUNS/small.textproto"

run_plan() {  # name (GROWTH_REUSE=1: keep a finished run, e.g. after adding a run to the script)
  local t0 t1
  if [ -n "${GROWTH_REUSE:-}" ] && [ -f "$RUNS/$1/wall_s" ]; then
    echo "  $1: reused ($(cat "$RUNS/$1/wall_s") s)"
    return 0
  fi
  t0=$(date +%s.%N)
  # CPU seconds (user + system) next to the wall time: the dev VM is shared, so wall time says
  # little about cost.
  if ! /usr/bin/time -f "%U %S" -o "$RUNS/$1.cpu" \
      "$BIN" schedule --plan "$RUNS/$1.textproto" --run-dir "$RUNS/$1" --no-resume --force \
      > "$RUNS/$1.log" 2>&1; then
    echo "error: run $1 failed; last lines of $RUNS/$1.log:" >&2
    tail -20 "$RUNS/$1.log" >&2
    return 1
  fi
  t1=$(date +%s.%N)
  python3 -c "print(round($t1 - $t0, 1))" > "$RUNS/$1/wall_s"
  awk '{ print $1 + $2 }' "$RUNS/$1.cpu" > "$RUNS/$1/cpu_s"
  echo "  $1: $(cat "$RUNS/$1/wall_s") s wall, $(cat "$RUNS/$1/cpu_s") s CPU"
}
"$BIN" schedule --plan "$RUNS/staged.textproto" --dry-run
"$BIN" schedule --plan "$RUNS/scratch.textproto" --dry-run
"$BIN" schedule --plan "$RUNS/small.textproto" --dry-run
echo "training: staged ($S0 + $S1 steps), scratch ($BASE steps), small only ($S0 + $SC steps)"
printf 'run_plan staged\nrun_plan scratch\nrun_plan small\n' | exp_parallel
TRAIN_S=$(exp_elapsed)

python3 - "$RUNS" "$REPORT" "$SCALE" "$TRAIN_S" "$(relpath "$CORPUS")" "$(relpath "$VOCAB")" \
  "$EXP_ARGS" <<'PY'
import json, os, subprocess, sys
runs, report, scale, train_s, corpus, vocab, args = sys.argv[1:8]

def load(name):
    d = os.path.join(runs, name)
    stages = {}
    for line in open(os.path.join(d, "schedule.jsonl")):
        r = json.loads(line)
        stages[r["stage"]] = r
    evals = []  # (step, loss, order) in file order; a boundary step has the pre- and post-stage eval
    for line in open(os.path.join(d, "metrics.jsonl")):
        r = json.loads(line)
        if "eval_mlm_loss" in r:
            evals.append((int(r["step"]), r["eval_mlm_loss"]))
    def flops_at(step):
        f = 0.0
        for s in sorted(stages):
            st = stages[s]
            n = max(0, min(step, st["end_step"]) - st["first_step"])
            f += n * st["train_flops_per_step"]
        return f
    pts = [(flops_at(s), l, s) for s, l in evals]
    wall = float(open(os.path.join(d, "wall_s")).read())
    cpu_path = os.path.join(d, "cpu_s")
    cpu = float(open(cpu_path).read()) if os.path.exists(cpu_path) else float("nan")
    return stages, pts, wall, cpu

st_s, staged, wall_s, cpu_s = load("staged")
st_b, scratch, wall_b, cpu_b = load("scratch")
st_c, control, wall_c, cpu_c = load("small")
total_b = scratch[-1][0]
total_s = staged[-1][0]
final_b = scratch[-1][1]
final_s = staged[-1][1]
boundary = st_s[1]["first_step"]
pre = [l for f, l, s in staged if s == boundary]
growth_pre, growth_post = pre[0], pre[1] if len(pre) > 1 else float("nan")

def first_reach(pts, target):
    """FLOPs where the eval curve first gets to <= target (linear between eval points)."""
    prev = None
    for f, l, s in pts:
        if s == 0:  # the untrained model's loss is no target to reach
            continue
        if l <= target:
            if prev is None or prev[1] == l:
                return f
            f0, l0 = prev
            return f0 + (f - f0) * (l0 - target) / (l0 - l)
        prev = (f, l)
    return None

reach_s = first_reach(staged, final_b)
reach_b = first_reach(scratch, final_s)
reach_c = first_reach(control, final_b)
final_c = control[-1][1]
total_c = control[-1][0]
# Same stage 0 (seed, data, schedule): the staged and control runs must agree bit for bit there.
same0 = [l for f, l, s in staged if s < boundary] == [l for f, l, s in control if s < boundary]
with open(os.path.join(runs, "curves.dat"), "w") as out:
    for name, pts in (("staged", staged), ("scratch", scratch), ("small only", control)):
        out.write(f"# {name}\n")
        for f, l, s in pts:
            out.write(f"{f / 1e12:.6f} {l:.6f} {s}\n")
        out.write("\n\n")
png = os.path.join(report, "growth-loss-vs-flops.png")
gp = f"""set terminal pngcairo size 900,560 font ',11'
set output '{png}'
set title 'growth ({scale}): held-out MLM loss vs training FLOPs'
set xlabel 'cumulative training FLOPs (10^12, model/flops.h estimate)'
set ylabel 'held-out MLM loss ({st_b[0]["seq_len"]} tokens)'
set grid
set key top right
set yrange [*:{min(8.0, max(l for f, l, s in scratch if s > 0) + 0.3):.2f}]
set arrow from {boundary and staged[[s for f, l, s in staged].index(boundary)][0] / 1e12},graph 0 to {staged[[s for f, l, s in staged].index(boundary)][0] / 1e12},graph 1 nohead dt 2 lc rgb 'gray'
plot '{runs}/curves.dat' index 0 using 1:2 with linespoints pt 7 ps 0.6 title 'staged: small, grown at the dashed line', \\
     '' index 1 using 1:2 with linespoints pt 5 ps 0.6 title 'large from scratch', \\
     '' index 2 using 1:2 with lines dt 3 lw 2 title 'small only (control)'
"""
subprocess.run(["gnuplot"], input=gp.encode(), check=True)

def shape(st):
    return f"H{st['hidden']} L{st['layers']} A{st['heads']} FFN{st['intermediate']}"
pct = lambda x: f"{100 * x:.1f} %"
lines = []
lines.append("## Results (generated by launch/experiments/growth.sh)\n")
lines.append(f"- command: `bash launch/experiments/growth.sh {args}`; wall seconds per run (shared "
             f"VM): staged {wall_s:.0f}, scratch {wall_b:.0f}, small only {wall_c:.0f}; CPU seconds "
             f"{cpu_s:.0f}, {cpu_b:.0f}, {cpu_c:.0f}")
lines.append(f"- corpus `{corpus}`, vocab `{vocab}`; plans: `staged.textproto`, `scratch.textproto`, "
             "`small.textproto` in the runs directory")
lines.append(f"- staged: {shape(st_s[0])} for {st_s[0]['end_step']} steps, grown to {shape(st_s[1])} "
             f"for {st_s[1]['end_step'] - st_s[1]['first_step']} steps; scratch: {shape(st_b[0])} for "
             f"{st_b[0]['end_step']} steps; seq {st_b[0]['seq_len']}, batch {st_b[0]['global_batch']}")
lines.append(f"- training FLOPs per step: small {st_s[0]['train_flops_per_step']:.4g}, large "
             f"{st_s[1]['train_flops_per_step']:.4g}; totals: staged {total_s:.4g}, scratch {total_b:.4g}\n")
lines.append("| | staged | scratch |")
lines.append("|---|---|---|")
lines.append(f"| final held-out MLM loss | {final_s:.4f} | {final_b:.4f} |")
lines.append(f"| total training FLOPs | {total_s:.4g} | {total_b:.4g} |")
lines.append(f"| wall seconds (shared VM) | {wall_s:.0f} | {wall_b:.0f} |")
lines.append(f"| CPU seconds | {cpu_s:.0f} | {cpu_b:.0f} |")
lines.append("")
lines.append(f"- control, the small model alone for {st_c[1]['end_step']} steps ({total_c:.4g} FLOPs): "
             f"final held-out MLM loss {final_c:.4f}; its first {boundary} steps "
             f"{'match the staged run exactly' if same0 else 'DIFFER from the staged run'}")
if reach_c is not None:
    lines.append(f"- the small model alone reaches the scratch run's final loss {final_b:.4f} after "
                 f"{reach_c:.4g} FLOPs ({pct(reach_c / total_b)} of the scratch run's FLOPs)")
else:
    lines.append(f"- the small model alone does not reach the scratch run's final loss {final_b:.4f}")
lines.append("")
lines.append(f"- growth at step {boundary}: held-out MLM loss {growth_pre:.6f} before, {growth_post:.6f} "
             f"after (relative change {abs(growth_post - growth_pre) / growth_pre:.2g})")
if reach_s is not None:
    lines.append(f"- the staged run reaches the scratch run's final loss {final_b:.4f} after "
                 f"{reach_s:.4g} FLOPs = {pct(reach_s / total_b)} of the scratch run's FLOPs: "
                 f"**{pct(1 - reach_s / total_b)} saved**")
else:
    lines.append(f"- the staged run does **not** reach the scratch run's final loss {final_b:.4f} "
                 f"within its {total_s:.4g} FLOPs (its best: {min(l for f, l, s in staged):.4f})")
if reach_b is not None:
    lines.append(f"- the scratch run reaches the staged run's final loss {final_s:.4f} after "
                 f"{reach_b:.4g} FLOPs ({pct(reach_b / total_b)} of its total)")
lines.append("\n| FLOPs (1e12) | staged step | staged loss | scratch step | scratch loss |")
lines.append("|---|---|---|---|---|")
import itertools
for a, b in itertools.zip_longest(staged, scratch):
    c = lambda p: (f"{p[0] / 1e12:.3f}", str(p[2]), f"{p[1]:.4f}") if p else ("", "", "")
    fa, sa, la = c(a)
    fb, sb, lb = c(b)
    lines.append(f"| {fa} / {fb} | {sa} | {la} | {sb} | {lb} |")
lines.append("\n![loss vs FLOPs](growth-loss-vs-flops.png)\n")
body = "\n".join(lines) + "\n"
path = os.path.join(report, "growth.md")
head = "# Progressive growth vs from-scratch (loss vs FLOPs)\n\n"
tail = ""
if os.path.exists(path):
    old = open(path).read()
    i = old.find("## Results (generated")
    if i > 0:
        head = old[:i]
    j = old.find("## Discussion")
    if j >= 0:
        tail = old[j:]
open(path, "w").write(head + body + ("\n" + tail if tail else ""))
print(body)
PY
echo "report: $REPORT/growth.md ($(exp_elapsed) s in all)"
