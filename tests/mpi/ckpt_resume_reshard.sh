#!/usr/bin/env bash
# Checkpoint resume and resharding under mpirun (dropout on, RealFormer + RoPE, 4 heads):
#  1. bitwise resume: TP=2 x DP=2 for 6 steps == 3 steps, a fresh mpirun, 3 more (the split run
#     saves asynchronously, checkpoint.async: true): identical loss strings in metrics.jsonl and
#     bit-identical final weights and Adam state (`ckpt diff --tolerance 0`);
#  2. reshard: the TP=2 x DP=2 checkpoint after 3 steps resumes at TP=1 x DP=4 (vocab 600 padded
#     768 -> 640 rows) and at TP=4 x DP=1 (-> 1024 rows); step 4's loss matches the uninterrupted
#     run within 1e-5 relative, and the step-4 checkpoints match across layouts (`ckpt diff`);
#  3. ZeRO-1 DP=2 saved after 3 steps resumes single-process without ZeRO: step 4 matches.
set -euo pipefail
R=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT; [ -n "${KEEP:-}" ] && trap - EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
bash "$2/tests/make_tiny_corpus.sh" "$R" "$T" 13 300
COMMON=(--set model.hidden_size=32 --set model.num_hidden_layers=2 --set model.num_attention_heads=4
        --set model.intermediate_size=64 --set model.realformer=true --set model.max_position_embeddings=64
        --set train.steps=6 --set train.micro_batch=2 --set train.global_batch=8 --set train.seq_len=32
        --set train.lr=2e-3 --set train.warmup_steps=2 --set train.log_every=1 --set train.eval_every=0
        --set train.eval_samples=8 --set data.corpus="$T/shards" --set data.vocab="$T/vocab.txt"
        --set checkpoint.every=1 --set checkpoint.keep=100 --set parallel.watchdog_timeout_s=120)
MPI=(mpirun --oversubscribe --bind-to none)
run() {  # dir np extra-args...
  local dir=$1 np=$2; shift 2
  local log="$T/$(basename "$dir").$(date +%s%N).log"
  if [ "$np" -eq 1 ]; then
    "$R" pretrain "${COMMON[@]}" "$@" --run-dir "$dir" >"$log" 2>&1 || { cat "$log"; exit 1; }
  else
    "${MPI[@]}" -np "$np" "$R" pretrain "${COMMON[@]}" "$@" --run-dir "$dir" >"$log" 2>&1 || { cat "$log"; exit 1; }
  fi
  LAST_LOG=$log
}
losses() {  # metrics.jsonl -> "step loss-string" lines (the last record of each step wins)
  python3 - "$1" <<'PY'
import re, sys
out = {}
for line in open(sys.argv[1]):
    m = re.search(r'"step":([0-9]+),"loss":([^,]*)', line)
    if m: out[int(m.group(1))] = m.group(2)
for k in sorted(out): print(k, out[k])
PY
}
step_loss() { losses "$1" | awk -v s="$2" '$1 == s { print $2 }'; }
close() {  # a b rel-tol label
  python3 -c "
import sys
a, b, tol = float('$1'), float('$2'), float('$3')
rel = abs(a - b) / max(abs(a), 1e-12)
assert rel <= tol, f'$4: {a!r} vs {b!r}: rel {rel:.3g} > {tol}'
print(f'$4: {a!r} vs {b!r} (rel {rel:.3g})')"
}
ckdir() { echo "$1/checkpoints/$(printf 'step_%08d' "$2")"; }
TP2DP2=(--set parallel.tp=2 --set parallel.dp=2)

