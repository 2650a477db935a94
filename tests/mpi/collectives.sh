#!/usr/bin/env bash
# Typed collectives on TP x DP grids (2 and 4 ranks) against locally computed values.
set -euo pipefail
bin_dir=$(dirname "$1")
for layout in "2 1" "1 2" "2 2"; do
  set -- $layout
  np=$(( $1 * $2 ))
  out=$(mpirun --oversubscribe -np $np "$bin_dir/comm_check" collectives $1 $2 2>&1) || { echo "$out"; exit 1; }
  n=$(grep -c "comm_check OK" <<<"$out" || true)
  [ "$n" -eq "$np" ] || { echo "$out"; echo "expected $np OK lines for tp=$1 dp=$2, got $n"; exit 1; }
  echo "tp=$1 dp=$2: $n ranks OK"
done
