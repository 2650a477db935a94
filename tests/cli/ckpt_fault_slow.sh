#!/usr/bin/env bash
# label: slow
# Fault tolerance end to end: a 4-rank TP=2 x DP=2 pretraining job under launch/roformer-launch.
#  A. `kill -9` one rank after the first checkpoint: the launcher relaunches, the job resumes and
#     finishes, and its final weights equal an uninterrupted run's bit for bit.
#  B. kill a rank, then flip a byte in the newest checkpoint's chunk before the relaunch: the
#     launcher's `roformer ckpt verify` fails, it moves the checkpoint aside (step_N.corrupt), the
#     job resumes from the previous one and still ends bit-identical.
set -euo pipefail
R=$(realpath "$1")
SRC=$2
LAUNCH="$SRC/launch/roformer-launch"
T=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash "$2/tests/make_tiny_corpus.sh" "$R" "$T" 17 300
STEPS=${FAULT_STEPS:-120}
COMMON=(--set model.hidden_size=32 --set model.num_hidden_layers=2 --set model.num_attention_heads=4
        --set model.intermediate_size=64 --set model.realformer=true --set model.max_position_embeddings=64
        --set train.steps=$STEPS --set train.micro_batch=2 --set train.global_batch=8 --set train.seq_len=32
        --set train.lr=2e-3 --set train.warmup_steps=2 --set train.log_every=10 --set train.eval_every=0
        --set train.eval_samples=8 --set data.corpus="$T/shards" --set data.vocab="$T/vocab.txt"
        --set checkpoint.every=10 --set checkpoint.keep=3 --set parallel.tp=2 --set parallel.dp=2
        --set parallel.watchdog_timeout_s=60)
MPI=(mpirun --oversubscribe --bind-to none -np 4)
final() { echo "$1/checkpoints/$(printf 'step_%08d' "$STEPS")"; }
complete_ckpts() { find "$1/checkpoints" -mindepth 1 -maxdepth 1 -type d -regex '.*/step_[0-9]+' 2>/dev/null | sort; }
# A rank process (comm "roformer") of the job whose last argument is "--run-dir DIR".
rank_pid() {
  local p
  for p in $(pgrep -f -- "--run-dir $1\$" || true); do
    [ "$(ps -o comm= -p "$p" 2>/dev/null)" = roformer ] && { echo "$p"; return 0; }
  done
  return 1
}
wait_for() {  # seconds command...: polls until the command succeeds
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.05
  done
}
have_ckpts() { [ "$(complete_ckpts "$1" | wc -l)" -ge "$2" ]; }

# The uninterrupted reference.
"${MPI[@]}" "$R" pretrain "${COMMON[@]}" --run-dir "$T/ref" >"$T/ref.log" 2>&1 || { cat "$T/ref.log"; exit 1; }

# A. kill -9 one rank after the first checkpoint.
"$LAUNCH" --max-restarts 3 --backoff 1 -- "${MPI[@]}" "$R" pretrain "${COMMON[@]}" --run-dir "$T/kill" \
  >"$T/kill.log" 2>&1 &
PIDS+=($!)
wait_for 60 have_ckpts "$T/kill" 1 || { cat "$T/kill.log"; echo "FAIL: no checkpoint appeared"; exit 1; }
victim=$(rank_pid "$T/kill") || { cat "$T/kill.log"; echo "FAIL: job finished before the kill (raise FAULT_STEPS)"; exit 1; }
echo "killing rank pid $victim after $(complete_ckpts "$T/kill" | tail -1 | xargs basename)"
kill -9 "$victim"
rc=0; wait "${PIDS[0]}" || rc=$?
[ "$rc" -eq 0 ] || { cat "$T/kill.log"; echo "FAIL: launcher exited $rc"; exit 1; }
grep -q "roformer-launch: .*status 137 (killed by signal 9); restart 1/3" "$T/kill.log" || { cat "$T/kill.log"; echo "FAIL: no restart logged"; exit 1; }
grep -q "resumed from" "$T/kill.log" || { cat "$T/kill.log"; echo "FAIL: the relaunch did not resume"; exit 1; }
"$R" ckpt diff "$(final "$T/ref")" "$(final "$T/kill")" --tolerance 0 | head -1
echo "A: killed rank -> relaunch -> bit-identical"