# 1. Bitwise resume (the split run checkpoints asynchronously).
run "$T/full" 4 "${TP2DP2[@]}"
run "$T/split" 4 "${TP2DP2[@]}" --set checkpoint.async=true --max-steps 3
grep -q "writing in the background" "$LAST_LOG" || { cat "$LAST_LOG"; echo "FAIL: no async save"; exit 1; }
cp -r "$T/split" "$T/tp1dp4"
cp -r "$T/split" "$T/tp4dp1"
run "$T/split" 4 "${TP2DP2[@]}" --set checkpoint.async=true
grep -q "resumed from .*step_00000003" "$LAST_LOG" || { cat "$LAST_LOG"; echo "FAIL: did not resume"; exit 1; }
diff <(losses "$T/full/metrics.jsonl") <(losses "$T/split/metrics.jsonl") || { echo "FAIL: loss strings differ"; exit 1; }
[ "$(losses "$T/full/metrics.jsonl" | wc -l)" -eq 6 ] || { echo "FAIL: expected 6 loss records"; exit 1; }
"$R" ckpt diff "$(ckdir "$T/full" 6)" "$(ckdir "$T/split" 6)" --tolerance 0 | head -1
for s in 4 5 6; do "$R" ckpt verify "$(ckdir "$T/split" "$s")" >/dev/null; done
echo "resume: TP=2xDP=2 6 steps == 3 + 3 (async saves), bit-identical"

# 2. Reshard the step-3 TP=2xDP=2 checkpoint to TP=1xDP=4 and TP=4xDP=1.
ref4=$(step_loss "$T/full/metrics.jsonl" 4)
run "$T/tp1dp4" 4 --set parallel.tp=1 --set parallel.dp=4 --max-steps 1
grep -q "resumed from .*step_00000003" "$LAST_LOG" || { cat "$LAST_LOG"; echo "FAIL: did not resume"; exit 1; }
close "$ref4" "$(step_loss "$T/tp1dp4/metrics.jsonl" 4)" 1e-5 "TP=2xDP=2 -> TP=1xDP=4 step 4 loss"
run "$T/tp4dp1" 4 --set parallel.tp=4 --set parallel.dp=1 --max-steps 1
grep -q "resumed from .*step_00000003" "$LAST_LOG" || { cat "$LAST_LOG"; echo "FAIL: did not resume"; exit 1; }
close "$ref4" "$(step_loss "$T/tp4dp1/metrics.jsonl" 4)" 1e-5 "TP=2xDP=2 -> TP=4xDP=1 step 4 loss"
# The step-4 checkpoints of the three layouts (768, 640 and 1024 vocab rows) agree.
"$R" ckpt diff "$(ckdir "$T/full" 4)" "$(ckdir "$T/tp1dp4" 4)" --tolerance 1e-4 --params-only | head -1
"$R" ckpt diff "$(ckdir "$T/full" 4)" "$(ckdir "$T/tp4dp1" 4)" --tolerance 1e-4 --params-only | head -1
"$R" ckpt diff "$(ckdir "$T/tp4dp1" 4)" "$(ckdir "$T/tp1dp4" 4)" --tolerance 1e-4 --params-only | head -1

# 3. ZeRO-1 DP=2 -> one process without ZeRO.
ZERO=(--set parallel.dp=2 --set optimizer.zero_stage=1)
run "$T/zfull" 2 "${ZERO[@]}" --max-steps 4
run "$T/zsplit" 2 "${ZERO[@]}" --max-steps 3
run "$T/zsplit" 1 --set optimizer.zero_stage=0 --max-steps 1
grep -q "resumed from .*step_00000003" "$LAST_LOG" || { cat "$LAST_LOG"; echo "FAIL: did not resume"; exit 1; }
close "$(step_loss "$T/zfull/metrics.jsonl" 4)" "$(step_loss "$T/zsplit/metrics.jsonl" 4)" 1e-5 \
  "ZeRO-1 DP=2 -> DP=1 step 4 loss"
"$R" ckpt diff "$(ckdir "$T/zfull" 4)" "$(ckdir "$T/zsplit" 4)" --tolerance 1e-4 | head -1
echo "ckpt_resume_reshard: OK"
