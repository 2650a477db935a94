#!/usr/bin/env bash
# GPU check of the CUDA backend, one script (issue #10): configure + build with CUDA (Release,
# sm_90), the host checks, the op parity suite, the one-step model parity (GPU model vs CPU
# model), the trainer on the GPU against the CPU trainer (`roformer pretrain`, train_parity.sh),
# the other gpu-labelled ctest tests (NCCL, TP), the kernel benchmark, the GPU model's BERT-base
# step benchmark and the same step through the trainer; prints a short table last. Sized for
# < 8 minutes on one H200 (build ~1-3 min with 16 cores, parity < 2 min, benchmarks ~2-3 min);
# every step's timeout is capped by a total budget of ROFORMER_GPU_BUDGET_S seconds (default
# 480 s, under the device tool's 600 s kill), and a step with under 15 s left is NOT RUN.
#
#   bash tests/gpu/run.sh [--quick] [--prebuilt DIR|FILE.tar.xz]
#     --quick          the composed training step with RealFormer off only
#     --prebuilt X     no build: run the programs of a bundle made by tests/gpu/bundle.sh (a
#                      folder, or the .tar.xz that `bundle.sh --full` writes)
#
# Logs go to $OUT (the device tool's folder) when set, else build-gpu/out. If the whole project
# cannot be configured on the GPU machine (its image may lack protobuf, MPI, glog, ...), the
# script falls back to tests/gpu/CMakeLists.txt, which builds the CUDA library and the benchmark,
# plus the parity suite when glog, OpenBLAS and OpenMP are there, and says what it skipped.
# Exit: 0 all passed; 1 a failure or a timeout; 2 the build failed; 77 no device (nothing verified).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${ROFORMER_GPU_BUILD:-$root/build-gpu}
out=${OUT:-$build/out}
mkdir -p "$out"
# The device tool brings back at most 8 files from $OUT: the result logs go there, the
# configure/build logs only when something failed (they live in $aux otherwise).
aux=$(mktemp -d)
trap 'rm -rf "$aux"' EXIT
jobs=$(nproc 2>/dev/null || echo 8)
bench_args=()
prebuilt=
while [ $# -gt 0 ]; do
  case $1 in
    --quick) bench_args+=(--quick) ;;
    --prebuilt)
      [ -e "${2:-}" ] || { echo "--prebuilt: no bundle at '${2:-}' (carry it with the call)"; exit 2; }
      prebuilt=$(realpath "$2")
      shift ;;
    *) echo "unknown argument $1"; exit 2 ;;
  esac
  shift
done
t_start=$(date +%s)
log() { echo "[run.sh +$(($(date +%s) - t_start))s] $*"; }
budget=${ROFORMER_GPU_BUDGET_S:-480}
left() { echo $((budget - ($(date +%s) - t_start))); }
# The timeout of the next step: its own limit, capped by what is left of the budget.
cap() {
  local l
  l=$(left)
  if [ "$l" -lt "$1" ]; then
    echo "[run.sh] budget ${budget}s: next step capped at ${l}s" >&2
    echo "$((l > 1 ? l : 1))"
  else
    echo "$1"
  fi
}
declare -a summary
note() { summary+=("$1"); }
rc_all=0
no_device=0
budget_out=0
# Whether a step may start: with under 15 s of budget left it is reported NOT RUN.
may_run() {
  if [ "$(left)" -lt 15 ]; then
    note "$1: NOT RUN (budget of ${budget}s spent)"
    budget_out=1
    return 1
  fi
}
# One verdict line per step from its exit status: 77 = the program saw no CUDA device.
classify() {  # name rc detail-on-pass log
  case $2 in
    0) note "$1: PASS${3:+ ($3)}" ;;
    77) note "$1: SKIPPED (no CUDA device)"; no_device=1 ;;
    124 | 137) note "$1: TIMEOUT (step cap reached; see $(basename "$4"))"; rc_all=1 ;;
    *) note "$1: FAIL rc=$2 ($(grep -cE '^FAIL' "$4" 2>/dev/null) FAIL lines; see $(basename "$4"))"
       rc_all=1
       # A crash prints no FAIL line: show how it ended.
       tail -n 5 "$4" ;;
  esac
}
run_capped() {  # seconds, command... (SIGKILL 10 s after the SIGTERM)
  local s=$1
  shift
  timeout -k 10 "$(cap "$s")" "$@"
}

