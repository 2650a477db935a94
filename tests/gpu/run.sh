#!/usr/bin/env bash
# GPU check of the CUDA backend, one script (issue #10): configure + build with CUDA (Release,
# sm_90), the host checks, the op parity suite, the one-step model parity (GPU model vs CPU
# model), the gpu-labelled ctest tests (NCCL), the kernel benchmark and the GPU model's BERT-base
# step benchmark; prints a short table last. Sized for < 8 minutes on one H200 (build ~2-3 min
# with 16 cores, parity < 1 min, benchmarks ~2-3 min); every step's timeout is capped by a total
# budget of ROFORMER_GPU_BUDGET_S seconds (default 450 s, under the tool's 600 s kill).
#
#   bash tests/gpu/run.sh [--quick] [--prebuilt DIR]
#     --quick          the composed training step with RealFormer off only
#     --prebuilt DIR   no build: run the programs of a bundle made by tests/gpu/bundle.sh
#
# Logs go to $OUT (the device tool's folder) when set, else build-gpu/out. If the whole project
# cannot be configured on the GPU machine (its image may lack protobuf, MPI, gtest, ...), the
# script falls back to tests/gpu/CMakeLists.txt, which builds the CUDA library and the benchmark,
# plus the parity suite when glog, OpenBLAS and OpenMP are there, and says what it skipped.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${ROFORMER_GPU_BUILD:-$root/build-gpu}
out=${OUT:-$build/out}
mkdir -p "$out"
# The device tool brings back at most 8 files from $OUT: the six result logs go there, the
# configure/build logs only when something failed (they live in $aux otherwise).
aux=$(mktemp -d)
jobs=$(nproc 2>/dev/null || echo 8)
bench_args=()
prebuilt=
while [ $# -gt 0 ]; do
  case $1 in
    --quick) bench_args+=(--quick) ;;
    --prebuilt) prebuilt=$(cd "$2" && pwd); shift ;;
    *) echo "unknown argument $1"; exit 2 ;;
  esac
  shift
done
t_start=$(date +%s)
log() { echo "[run.sh +$(($(date +%s) - t_start))s] $*"; }
# The device tool kills a command at 600 s and the table is printed last: every step's timeout is
# capped by what is left of this budget, so a slow build cannot push the table past the kill.
budget=${ROFORMER_GPU_BUDGET_S:-450}
cap() {
  local left=$((budget - ($(date +%s) - t_start)))
  [ "$left" -lt "$1" ] && echo "[run.sh] budget ${budget}s: next step capped at ${left}s" >&2
  if [ "$left" -lt 1 ]; then echo 1
  elif [ "$left" -lt "$1" ]; then echo "$left"
  else echo "$1"; fi
}
declare -a summary
note() { summary+=("$1"); }

log "repository $root, build $build, logs $out, $jobs jobs"
command -v nvidia-smi >/dev/null && nvidia-smi -L
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
nvcc --version | tail -1

# ---- 1. configure + build ----
mode=full
if [ -n "$prebuilt" ]; then
  mode=prebuilt
  build=$prebuilt/bin
  libs=$prebuilt/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib
  export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  note "build: PREBUILT bundle $prebuilt ($(ls "$build" | tr '\n' ' '))"
elif timeout "$(cap 300)" cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90 >"$aux/configure.log" 2>&1; then
  grep -E '^-- roformer' "$aux/configure.log"
  targets=(roformer_cuda cuda_host_test op_parity gpu_bench model_parity model_bench roformer)
  grep -q 'NCCL communicator ON' "$aux/configure.log" && targets+=(nccl_allreduce model_tp_parity)
else
  log "full project configure failed; last lines of configure.log:"
  tail -n 6 "$aux/configure.log"
  mode=standalone
  build=$build-standalone
  if ! timeout "$(cap 300)" cmake -S "$root/tests/gpu" -B "$build" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CUDA_ARCHITECTURES=90 >"$aux/configure.log" 2>&1; then
    tail -n 20 "$aux/configure.log"
    cp "$aux/configure.log" "$out/"
    log "FAILED: even the standalone CUDA configure failed"
    exit 2
  fi
  grep -E '^-- roformer' "$aux/configure.log"
  targets=(roformer_cuda gpu_bench)
  grep -q 'op_parity ON' "$aux/configure.log" && targets+=(cuda_host_test op_parity)
  cp "$aux/configure.log" "$out/full-configure.log" 2>/dev/null
  note "build: STANDALONE fallback (full project did not configure: full-configure.log)"
