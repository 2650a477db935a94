#!/usr/bin/env bash
# `mpirun -np 2 roformer multitask` (DP=2) equals the single-process run on tiny synthetic AFQMC +
# CSL + TNEWS directories, with dropout on and micro-batches of 2 (so every task's examples of a
# step are split across the ranks): realtime and gradnorm weighting under mixed sampling, and
# uncertainty under round_robin; and AFQMC + C3 + ChID (multiple choice) under gradnorm. Every
# step's per-task loss, accuracy, weight w_<task> and gradient norm gnorm_<task> within 1e-6
# relative; the per-epoch dev accuracies identical; the final
# resumable checkpoint's encoder + heads within 1e-5 (`ckpt diff --params-only`), and both runs
# wrote validated submissions of the same size. A DP=2 run stopped by --max-steps and resumed under
# DP=2 matches the single-process run too.
set -euo pipefail
R=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT; [ -n "${KEEP:-}" ] && trap - EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export GLOG_minloglevel=${GLOG_minloglevel:-1}
bash "$2/tests/make_tiny_corpus.sh" "$R" "$T" 11 200 >/dev/null
"$R" pretrain --set model.hidden_size=32 --set model.num_hidden_layers=2 \
  --set model.num_attention_heads=2 --set model.intermediate_size=64 \
  --set model.max_position_embeddings=64 --set train.steps=2 --set train.micro_batch=4 \
  --set train.global_batch=4 --set train.seq_len=32 --set train.eval_every=0 \
  --set data.corpus="$T/shards" --set data.vocab="$T/vocab.txt" --run-dir "$T/pt" >/dev/null 2>&1
python3 - "$T" "$2/tests" <<'PY'
import json, os, random, sys
sys.path.insert(0, sys.argv[2])
from tiny_clue import vocab_words, write_chid, write_jsonl
tmp = sys.argv[1]
rng = random.Random(5)
words = vocab_words(tmp, 60)
def sent(): return " ".join(rng.choice(words) for _ in range(rng.randint(3, 8)))
dump = write_jsonl
for split, n in (("train", 30), ("dev", 13), ("test", 7)):
    lab = split != "test"
    def L(x): return {"label": x} if lab else {}
    dump(f"{tmp}/afqmc/{split}.json", [dict(id=i, sentence1=sent(), sentence2=sent(), **L(rng.choice("01"))) for i in range(n)])
    dump(f"{tmp}/csl/{split}.json", [dict(id=i, abst=sent(), keyword=[sent(), sent()], **L(rng.choice("01"))) for i in range(n)])
    dump(f"{tmp}/tnews/{split}.json", [dict(id=i, sentence=sent(), **L(rng.choice(["100", "101", "102", "103"]))) for i in range(n + 6)])
# C3 (2-4 choices per question) and CLUE-format ChID (3 blanks per passage, 10 candidates).
def c3doc(k, labelled=True):
    qs = []
    for j in range(2):
        ch = [sent() for _ in range(rng.randint(2, 4))]
        q = {"question": sent(), "choice": ch, "id": 2 * k + j}
        if labelled: q["answer"] = rng.choice(ch)
        qs.append(q)
    return [[sent(), sent()], qs, "doc-%d" % k]
os.makedirs(f"{tmp}/c3")
for split, n in (("train", 10), ("dev", 5), ("test", 3)):
    json.dump([c3doc(k, split != "test") for k in range(n)], open(f"{tmp}/c3/{split}.json", "w"), ensure_ascii=False)
idioms = [" ".join(rng.choice(words) for _ in range(4)) for _ in range(30)]
os.makedirs(f"{tmp}/chid")
counter = [0]
for split, n in (("train", 6), ("dev", 3), ("test", 2)):
    write_chid(f"{tmp}/chid", split, n, rng, sent, idioms, counter, split != "test")
