#!/usr/bin/env bash
# label: unit
# `roformer schedule` on launch/plans/tiny.textproto (small RealFormer 6 steps -> grown x2 wide and
# +1 layer in the middle, 6 steps -> seq_len 32 -> 64, 4 steps):
#  1. an uninterrupted run: the held-out loss right after growth equals the one right before
#     (1e-5 relative; random zero-sum splits), the LR re-warms up at each stage start, the stage
#     index is in the checkpoints, the pre-growth checkpoint is kept under stages/, a rerun of a
#     finished schedule is a no-op;
#  2. the same plan interrupted three times (--max-steps 4: mid stage 0; --max-steps 5: across the
#     growth into stage 1; then the newest checkpoint deleted, as if the job died before saving
#     it), finished under launch/roformer-launch: same loss strings and bit-identical final weights
#     and Adam state (`ckpt diff --tolerance 0`) as the uninterrupted run; likewise when a run
#     stops exactly at the end of stage 0 (--max-steps 6) and the next one grows;
#  3. bad plans fail with exit 2 naming the plan and the stage/field, writing nothing: unknown
#     field, a stage that shrinks, TP not dividing the heads, tp x dp != world size, steps and
#     tokens both set, train.steps in a stage; a plan edited after the run started is refused.
set -euo pipefail
R=$1
SRC=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT; [ -n "${KEEP:-}" ] && trap - EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
bash "$SRC/tests/make_tiny_corpus.sh" "$R" "$T" 7 300
PLAN="$SRC/launch/plans/tiny.textproto"
DATA=(--set data.corpus="$T/shards" --set data.vocab="$T/vocab.txt")
fail() { echo "FAIL: $*" >&2; exit 1; }
sched() {  # run-dir log extra-args...: one invocation, its log kept
  local dir=$1 log=$2; shift 2
  "$R" schedule --plan "$PLAN" "${DATA[@]}" --run-dir "$dir" "$@" >"$log" 2>&1 ||
    { cat "$log"; fail "schedule $* (exit $?)"; }
}
losses() {  # metrics.jsonl -> "step loss-string" per training record (the last one of a step wins)
  python3 - "$1" <<'PY'
import re, sys
out = {}
for line in open(sys.argv[1]):
    m = re.search(r'"step":([0-9]+),"loss":([^,]*)', line)
    if m: out[int(m.group(1))] = m.group(2)
for k in sorted(out): print(k, out[k])
PY
}
ck() { echo "$1/checkpoints/$(printf 'step_%08d' "$2")"; }

# 1. Uninterrupted.
sched "$T/full" "$T/full.log"
python3 - "$T/full/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ev = [(r["step"], r["eval_mlm_loss"]) for r in rows if "eval_mlm_loss" in r]
at6 = [l for s, l in ev if s == 6]
assert len(at6) == 2, ev  # stage 0's last evaluation, stage 1's first (after growth)
rel = abs(at6[1] - at6[0]) / at6[0]
assert rel <= 1e-5, f"growth changed the held-out loss: {at6} (rel {rel:.3g})"
print(f"growth at step 6: held-out MLM loss {at6[0]!r} -> {at6[1]!r} (rel {rel:.2g})")
lr = {r["step"]: r["lr"] for r in rows if "lr" in r}
# metrics step k = after optimizer step k-1; stage 1 (lr 5e-4, warmup 3) starts at step index 6,
# stage 2 (warmup 1, 4 steps) at 12: both warm up again from the stage start.
expect = {1: 1e-3 / 2, 2: 1e-3, 7: 5e-4 / 3, 8: 5e-4 * 2 / 3, 9: 5e-4, 13: 5e-4}
for k, v in expect.items():
    assert abs(lr[k] - v) <= 1e-6 * v, (k, lr[k], v)
assert lr[12] < lr[11] < lr[10] <= 5.0001e-4, lr  # stage 1 decays to its own end
assert max(lr) == 16, lr
print("lr re-warmup at stage starts: ok")
PY
"$R" ckpt inspect "$(ck "$T/full" 16)" > "$T/i16.txt"
"$R" ckpt inspect "$(ck "$T/full" 8)" > "$T/i8.txt"
grep -q "growth_stage 2" "$T/i16.txt" && grep -q "growth_stage 1" "$T/i8.txt" ||
  fail "stage index not in the checkpoints"
grep -q "grown checkpoint crc32c" "$T/full.log" || fail "no growth hash logged"
# The grown checkpoint replaced step 6; the small model's final state is kept beside the run.
"$R" ckpt inspect "$T/full/stages/stage0-small-end" > "$T/i6.txt"
grep -q "growth_stage 0" "$T/i6.txt" && grep -q "hidden_size: 32" "$T/i6.txt" ||
  fail "pre-growth checkpoint not kept"
[ "$(wc -l < "$T/full/schedule.jsonl")" -eq 3 ] || fail "schedule.jsonl should have 3 stage starts"
sched "$T/full" "$T/again.log"
grep -q "already finished" "$T/again.log" || { cat "$T/again.log"; fail "rerun not a no-op"; }

# 2. Interrupted: mid stage 0, then across the growth into the middle of stage 1.
sched "$T/split" "$T/s1.log" --max-steps 4
grep -q "stopped in .*stage 0" "$T/s1.log" || { cat "$T/s1.log"; fail "no stop in stage 0"; }
sched "$T/split" "$T/s2.log" --max-steps 5
grep -q "resumed from .*step_00000004" "$T/s2.log" || { cat "$T/s2.log"; fail "no resume at 4"; }
grep -q "grown checkpoint .*step_00000006" "$T/s2.log" || { cat "$T/s2.log"; fail "no growth"; }
grep -q "stopped in .*stage 1" "$T/s2.log" || { cat "$T/s2.log"; fail "no stop in stage 1"; }
# The job "dies" after step 9 without its checkpoint: resume falls back to step 8 and redoes 9.
rm -rf "$(ck "$T/split" 9)"
"$SRC/launch/roformer-launch" --max-restarts 1 --backoff 0 -- \
  "$R" schedule --plan "$PLAN" "${DATA[@]}" --run-dir "$T/split" >"$T/s3.log" 2>&1 ||
  { cat "$T/s3.log"; fail "roformer-launch run"; }