log "repository $root, build $build, logs $out, $jobs jobs"
command -v nvidia-smi >/dev/null && nvidia-smi -L
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
nvcc --version 2>/dev/null | tail -1

# ---- 1. configure + build ----
mode=full
if [ -n "$prebuilt" ]; then
  mode=prebuilt
  if [ -f "$prebuilt" ]; then
    mkdir -p "$aux/bundle"
    tar -xJf "$prebuilt" -C "$aux/bundle" || { echo "cannot unpack $prebuilt"; exit 2; }
    prebuilt=$aux/bundle
  fi
  build=$prebuilt/bin
  libs=$prebuilt/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib
  # NCCL may exist only as the Python wheel's library on the GPU image.
  for d in $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, q, "lib") for p in nvidia.__path__ for q in os.listdir(p)))' 2>/dev/null); do
    [ -d "$d" ] && libs=$libs:$d
  done
  export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  [ -f "$prebuilt/REVISION" ] && log "bundle of revision $(cat "$prebuilt/REVISION"), tree at $(git -C "$root" rev-parse --short HEAD 2>/dev/null)"
  note "build: PREBUILT bundle ($(ls "$build" | tr '\n' ' '))"
elif timeout -k 10 "$(cap 300)" cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90 >"$aux/configure.log" 2>&1 && \
    grep -q 'CUDA backend ON' "$aux/configure.log"; then
  grep -E '^-- roformer' "$aux/configure.log"
  targets=(roformer_cuda cuda_host_test op_parity gpu_bench model_parity model_bench roformer)
  grep -q 'NCCL communicator ON' "$aux/configure.log" && targets+=(nccl_allreduce model_tp_parity)
else
  log "full project configure failed or has no CUDA; last lines of configure.log:"
  tail -n 6 "$aux/configure.log"
  cp "$aux/configure.log" "$out/full-configure.log"
  mode=standalone
  build=$build-standalone
  if ! timeout -k 10 "$(cap 300)" cmake -S "$root/tests/gpu" -B "$build" \
      -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >"$aux/standalone.log" 2>&1; then
    tail -n 20 "$aux/standalone.log"
    cp "$aux/standalone.log" "$out/"
    log "FAILED: even the standalone CUDA configure failed (is nvcc there?)"
    exit 2
  fi
  grep -E '^-- roformer' "$aux/standalone.log"
  targets=(roformer_cuda gpu_bench)
  grep -q 'op_parity ON' "$aux/standalone.log" && targets+=(cuda_host_test op_parity)
  note "build: STANDALONE fallback (full project did not configure: full-configure.log)"
fi
if [ "$mode" != prebuilt ]; then
  log "building (${mode}): ${targets[*]}"
  run_capped 360 cmake --build "$build" -j"$jobs" --target "${targets[@]}" >"$aux/build.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    grep -E 'error|Error' "$aux/build.log" | head -n 30
    cp "$aux/build.log" "$out/"
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && log "FAILED: build timed out (budget)" ||
      log "FAILED: build (build.log in $out)"
    exit 2
  fi
  note "build: OK (${mode}; ${targets[*]})"
fi
has() { [ -x "$build/$1" ]; }

# ---- 2. checks ----
if has cuda_host_test && may_run "host checks"; then
  run_capped 60 "$build/cuda_host_test" >"$out/host_test.log" 2>&1
  classify "host checks (philox, dropout walk, adamw, embedding groups)" $? "" "$out/host_test.log"