PY
# 30 + 30 + 36 examples, batch 8: 12 steps per epoch, 2 epochs; the final checkpoint at step 24.
TASKS=afqmc,csl,tnews
run() {  # name np extra-args...
  local name=$1 np=$2; shift 2
  local cmd=("$R" multitask --tasks $TASKS --data "$T/${TASKS//,/,$T/}"
    --init "$T/pt/checkpoints" --out "$T/$name" --epochs 2 --batch 8 --micro-batch 2 --max-len 24
    --lr 1e-3 --set log_every=1 --set eval_batch=4 --set checkpoint_every=24 "$@")
  if [ "$np" -gt 1 ]; then cmd=(mpirun --oversubscribe --bind-to none -np "$np" "${cmd[@]}"); fi
  "${cmd[@]}" >"$T/$name.log" 2>&1 || { cat "$T/$name.log"; exit 1; }
}
compare() {  # reference other steps expected-test-entries-json
  python3 - "$T/$1/metrics.jsonl" "$T/$2/metrics.jsonl" "$2" "$TASKS" "$3" "$4" <<'PY'
import json, sys
tasks = sys.argv[4].split(",")
nsteps, want_tests = int(sys.argv[5]), json.loads(sys.argv[6])
def load(p): return [json.loads(l) for l in open(p)]
a, b, name = load(sys.argv[1]), load(sys.argv[2]), sys.argv[3]
steps = lambda m: [r for r in m if r["event"] == "step"]
epochs = lambda m: [r for r in m if r["event"] == "epoch"]
sa, sb = steps(a), steps(b)
assert [r["step"] for r in sa] == [r["step"] for r in sb] == list(range(1, nsteps + 1)), name
worst = 0.0
for x, y in zip(sa, sb):
    for t in tasks:
        for k in (t + "_loss", t + "_acc", "w_" + t, "gnorm_" + t):
            rel = abs(x[k] - y[k]) / max(abs(x[k]), 1e-12)
            worst = max(worst, rel)
            assert rel <= 1e-6, f"{name}: step {x['step']} {k}: {x[k]!r} vs {y[k]!r} (rel {rel:.3g})"
assert any(abs(sa[-1]["w_" + t] - 1) > 1e-3 for t in tasks), "weights were not applied"
ea, eb = epochs(a), epochs(b)
assert len(ea) == len(eb) == 2, name
for x, y in zip(ea, eb):
    for t in tasks:
        assert x[t + "_dev_accuracy"] == y[t + "_dev_accuracy"], (name, t, x, y)
    assert x["best"] == y["best"], name
ta = {r["task"]: r["entries"] for r in a if r["event"] == "test"}
tb = {r["task"]: r["entries"] for r in b if r["event"] == "test"}
assert ta == tb == want_tests, (ta, tb)
print(f"{name}: {nsteps} steps of per-task losses, weights and norms match the single-process run, "
      f"worst rel {worst:.3g}; dev accuracies equal")
PY
  for part in encoder head; do
    "$R" ckpt diff "$T/$1/checkpoints/$part" "$T/$2/checkpoints/$part" --tolerance 1e-5 \
      --params-only | head -1
  done
}
CLS_TESTS='{"afqmc": 7, "csl": 7, "tnews": 13}'
for scheme in realtime gradnorm; do
  run "$scheme" 1 --weighting $scheme
  run "${scheme}_dp2" 2 --weighting $scheme
  compare "$scheme" "${scheme}_dp2" 24 "$CLS_TESTS"
done
run rr 1 --weighting uncertainty --set multitask.sampling=round_robin --set multitask.uncertainty_lr=0.05
run rr_dp2 2 --weighting uncertainty --set multitask.sampling=round_robin --set multitask.uncertainty_lr=0.05
compare rr rr_dp2 24 "$CLS_TESTS"
# DP=2 stopped at step 10 (--max-steps) and resumed under DP=2 again: same as the 1-process run.
run realtime_dp2_resume 2 --weighting realtime --max-steps 10
run realtime_dp2_resume 2 --weighting realtime
grep -q "resumed from step 10" "$T/realtime_dp2_resume.log" || { cat "$T/realtime_dp2_resume.log"; exit 1; }
compare realtime realtime_dp2_resume 24 "$CLS_TESTS"
# Multiple choice next to classification: 30 afqmc + 20 c3 questions + 18 chid blanks = 9 steps per
# epoch, so the final checkpoint is step 18 (checkpoint_every=24 saves the last step too).
TASKS=afqmc,c3,chid
run mc 1 --weighting gradnorm --max-len 40
run mc_dp2 2 --weighting gradnorm --max-len 40
compare mc mc_dp2 18 '{"afqmc": 7, "c3": 6, "chid": 6}'
[ -s "$T/realtime_dp2/tnews/tnews11_predict.json" ] || { echo "FAIL: no DP submission"; exit 1; }
echo "multitask_finetune_dp: OK"
