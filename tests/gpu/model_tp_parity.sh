#!/usr/bin/env bash
# ctest wrapper (label gpu) for model_tp_parity: the TP = 2 GPU model against the CPU model, two
# ranks with one GPU each under mpirun. Exit 77 = skipped: fewer than 2 CUDA devices (or none), or
# no mpirun to start the ranks.
set -u
bin="$1"
n=$("$bin" --count-devices 2>/dev/null || echo 0)
if [ "${n:-0}" -lt 2 ]; then
  echo "SKIPPED: needs 2 CUDA devices (found ${n:-0})"
  exit 77
fi
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIPPED: $n GPUs but no mpirun to start one rank per GPU"
  exit 77
fi
extra=()
if mpirun --version 2>&1 | grep -q "Open MPI"; then
  extra=(--allow-run-as-root --oversubscribe)
fi
exec mpirun ${extra[@]+"${extra[@]}"} -np 2 "$bin"
