#!/usr/bin/env bash
# ctest wrapper (label gpu): one rank per visible GPU (at most 8) under mpirun. Exit 77 = skipped
# (no CUDA device, or GPUs but no mpirun for several ranks).
set -u
bin="$1"
n=$("$bin" --count-devices 2>/dev/null || echo 0)
if [ "${n:-0}" -lt 1 ]; then
  echo "SKIPPED: no CUDA device"
  exit 77
fi
[ "$n" -gt 8 ] && n=8
if ! command -v mpirun >/dev/null 2>&1; then
  if [ "$n" -eq 1 ]; then
    exec "$bin"  # a singleton MPI process needs no launcher
  fi
  echo "SKIPPED: $n GPUs but no mpirun to start one rank per GPU"
  exit 77
fi
if [ "$n" -eq 1 ]; then
  exec "$bin"  # one GPU: a singleton, no launcher needed
fi
extra=()
# Open MPI's flags only: MPICH's mpiexec rejects them.
if mpirun --version 2>&1 | grep -q "Open MPI"; then
  extra=(--allow-run-as-root --oversubscribe)
fi
exec mpirun ${extra[@]+"${extra[@]}"} -np "$n" "$bin"