grep -q "resumed from .*step_00000008" "$T/s3.log" || { cat "$T/s3.log"; fail "no resume at 8"; }
diff <(losses "$T/full/metrics.jsonl") <(losses "$T/split/metrics.jsonl") ||
  fail "loss strings of the interrupted run differ"
[ "$(losses "$T/split/metrics.jsonl" | wc -l)" -eq 16 ] || fail "expected 16 loss records"
"$R" ckpt diff "$(ck "$T/full" 16)" "$(ck "$T/split" 16)" --tolerance 0 | head -1
echo "interrupted (4 + 5 + crash + rest) == uninterrupted, bit for bit"
# Stopping exactly at a stage end leaves the growth to the next invocation.
sched "$T/edge" "$T/e1.log" --max-steps 6
grep -q "stopped in .*stage 0\|stopped at the end of stage 0" "$T/e1.log" || { cat "$T/e1.log"; fail "edge stop"; }
sched "$T/edge" "$T/e2.log"
grep -q "grown checkpoint .*step_00000006" "$T/e2.log" || { cat "$T/e2.log"; fail "edge: no growth"; }
"$R" ckpt diff "$(ck "$T/full" 16)" "$(ck "$T/edge" 16)" --tolerance 0 | head -1

# 3. Bad plans: exit 2, the plan file and stage/field named, nothing written.
bad() {  # name expected-substring plan-text [extra args]
  local name=$1 want=$2 text=$3; shift 3
  printf '%s\n' "$text" > "$T/$name.textproto"
  set +e
  "$R" schedule --plan "$T/$name.textproto" "${DATA[@]}" --run-dir "$T/bad-$name" "$@" \
    >"$T/$name.out" 2>&1
  local rc=$?
  set -e
  [ "$rc" -eq 2 ] || { cat "$T/$name.out"; fail "$name: exit $rc, expected 2"; }
  grep -q "$name.textproto" "$T/$name.out" || { cat "$T/$name.out"; fail "$name: plan not named"; }
  grep -q -- "$want" "$T/$name.out" || { cat "$T/$name.out"; fail "$name: no '$want'"; }
  [ ! -e "$T/bad-$name" ] || fail "$name: wrote $T/bad-$name"
  echo "bad plan $name: $(grep -m1 error "$T/$name.out")"
}
OK_BASE='base { model { hidden_size: 32 num_hidden_layers: 2 num_attention_heads: 2 intermediate_size: 64 max_position_embeddings: 64 } train { micro_batch: 4 global_batch: 8 seq_len: 32 } }'
bad unknown "unknown_field" "$OK_BASE stages { steps: 2 unknown_field: 1 }"
bad shrink 'stage 1 ("b"): model.hidden_size = 16 is smaller' \
  "$OK_BASE stages { steps: 2 } stages { name: \"b\" steps: 2 config { model { hidden_size: 16 num_attention_heads: 1 } } }"
bad tp 'stage 0 ("stage0")' "$OK_BASE stages { steps: 2 config { parallel { tp: 3 } } }"
grep -q "not divisible by parallel.tp = 3" "$T/tp.out" || { cat "$T/tp.out"; fail "tp: no reason"; }
bad world 'stage 0 ("stage0")' "$OK_BASE stages { steps: 2 config { parallel { tp: 2 dp: 2 } } }"
grep -q "mpirun -np 4" "$T/world.out" || { cat "$T/world.out"; fail "world: no mpirun hint"; }
bad both 'exactly one of `steps` or `tokens`' "$OK_BASE stages { steps: 2 tokens: 100 }"
bad trainsteps 'train.steps is not allowed' "$OK_BASE stages { steps: 2 config { train { steps: 5 } } }"
bad width 'integer multiple' \
  "$OK_BASE stages { steps: 2 } stages { steps: 2 config { model { hidden_size: 48 num_attention_heads: 3 } } }"
# A later stage needing more processes: the stages that fit run, then exit 2 with the mpirun -np
# to continue with (stage 0's checkpoint complete).
printf '%s\n' "$OK_BASE stages { steps: 2 } stages { name: \"big\" steps: 2 config { model { hidden_size: 64 num_attention_heads: 4 intermediate_size: 128 } parallel { tp: 2 } } }" > "$T/later.textproto"
set +e
"$R" schedule --plan "$T/later.textproto" "${DATA[@]}" --run-dir "$T/later" >"$T/later.out" 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q 'stage 1 ("big").*mpirun -np 2 roformer schedule' "$T/later.out" ||
  { cat "$T/later.out"; fail "later stage with more processes: exit $rc"; }
"$R" ckpt verify "$(ck "$T/later" 2)" > /dev/null
# A plan edited after its run started is refused (stage 0 now longer than the checkpoints say).
sed '0,/steps: 6/s//steps: 3/' "$PLAN" > "$T/edited.textproto"
set +e
"$R" schedule --plan "$T/edited.textproto" "${DATA[@]}" --run-dir "$T/split" >"$T/edited.out" 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "stage lengths changed" "$T/edited.out" ||
  { cat "$T/edited.out"; fail "edited plan accepted"; }
echo "schedule_cli: OK"
