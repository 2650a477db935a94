#!/usr/bin/env bash
# Growth across parallel layouts under mpirun (issue #6 "Distributed"): a two-stage plan whose
# small RealFormer stage runs at TP=1 x DP=2 and whose grown stage (hidden x2, heads x2, FFN x2,
# +1 layer in the middle, random zero-sum splits) runs at TP=2 x DP=2.
#  1. `mpirun -np 2 roformer schedule` runs stage 0 and stops with exit 2 naming `mpirun -np 4`
#     (stage 1 needs 4 processes), its checkpoint complete;
#  2. `mpirun -np 4 roformer schedule` (same command otherwise) grows the checkpoint on every rank,
#     checks the grown tensors' hash is identical on all 4 ranks, reshards it to TP=2 x DP=2 and
#     trains stage 1: its first held-out evaluation equals stage 0's last one (same held-out
#     sequences, dropout off) within 1e-5 relative;
#  3. a plan whose stages are two splits of the same 4 processes (TP=1 x DP=4, then TP=2 x DP=2)
#     exits 75 at the boundary and continues under launch/roformer-launch (which reruns it); its
#     final weights equal those of the route through np 2 (same data, same growth; 1e-4).
set -euo pipefail
R=$1
SRC=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT; [ -n "${KEEP:-}" ] && trap - EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
bash "$SRC/tests/make_tiny_corpus.sh" "$R" "$T" 11 300
MPI=(mpirun --oversubscribe --bind-to none)
fail() { echo "FAIL: $*" >&2; exit 1; }
plan() {  # file stage0-parallel stage1-parallel
  cat > "$1" <<TXT
base {
  model {
    hidden_size: 32 num_hidden_layers: 2 num_attention_heads: 2 intermediate_size: 64
    realformer: true max_position_embeddings: 64
  }
  train {
    micro_batch: 2 global_batch: 8 seq_len: 32 lr: 2e-3 warmup_steps: 2 log_every: 1
    eval_every: 0 eval_samples: 8 seed: 1234
  }
  data { corpus: "$T/shards" vocab: "$T/vocab.txt" }
  checkpoint { every: 2 keep: 10 }
}
stages { name: "small" steps: 4 config { parallel { $2 } } }
stages {
  name: "big" steps: 3
  config {
    model { hidden_size: 64 num_attention_heads: 4 intermediate_size: 128 num_hidden_layers: 3 }
    train { lr: 1e-3 warmup_steps: 2 }
    parallel { $3 }
  }
  growth { seed: 7 noise_scale: 0.1 insert_layers: 1 }
}
TXT
}
plan "$T/plan.textproto" "tp: 1 dp: 2" "tp: 2 dp: 2"
ck() { echo "$1/checkpoints/$(printf 'step_%08d' "$2")"; }

# 1. np 2: stage 0, then a clear stop.
set +e
"${MPI[@]}" -np 2 "$R" schedule --plan "$T/plan.textproto" --run-dir "$T/run" >"$T/np2.log" 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] || { cat "$T/np2.log"; fail "np 2: exit $rc, expected 2 at the stage boundary"; }
grep -q 'stage 1 ("big"): parallel.tp x parallel.dp = 4 processes but this job has 2' "$T/np2.log" &&
  grep -q "mpirun -np 4 roformer schedule" "$T/np2.log" || { cat "$T/np2.log"; fail "np 2 message"; }
"$R" ckpt verify "$(ck "$T/run" 4)" >/dev/null
"$R" ckpt inspect "$(ck "$T/run" 4)" > "$T/i4.txt"
grep -q "layout tp=1 dp=2" "$T/i4.txt" && grep -q "growth_stage 0" "$T/i4.txt" ||
  { cat "$T/i4.txt"; fail "stage 0 checkpoint"; }

# 2. np 4: grow (hash on all ranks), reshard to TP=2 x DP=2, train.
"${MPI[@]}" -np 4 "$R" schedule --plan "$T/plan.textproto" --run-dir "$T/run" >"$T/np4.log" 2>&1 ||
  { cat "$T/np4.log"; fail "np 4 run"; }
grep -q "identical on all 4 rank(s)" "$T/np4.log" || { cat "$T/np4.log"; fail "no hash check"; }
grep -q "resumed from .*step_00000004" "$T/np4.log" || { cat "$T/np4.log"; fail "no resume"; }
"$R" ckpt inspect "$(ck "$T/run" 7)" > "$T/i7.txt"
grep -q "layout tp=2 dp=2" "$T/i7.txt" && grep -q "growth_stage 1" "$T/i7.txt" ||
  { cat "$T/i7.txt"; fail "stage 1 checkpoint"; }
python3 - "$T/run/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ev = [r["eval_mlm_loss"] for r in rows if "eval_mlm_loss" in r and r["step"] == 4]
assert len(ev) == 2, ev  # stage 0's last evaluation (np 2), stage 1's first (np 4, after growth)
rel = abs(ev[1] - ev[0]) / ev[0]
assert rel <= 1e-5, f"held-out MLM loss {ev[0]!r} before growth (TP=1xDP=2), {ev[1]!r} after (TP=2xDP=2): rel {rel:.3g}"
print(f"growth TP=1xDP=2 -> TP=2xDP=2: held-out MLM loss {ev[0]!r} -> {ev[1]!r} (rel {rel:.2g})")
steps = sorted({r["step"] for r in rows if "loss" in r})
assert steps == list(range(1, 8)), steps
assert all(math.isfinite(r["loss"]) for r in rows if "loss" in r)
PY

# 3. Same process count, another split: exit 75 at the boundary, roformer-launch reruns it.
plan "$T/plan4.textproto" "tp: 1 dp: 4" "tp: 2 dp: 2"
"$SRC/launch/roformer-launch" --max-restarts 1 --backoff 0 -- \
  "${MPI[@]}" -np 4 "$R" schedule --plan "$T/plan4.textproto" --run-dir "$T/run4" >"$T/l4.log" 2>&1 ||
  { cat "$T/l4.log"; fail "roformer-launch with a layout change"; }
grep -q "exiting with status 75" "$T/l4.log" && grep -q "identical on all 4 rank(s)" "$T/l4.log" ||
  { cat "$T/l4.log"; fail "no relaunch for the layout change"; }
"$R" ckpt diff "$(ck "$T/run" 7)" "$(ck "$T/run4" 7)" --tolerance 1e-4 --params-only | head -1
echo "grow_distributed: OK"
