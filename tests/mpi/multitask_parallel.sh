#!/usr/bin/env bash
# Multi-task weighted pretraining (MLM + SOP) under TP=2 x DP=2 equals the single-process run:
# gradnorm (per-task backward, shared-parameter norms global over TP and DP), realtime (forward
# pre-pass for the losses), uncertainty (learned log-variances updated from the global losses) and
# gradnorm with ZeRO-1 DP=2. 10 steps with dropout on; every step's
# loss, per-task losses, effective weights w_mlm/w_sop (and gradnorm's per-task norms) within 1e-6
# relative, final parameters within 1e-5 (`ckpt diff`).
set -euo pipefail
R=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT; [ -n "${KEEP:-}" ] && trap - EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash "$2/tests/make_tiny_corpus.sh" "$R" "$T" 11 300 >/dev/null
COMMON=(--set model.hidden_size=32 --set model.num_hidden_layers=2 --set model.num_attention_heads=4
        --set model.intermediate_size=64 --set model.realformer=true --set model.max_position_embeddings=64
        --set train.steps=10 --set train.micro_batch=2 --set train.global_batch=8 --set train.seq_len=32
        --set train.lr=2e-3 --set train.warmup_steps=3 --set train.log_every=1 --set train.eval_every=0
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
compare() {  # reference other
  python3 - "$T/$1/metrics.jsonl" "$T/$2/metrics.jsonl" "$2" <<'PY'
import json, sys
keys = ["loss", "mlm_loss", "sop_loss", "w_mlm", "w_sop", "gnorm_mlm", "gnorm_sop"]
def rows(p):
    return {r["step"]: r for r in map(json.loads, open(p)) if "loss" in r}
a, b, name = rows(sys.argv[1]), rows(sys.argv[2]), sys.argv[3]
assert sorted(a) == sorted(b) == list(range(1, 11)), (name, sorted(a), sorted(b))
worst = 0.0
for s in a:
    for k in keys:
        if k not in a[s]: continue
        x, y = a[s][k], b[s][k]
        rel = abs(x - y) / max(abs(x), 1e-12)
        worst = max(worst, rel)
        assert rel <= 1e-6, f"{name}: step {s} {k}: {x!r} vs {y!r} (rel {rel:.3g} > 1e-6)"
assert a[10]["w_mlm"] != 1.0 and a[10]["w_sop"] != 1.0, "weights were not applied"
print(f"{name}: 10 steps of losses and weights match the single-process run, worst rel {worst:.3g}")
PY
  "$R" ckpt diff "$T/$1/checkpoints" "$T/$2/checkpoints" --tolerance 1e-5 --params-only | head -1
}
for scheme in gradnorm realtime uncertainty; do
  run "$scheme" 1 --set multitask.weighting=$scheme --set multitask.uncertainty_lr=0.05
  run "${scheme}_tp2dp2" 4 --set multitask.weighting=$scheme --set multitask.uncertainty_lr=0.05 \
    --set parallel.tp=2 --set parallel.dp=2
  compare "$scheme" "${scheme}_tp2dp2"
done
run gradnorm_zero1 2 --set multitask.weighting=gradnorm --set parallel.dp=2 --set optimizer.zero_stage=1
compare gradnorm gradnorm_zero1
grep -q "gradnorm w_mlm .* gnorm_mlm" "$T/gradnorm_tp2dp2.log" || { echo "FAIL: no weights in the log line"; exit 1; }
echo "multitask_parallel: OK"