# B. kill, corrupt the newest checkpoint before the relaunch, fall back to the previous one.
"$LAUNCH" --max-restarts 3 --backoff 3 -- "${MPI[@]}" "$R" pretrain "${COMMON[@]}" --run-dir "$T/corrupt" \
  >"$T/corrupt.log" 2>&1 &
PIDS+=($!)
wait_for 60 have_ckpts "$T/corrupt" 2 || { cat "$T/corrupt.log"; echo "FAIL: no checkpoints appeared"; exit 1; }
victim=$(rank_pid "$T/corrupt") || { cat "$T/corrupt.log"; echo "FAIL: job finished before the kill (raise FAULT_STEPS)"; exit 1; }
kill -9 "$victim"
wait_for 20 grep -q "exited with status" "$T/corrupt.log" || { cat "$T/corrupt.log"; echo "FAIL: no exit logged"; exit 1; }
newest=$(complete_ckpts "$T/corrupt" | tail -1)
previous=$(complete_ckpts "$T/corrupt" | tail -2 | head -1)
chunk=$(ls "$newest"/chunk-*.bin | head -1)
python3 - "$chunk" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(100); b = f.read(1); f.seek(100); f.write(bytes([b[0] ^ 0x10]))
PY
echo "corrupted $chunk; expecting a resume from $(basename "$previous")"
rc=0; wait "${PIDS[1]}" || rc=$?
[ "$rc" -eq 0 ] || { cat "$T/corrupt.log"; echo "FAIL: launcher exited $rc"; exit 1; }
grep -q "fails verification: .*$(basename "$chunk")" "$T/corrupt.log" || { cat "$T/corrupt.log"; echo "FAIL: verify failure not logged with the file"; exit 1; }
grep -q "moved $newest aside to $newest.corrupt" "$T/corrupt.log" || { cat "$T/corrupt.log"; echo "FAIL: not moved aside"; exit 1; }
[ -d "$newest.corrupt" ] || { echo "FAIL: $newest.corrupt missing"; exit 1; }
grep -q "resumed from .*$(basename "$previous")" "$T/corrupt.log" || { cat "$T/corrupt.log"; echo "FAIL: did not resume from $previous"; exit 1; }
"$R" ckpt diff "$(final "$T/ref")" "$(final "$T/corrupt")" --tolerance 0 | head -1
echo "B: corrupted newest checkpoint -> moved aside -> resume from the previous -> bit-identical"
# C. Decisions without a training job: status 2 stops at once; other failures use up the restarts.
rc=0; "$LAUNCH" --backoff 0 -- "$R" pretrain --set model.hiden_size=1 >"$T/user.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "not restarting" "$T/user.log" && [ "$(grep -c "roformer-launch: .* launch " "$T/user.log")" -eq 1 ] ||
  { cat "$T/user.log"; echo "FAIL: status 2 must not be retried (rc $rc)"; exit 1; }
rc=0; "$LAUNCH" --max-restarts 2 --backoff 0.1 --roformer "$R" --ckpt-dir "$T/none" -- bash -c 'exit 3' >"$T/fail.log" 2>&1 || rc=$?
[ "$rc" -eq 3 ] && [ "$(grep -c "roformer-launch: .* launch " "$T/fail.log")" -eq 3 ] && grep -q "giving up" "$T/fail.log" ||
  { cat "$T/fail.log"; echo "FAIL: expected 3 launches and status 3 (rc $rc)"; exit 1; }
echo "C: status 2 not retried; status 3 retried twice, then given up"
echo "ckpt_fault_slow: OK"