fi
if [ "$mode" != prebuilt ]; then
  log "building (${mode}): ${targets[*]}"
  if ! timeout "$(cap 360)" cmake --build "$build" -j"$jobs" --target "${targets[@]}" \
      >"$aux/build.log" 2>&1; then
    grep -E 'error|Error' "$aux/build.log" | head -n 30
    cp "$aux/build.log" "$aux/configure.log" "$out/"
    log "FAILED: build (build.log in $out)"
    exit 2
  fi
  note "build: OK (${mode}; ${targets[*]})"
fi
has() { [ -x "$build/$1" ]; }

# ---- 2. checks ----
rc_all=0
no_device=0
if has cuda_host_test; then
  "$build/cuda_host_test" >"$out/host_test.log" 2>&1
  rc=$?
  tail -n 1 "$out/host_test.log"
  note "host checks (philox, dropout walk, adamw, embedding groups): $([ $rc -eq 0 ] && echo PASS || echo FAIL)"
  [ $rc -eq 0 ] || rc_all=1
fi
if has op_parity; then
  log "op parity (GPU vs CPU kernels)"
  timeout "$(cap 180)" "$build/op_parity" 2>&1 | tee "$out/op_parity.log" |
    grep -E '^(FAIL|SKIPPED)|failed$'
  rc=${PIPESTATUS[0]}
  case $rc in
    0) note "op parity: PASS ($(grep -E 'checks failed$' "$out/op_parity.log"))" ;;
    77) note "op parity: SKIPPED (no CUDA device)"; no_device=1 ;;
    *) note "op parity: FAIL rc=$rc ($(grep -cE '^FAIL' "$out/op_parity.log") failing lines)"
       rc_all=1 ;;
  esac
else
  note "op parity: NOT BUILT (CPU reference dependencies missing on this machine)"
fi
if has model_parity; then
  log "model parity (one GPU training step vs the CPU model)"
  timeout "$(cap 150)" "$build/model_parity" 2>&1 | tee "$out/model_parity.log" |
    grep -E '^(FAIL|SKIPPED)|failures$'
  rc=${PIPESTATUS[0]}
  case $rc in
    0) note "model parity: PASS ($(grep -cE '^PASS' "$out/model_parity.log") checks)" ;;
    77) note "model parity: SKIPPED (no CUDA device)" ;;
    *) note "model parity: FAIL rc=$rc ($(grep -cE '^FAIL' "$out/model_parity.log") failing)"
       rc_all=1 ;;
  esac
fi
if [ "$mode" = full ]; then
  log "ctest -L gpu (NCCL, TP parity, the trainer on the GPU; the parity binaries ran above)"
  (cd "$build" && timeout "$(cap 200)" ctest -L gpu -E 'gpu_op_parity|gpu_model_parity' -V) \
    >"$out/ctest_gpu.log" 2>&1
  rc=$?
  grep -E 'tests passed|Skipped|Failed|Not Run|\*\*\*' "$out/ctest_gpu.log" | head -n 10
  # ctest -V prefixes each output line with "<test number>: ".
  sed -E 's/^[0-9]+: //' "$out/ctest_gpu.log" | grep -A40 'NCCL all-reduce bandwidth' |
    grep -E '^ *[0-9]+ +bf16' >"$aux/nccl_bw.txt"
  verdict=$([ $rc -eq 0 ] && echo 'passed or skipped' || echo FAIL)
  passed=$(grep -E '% tests passed' "$out/ctest_gpu.log" | head -n 1)
  note "ctest -L gpu (nccl, tp, trainer): $verdict ($passed)"
  # train_parity.sh's verdict lines: the trainer on the GPU against the CPU trainer.
  while IFS= read -r line; do note "trainer: $line"; done < <(sed -E 's/^[0-9]+: //' \
    "$out/ctest_gpu.log" | grep -E '^(PASS|FAIL) (fp32|bf16|GPU resume)')
  [ $rc -eq 0 ] || rc_all=1
