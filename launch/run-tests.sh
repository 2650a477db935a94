#!/usr/bin/env bash
# README command 2: builds (Release) and runs the whole test suite (labels unit, mpi, slow; gpu ones skip without a device) via ctest.
# Extra arguments go to ctest (e.g. -L unit, -R tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
cd build
ctest --output-on-failure -j2 --timeout 900 "$@"
