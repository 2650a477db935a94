#!/usr/bin/env bash
# Tensor parallelism is exact: TP=2 and TP=4 forward/backward/logits vs the tp=1 model (Post-LN +
# RealFormer, Pre-LN, log_n, attention recomputation; dropout on), bad layouts, 20 AdamW steps
# TP=2 vs tp=1, replicated tensors bit-identical across TP, tied embeddings, and two TP=2 runs
# bit-identical.
set -euo pipefail
bin_dir=$(dirname "$1")
prog="$bin_dir/tp_model_check"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
run() {  # run NP MODE -> stdout+stderr in $out; fails unless every rank printed OK
  local np=$1 mode=$2
  out=$(timeout 120 mpirun --oversubscribe -np "$np" "$prog" "$mode" 2>&1) || {
    echo "$out"; echo "tp_model_check $mode failed at np=$np"; exit 1; }
  local n
  n=$(grep -c "tp_model_check OK $mode" <<<"$out" || true)
  [ "$n" -eq "$np" ] || { echo "$out"; echo "expected $np OK lines ($mode, np=$np), got $n"; exit 1; }
  grep "rank 0 tp" <<<"$out" || true
}
for np in 2 4; do
  run "$np" forward
done
run 2 train
d1=$(grep "tp_model_check digest" <<<"$out")
echo "$d1"
run 2 train
d2=$(grep "tp_model_check digest" <<<"$out")
[ -n "$d1" ] && [ "$d1" = "$d2" ] || { echo "two identical TP=2 runs differ:"; echo "$d1"; echo "$d2"; exit 1; }
echo "two TP=2 runs bit-identical"
