#!/usr/bin/env bash
# TP/DP training equals single-process training: 20 steps with dropout on, Post-LN + RealFormer +
# RoPE. TP=2, DP=2, TP=2xDP=2 and ZeRO-1 DP=2 each match the single-process run (loss within 1e-5
# relative at every step, final weights within 1e-4), and two identical TP=2xDP=2 runs are
# bit-identical.
set -euo pipefail
R=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT; [ -n "${KEEP:-}" ] && trap - EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
bash "$2/tests/make_tiny_corpus.sh" "$R" "$T" 11 300
COMMON=(--set model.hidden_size=32 --set model.num_hidden_layers=2 --set model.num_attention_heads=4
        --set model.intermediate_size=64 --set model.realformer=true --set model.max_position_embeddings=64
        --set train.steps=20 --set train.micro_batch=2 --set train.global_batch=8 --set train.seq_len=32
        --set train.lr=2e-3 --set train.warmup_steps=3 --set train.log_every=1 --set train.eval_every=10
        --set train.eval_samples=16 --set data.corpus="$T/shards" --set data.vocab="$T/vocab.txt"
        --set parallel.watchdog_timeout_s=120)
MPI=(mpirun --oversubscribe --bind-to none)
run() {  # name np extra-sets...
  local name=$1 np=$2; shift 2
  if [ "$np" -eq 1 ]; then
    "$R" pretrain "${COMMON[@]}" "$@" --run-dir "$T/$name" 2>"$T/$name.log" || { cat "$T/$name.log"; exit 1; }
  else
    "${MPI[@]}" -np "$np" "$R" pretrain "${COMMON[@]}" "$@" --run-dir "$T/$name" >"$T/$name.log" 2>&1 || { cat "$T/$name.log"; exit 1; }
  fi
}
run single 1
run tp2 2 --set parallel.tp=2
run dp2 2 --set parallel.dp=2
run tp2dp2 4 --set parallel.tp=2 --set parallel.dp=2
run zero1 2 --set parallel.dp=2 --set optimizer.zero_stage=1
run tp2dp2_again 4 --set parallel.tp=2 --set parallel.dp=2
compare() {  # reference other tolerance
  python3 - "$T/$1/metrics.jsonl" "$T/$2/metrics.jsonl" "$3" "$2" <<'PY'
import json, sys
def losses(p):
    out = {}
    for l in open(p):
        r = json.loads(l)
        if "loss" in r: out[r["step"]] = (r["loss"], r["eval_mlm_loss"] if "eval_mlm_loss" in r else None)
        if "eval_mlm_loss" in r: out[("eval", r["step"])] = r["eval_mlm_loss"]
    return out
a, b, tol, name = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
assert set(a) == set(b) and len([k for k in a if not isinstance(k, tuple)]) == 20, (name, sorted(map(str, a)), sorted(map(str, b)))
worst = 0.0
for k in a:
    x = a[k][0] if isinstance(a[k], tuple) else a[k]
    y = b[k][0] if isinstance(b[k], tuple) else b[k]
    rel = abs(x - y) / max(abs(x), 1e-12)
    worst = max(worst, rel)
    assert rel <= tol, f"{name}: step {k}: {x!r} vs {y!r} (rel {rel:.3g} > {tol})"
print(f"{name}: 20 step losses + evals match the single-process run, worst rel {worst:.3g}")
PY
}
compare single tp2 1e-5
compare single dp2 1e-5
compare single tp2dp2 1e-5
compare single zero1 1e-5
for name in tp2 dp2 tp2dp2 zero1; do
  "$R" ckpt diff "$T/single/checkpoints" "$T/$name/checkpoints" --tolerance 1e-4 --params-only | head -1
done
# Bit-identical reruns: same losses as strings and identical checkpoints.
cmp <(grep -o '"loss":[^,]*' "$T/tp2dp2/metrics.jsonl") <(grep -o '"loss":[^,]*' "$T/tp2dp2_again/metrics.jsonl")
"$R" ckpt diff "$T/tp2dp2/checkpoints" "$T/tp2dp2_again/checkpoints" --tolerance 0 | head -1
grep -q "timers (s, min-max over 4 ranks): data .* tp-comm .* dp-exposed" "$T/tp2dp2.log" || { echo "FAIL: no per-rank timers"; exit 1; }
echo "pretrain_parallel: OK"