else
  note "ctest -L gpu / NCCL: NOT RUN ($mode build has no MPI/NCCL test)"
fi

# ---- 3. benchmark ----
log "GPU benchmark"
timeout "$(cap 240)" "$build/gpu_bench" "${bench_args[@]}" >"$out/bench.log" 2>&1
rc=$?
case $rc in
  0) note "benchmark: OK" ;;
  77) note "benchmark: SKIPPED (no CUDA device)" ;;
  *) note "benchmark: FAILED rc=$rc (see bench.log)"; tail -n 15 "$out/bench.log"; rc_all=1 ;;
esac

if has model_bench; then
  log "GPU model step benchmark (BERT-base, bf16)"
  timeout "$(cap 200)" "$build/model_bench" >"$out/model_bench.log" 2>&1
  rc=$?
  case $rc in
    0) note "model benchmark: OK" ;;
    77) note "model benchmark: SKIPPED (no CUDA device)" ;;
    *) note "model benchmark: FAILED rc=$rc (see model_bench.log)"
       tail -n 15 "$out/model_bench.log"
       rc_all=1 ;;
  esac
fi

if has roformer && [ $no_device -eq 0 ]; then
  # The same step through the trainer (`roformer bench train`, train.device = cuda): data, the
  # loss read-back, the optimizer and the step bookkeeping included.
  for sl in 128 512; do
    mb=$([ "$sl" = 128 ] && echo 256 || echo 64)
    log "trainer step on the GPU: bench train, BERT-base bf16, seq $sl x $mb"
    timeout "$(cap 90)" "$build/roformer" bench train --shape base --steps 5 --warmup 2 \
      --set train.device=cuda --set model.precision=bf16 --set train.seq_len=$sl \
      --set train.micro_batch=$mb --set train.global_batch=$mb \
      >>"$out/model_bench.log" 2>&1
    rc=$?
    line=$(grep -m1 "^bench train: .* seq $sl " "$out/model_bench.log" | sed -E 's/.*: ([0-9.]+ s\/step).*, ([0-9]+ tokens\/s).*(MFU [0-9.]+%).*/\1, \2, \3/')
    case $rc in
      0) note "trainer bench seq $sl: ${line:-no result line}" ;;
      *) note "trainer bench seq $sl: FAILED rc=$rc (see model_bench.log)"; rc_all=1 ;;
    esac
  done
fi

# ---- 4. the table, last ----
echo
sed -n '/==== GPU benchmark summary ====/,$p' "$out/bench.log"
[ -f "$out/model_bench.log" ] && sed -n '/==== GPU model/,$p' "$out/model_bench.log"
if [ -s "$aux/nccl_bw.txt" ]; then
  echo "NCCL all-reduce (bf16) bytes / time_us / busbw GB/s:"
  cat "$aux/nccl_bw.txt"
fi
for f in op_parity model_parity; do
  [ -f "$out/$f.log" ] && grep -E '^FAIL' "$out/$f.log" | head -n 10
done
# The programs skip (77) whenever the CUDA runtime finds no usable device, which is also what a
# driver older than the runtime looks like: with GPUs listed by nvidia-smi that is a failure.
if [ $no_device -eq 1 ] && [ "${gpus:-0}" -gt 0 ]; then
  note "ERROR: nvidia-smi lists $gpus GPU(s) but the programs saw none: $(grep -m1 SKIPPED \
    "$out/op_parity.log")"
  rc_all=1
fi
echo
echo "==== tests/gpu/run.sh summary ($(($(date +%s) - t_start)) s) ===="
for s in "${summary[@]}"; do echo "  $s"; done
# No device: nothing GPU-side was verified, so do not exit 0 (77 = skipped, as the ctest tests).
[ $rc_all -eq 0 ] && [ $no_device -eq 1 ] && exit 77
exit $rc_all