fi
if ! has op_parity; then
  note "op parity: NOT BUILT (CPU reference dependencies missing on this machine)"
elif may_run "op parity"; then
  log "op parity (GPU vs CPU kernels)"
  run_capped 180 "$build/op_parity" 2>&1 | tee "$out/op_parity.log" | grep -E '^(FAIL|SKIPPED)|failed$'
  classify "op parity" "${PIPESTATUS[0]}" "$(grep -E 'checks failed$' "$out/op_parity.log")" \
    "$out/op_parity.log"
fi
if has model_parity && may_run "model parity"; then
  log "model parity (one GPU training step vs the CPU model)"
  run_capped 150 "$build/model_parity" 2>&1 | tee "$out/model_parity.log" |
    grep -E '^(FAIL|SKIPPED)|failures$'
  classify "model parity" "${PIPESTATUS[0]}" "$(grep -cE '^PASS' "$out/model_parity.log") checks" \
    "$out/model_parity.log"
fi
# The trainer on the GPU against the CPU trainer: its own step (before the NCCL tests, which
# could hang in mpirun on a fresh machine), its PASS/FAIL lines go into the table.
trainer_lines=0
if has roformer && may_run "trainer parity"; then
  log "trainer on the GPU vs the CPU trainer (tests/gpu/train_parity.sh)"
  OMP_NUM_THREADS=4 run_capped 150 bash "$root/tests/gpu/train_parity.sh" "$build/roformer" \
    "$root" >"$out/train_parity.log" 2>&1
  rc=$?
  while IFS= read -r line; do
    note "trainer: $line"
    trainer_lines=$((trainer_lines + 1))
  done < <(grep -E '^(PASS|FAIL):? ' "$out/train_parity.log")
  classify "trainer parity" $rc "" "$out/train_parity.log"
fi
if [ "$mode" = full ] && may_run "ctest -L gpu"; then
  log "ctest -L gpu (NCCL, TP parity; the other GPU programs ran above)"
  (cd "$build" && run_capped 150 ctest -L gpu --timeout 120 \
    -E 'gpu_op_parity|gpu_model_parity|gpu_train_parity' -V) >"$out/ctest_gpu.log" 2>&1
  rc=$?
  grep -E 'tests passed|Skipped|Failed|Not Run|\*\*\*' "$out/ctest_gpu.log" | head -n 10
  # ctest -V prefixes each output line with "<test number>: ".
  sed -E 's/^[0-9]+: //' "$out/ctest_gpu.log" | grep -A40 'NCCL all-reduce bandwidth' |
    grep -E '^ *[0-9]+ +bf16' >"$aux/nccl_bw.txt"
  skipped=$(grep -cE '\*\*\*Skipped' "$out/ctest_gpu.log")
  total=$(grep -m1 -oE 'out of [0-9]+' "$out/ctest_gpu.log" | grep -oE '[0-9]+')
  if [ $rc -eq 0 ] && [ "$skipped" = "${total:-x}" ]; then
    # e.g. the 2-GPU tests on a 1-GPU machine: not a failure, but nothing was verified.
    note "ctest -L gpu (nccl, tp): all $total SKIPPED ($(sed -E 's/^[0-9]+: //' \
      "$out/ctest_gpu.log" | grep -m2 '^SKIPPED' | tr '\n' ' '))"
  else
    classify "ctest -L gpu (nccl, tp)" $rc "$(grep -m1 -E '% tests passed' \
      "$out/ctest_gpu.log"); $skipped skipped" "$out/ctest_gpu.log"
  fi
elif [ "$mode" != full ]; then
  note "ctest -L gpu / NCCL / TP: NOT RUN ($mode build has no MPI/NCCL test)"
fi

# ---- 3. benchmarks ----
if has gpu_bench && may_run "benchmark"; then
  log "GPU benchmark"
  run_capped 240 "$build/gpu_bench" "${bench_args[@]}" >"$out/bench.log" 2>&1
  classify "benchmark" $? "" "$out/bench.log"
