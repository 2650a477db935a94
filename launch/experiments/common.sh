# Shared by launch/experiments/*.sh (sourced, not run). Parses the common flags, pins the thread
# count (the trainer is bit-deterministic only for a fixed BLAS/OpenMP thread count) and provides
# small helpers. Every experiment script accepts:
#   --scale smoke|small|full   model/steps preset (smoke: seconds, for tests/cli/experiments_smoke.sh;
#                              small: the committed report, minutes on a 2-core VM; full: real hardware)
#   --bin PATH                 roformer binary (default: $ROFORMER_BIN, else build/roformer)
#   --corpus DIR --vocab FILE  prepared shards + vocab (default: runs/default-corpus/shards and
#                              ../shared/data/vocab/bert-chinese-vocab.txt)
#   --runs DIR                 where run directories go (default: runs/experiments/<name>-<scale>)
#   --report DIR               where the Markdown report and PNGs go (default: the runs dir;
#                              docs/experiments for the committed ones)
#   --threads N                BLAS/OpenMP threads per process (default 1: on the shared 2-vCPU
#                              dev VM one thread ran 3.5x faster than two)
#   --jobs N                   trainings run concurrently (default 1)
set -euo pipefail

EXP_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Paths in reports are written relative to the repository (../ for shared data beside it), so a
# report names no machine-specific directory.
relpath() { python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$EXP_SRC"; }
SCALE=small
BIN=${ROFORMER_BIN:-}
CORPUS=""
VOCAB=""
RUNS=""
REPORT=""
THREADS=1
JOBS=1

exp_usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 2
}

exp_parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --scale) SCALE="$2"; shift 2 ;;
      --bin) BIN="$2"; shift 2 ;;
      --corpus) CORPUS="$2"; shift 2 ;;
      --vocab) VOCAB="$2"; shift 2 ;;
      --runs) RUNS="$2"; shift 2 ;;
      --report) REPORT="$2"; shift 2 ;;
      --threads) THREADS="$2"; shift 2 ;;
      --jobs) JOBS="$2"; shift 2 ;;
      -h|--help) exp_usage ;;
      *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
  done
  case "$SCALE" in smoke|small|full) ;; *) echo "error: --scale must be smoke, small or full" >&2; exit 2 ;; esac
  [ -n "$BIN" ] || BIN="$EXP_SRC/build/roformer"
  [ -x "$BIN" ] || { echo "error: roformer binary '$BIN' not found (build it, or pass --bin)" >&2; exit 2; }
  BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
  [ -n "$CORPUS" ] || CORPUS="$EXP_SRC/runs/default-corpus/shards"
  [ -n "$VOCAB" ] || VOCAB="$EXP_SRC/../shared/data/vocab/bert-chinese-vocab.txt"
  if [ ! -f "$CORPUS/manifest.txt" ]; then
    echo "error: no prepared corpus at $CORPUS. Build the default one with:" >&2
    echo "  $BIN data default --out runs/default-corpus --shared ../shared/data" >&2
    echo "  $BIN data prepare --corpus runs/default-corpus/default-corpus.txt --vocab $VOCAB \\" >&2
    echo "      --out runs/default-corpus/shards --eval-fraction 0.01" >&2
    exit 2
  fi
  [ -f "$VOCAB" ] || { echo "error: vocab '$VOCAB' not found (pass --vocab)" >&2; exit 2; }
  [ -n "$RUNS" ] || RUNS="$EXP_SRC/runs/experiments/$EXP_NAME-$SCALE"
  [ -n "$REPORT" ] || REPORT="$RUNS"
  mkdir -p "$RUNS" "$REPORT"
  CORPUS=$(cd "$CORPUS" && pwd)
  VOCAB=$(cd "$(dirname "$VOCAB")" && pwd)/$(basename "$VOCAB")
  RUNS=$(cd "$RUNS" && pwd)
  REPORT=$(cd "$REPORT" && pwd)
  export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
  export GLOG_logtostderr=1
  EXP_START=$(date +%s)
  {
    echo "experiment $EXP_NAME, scale $SCALE, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "command: bash ${0#"$EXP_SRC/"} $EXP_ARGS"
    echo "binary: $(relpath "$BIN")"
    echo "corpus: $(relpath "$CORPUS")"
    echo "vocab: $(relpath "$VOCAB")"
    echo "threads per process: $THREADS, concurrent trainings: $JOBS"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc --all) vCPU"
  } > "$RUNS/experiment.txt"
  cat "$RUNS/experiment.txt"
}

# Writes a pretraining config (model and train blocks given as text) to $1.
exp_write_config() {
  local out="$1" model="$2" train="$3"
  cat > "$out" <<CFG
model {
$model
}
train {
$train
}
data {
  corpus: "$CORPUS"
  vocab: "$VOCAB"
  pack_documents: true
}
checkpoint {
  every: 0
  keep: 1
}
CFG
}

# exp_train NAME CONFIG [--set ...]: one pretraining run into $RUNS/NAME (started over), its log in
# $RUNS/NAME.log and its wall seconds in $RUNS/NAME/wall_s.
exp_train() {
  local name="$1" cfg="$2"; shift 2
  local t0 t1
  t0=$(date +%s.%N)
  if ! "$BIN" pretrain --config "$cfg" --run-dir "$RUNS/$name" --no-resume --force "$@" \
      > "$RUNS/$name.log" 2>&1; then
    echo "error: run $name failed; last lines of $RUNS/$name.log:" >&2
    tail -20 "$RUNS/$name.log" >&2
    return 1
  fi
  t1=$(date +%s.%N)
  python3 -c "print(round($t1 - $t0, 1))" > "$RUNS/$name/wall_s"
  echo "  $name: $(cat "$RUNS/$name/wall_s") s"
}

# exp_parallel CMD...: runs "CMD ARGS" lines read from stdin with at most $JOBS at a time; fails
# when any fails.
exp_parallel() {
  local pids=() line rc=0
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    eval "$line" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$JOBS" ]; then
      wait "${pids[0]}" || rc=1
      pids=("${pids[@]:1}")
    fi
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return $rc
}

# The metrics of a run without the timing fields, for the determinism check.
exp_metrics_no_timing() {
  python3 - "$1" <<'PY'
import json, sys
drop = {"tokens_per_s", "gflops", "mfu", "eta_s", "step_s", "elapsed_s", "time", "wall_s",
        "t_data", "t_fwd", "t_bwd", "t_tp", "t_dp", "t_opt"}
for line in open(sys.argv[1]):
    rec = json.loads(line)
    print(json.dumps({k: v for k, v in rec.items()
                      if k not in drop and not k.startswith(("t_", "time_", "seconds"))},
                     sort_keys=True))
PY
}

exp_elapsed() { echo $(( $(date +%s) - EXP_START )); }
