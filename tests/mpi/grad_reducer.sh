#!/usr/bin/env bash
# Data-parallel gradient buckets and ZeRO-1 (runtime/grad_reducer) on 2 and 4 ranks, plus once
# without mpirun (DP size 1, local communicator): averaged gradients, fixed launch order under a
# shuffled ready order, ZeRO-1 against single-process AdamW, global norm, NaN attribution, overlap.
set -euo pipefail
bin_dir=$(dirname "$1")
prog="$bin_dir/grad_reducer_check"
nan_tensor="layer.0.output.LayerNorm.weight"
for np in 2 4; do
  start=$(date +%s)
  out=$(timeout 120 mpirun --oversubscribe -np $np "$prog" 2>&1) || { echo "$out"; echo "FAIL: np=$np exited non-zero"; exit 1; }
  n=$(grep -c "grad_reducer_check OK" <<<"$out" || true)
  [ "$n" -eq "$np" ] || { echo "$out"; echo "FAIL: expected $np OK lines for np=$np, got $n"; exit 1; }
  # The NaN injected on world rank 1 is logged by rank 1, naming the tensor, before the reduction.
  grep -q "non-finite gradient in $nan_tensor on world rank 1 " <<<"$out" || { echo "$out"; echo "FAIL: NaN not attributed to rank 1"; exit 1; }
  if grep "non-finite gradient in $nan_tensor on world rank" <<<"$out" | grep -qv "on world rank 1 "; then
    echo "$out"; echo "FAIL: NaN attributed to a rank that did not produce it"; exit 1
  fi
  grep -E "overlap:|rank 0 (dp|zero1): step 1" <<<"$out" | sort || true
  echo "np=$np: $n ranks OK in $(( $(date +%s) - start ))s"
done
out=$(timeout 60 "$prog" 2>&1) || { echo "$out"; echo "FAIL: single process"; exit 1; }
grep -q "grad_reducer_check OK rank 0 (dp 1" <<<"$out" || { echo "$out"; echo "FAIL: single process not OK"; exit 1; }
echo "dp=1 (no mpirun): OK"