fi
if has model_bench && may_run "model benchmark"; then
  log "GPU model step benchmark (BERT-base, bf16)"
  run_capped 200 "$build/model_bench" >"$out/model_bench.log" 2>&1
  classify "model benchmark" $? "" "$out/model_bench.log"
fi
if has roformer && [ $no_device -eq 0 ]; then
  # The same step through the trainer (`roformer bench train`, train.device = cuda): data, the
  # loss read-back, the optimizer and the step bookkeeping included. Vocab 30522 as model_bench;
  # synthetic rows are L/2..L tokens long and count as L (MFU of the padded step).
  for sl in 128 512; do
    mb=$([ "$sl" = 128 ] && echo 256 || echo 64)
    may_run "trainer bench seq $sl" || continue
    log "trainer step on the GPU: bench train, BERT-base bf16, seq $sl x $mb"
    run_capped 90 "$build/roformer" bench train --shape base --steps 5 --warmup 2 \
      --set train.device=cuda --set model.precision=bf16 --set model.vocab_size=30522 \
      --set train.seq_len=$sl --set train.micro_batch=$mb --set train.global_batch=$mb \
      >"$aux/bench_train_$sl.log" 2>&1
    rc=$?
    grep -E '^(bench train|\{)' "$aux/bench_train_$sl.log" >>"$out/model_bench.log"
    line=$(grep -m1 "^bench train: " "$aux/bench_train_$sl.log" |
      sed -E 's/.*: ([0-9.]+ s\/step).*, ([0-9]+ tokens\/s).*(MFU [0-9.]+%).*/\1, \2, \3/')
    if [ $rc -ne 0 ]; then
      tail -n 5 "$aux/bench_train_$sl.log" >>"$out/model_bench.log"
    fi
    classify "trainer bench seq $sl" $rc "${line:-no result line}" "$out/model_bench.log"
  done
fi

# ---- 4. the table, last ----
echo
[ -f "$out/bench.log" ] && sed -n '/==== GPU benchmark summary ====/,$p' "$out/bench.log"
[ -f "$out/model_bench.log" ] && sed -n '/==== GPU model/,$p' "$out/model_bench.log" |
  grep -vE '^\{'
if [ -s "$aux/nccl_bw.txt" ]; then
  echo "NCCL all-reduce (bf16) bytes / time_us / busbw GB/s:"
  cat "$aux/nccl_bw.txt"
fi
for f in op_parity model_parity train_parity; do
  [ -f "$out/$f.log" ] && grep -E '^FAIL' "$out/$f.log" | head -n 10
done
# The programs skip (77) whenever the CUDA runtime finds no usable device, which is also what a
# driver older than the runtime looks like: with GPUs listed by nvidia-smi that is a failure.
if [ $no_device -eq 1 ] && [ "${gpus:-0}" -gt 0 ]; then
  note "ERROR: nvidia-smi lists $gpus GPU(s) but the programs saw none: $(grep -h -m1 SKIPPED \
    "$out"/*.log 2>/dev/null | head -n 1)"
  rc_all=1
fi
# On a GPU machine the trainer check must have produced its verdict lines.
if [ "${gpus:-0}" -gt 0 ] && has roformer && [ $trainer_lines -eq 0 ]; then
  note "ERROR: the trainer parity check printed no PASS/FAIL lines (see train_parity.log)"
  rc_all=1
fi
[ $budget_out -eq 1 ] && rc_all=1
echo
echo "==== tests/gpu/run.sh summary ($(($(date +%s) - t_start)) s) ===="
for s in "${summary[@]}"; do echo "  $s"; done
# No device: nothing GPU-side was verified, so do not exit 0 (77 = skipped, as the ctest tests).
[ $rc_all -eq 0 ] && [ $no_device -eq 1 ] && exit 77
exit $rc_all
