#!/usr/bin/env bash
# label: unit
# `roformer multitask` end to end on tiny synthetic AFQMC + CSL + TNEWS directories, from a 2-step
# pretraining checkpoint of a tiny model: per-task step records (loss, accuracy, w_<task>,
# gnorm_<task>) and per-epoch dev accuracies + their mean in metrics.jsonl; gradnorm's
# w_i * gnorm_i = 1; two identical runs write identical records (sampling and dropout are pure
# functions of (seed, step)); mixed sampling takes every task in every step, round_robin one task
# per step; the best checkpoint verifies; user errors exit 2 (cmrc2018, a span task, is refused).
# Test predictions: each task's test split is predicted into <out>/<task>/<CLUE submission file>
# (one validated entry per test example, a "test" record each).
# Resume: a run stopped by --max-steps 7 (checkpoint_every=5) and rerun equals the uninterrupted
# run bit for bit (metrics records, final resumable checkpoint and best checkpoint with
# `ckpt diff --tolerance 0`); so does a run whose newest checkpoint was lost (a crash after step
# 12: it resumes from step 10 and drops the metrics records of steps 11-12 first).
# Multiple choice: AFQMC + C3 + ChID (CLUE format) under gradnorm: per-task records, initial
# losses near log(choices), validated c311/chid11 submissions, ChID blanks of one passage decoded
# to distinct candidates (Hungarian).
# Usage: bash multitask_cli.sh <roformer-binary> <source-dir>
set -euo pipefail
BIN=$1
SRC=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export GLOG_minloglevel=${GLOG_minloglevel:-1} OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
bash "$SRC/tests/make_tiny_corpus.sh" "$BIN" "$T" 11 200 >/dev/null
"$BIN" pretrain --set model.hidden_size=32 --set model.num_hidden_layers=1 \
  --set model.num_attention_heads=2 --set model.intermediate_size=64 \
  --set model.max_position_embeddings=64 --set train.steps=2 --set train.micro_batch=4 \
  --set train.global_batch=4 --set train.seq_len=32 --set train.eval_every=0 \
  --set data.corpus="$T/shards" --set data.vocab="$T/vocab.txt" --run-dir "$T/pt" >/dev/null 2>&1
python3 - "$T" "$SRC/tests" <<'PY'
import json, os, random, sys
sys.path.insert(0, sys.argv[2])
from tiny_clue import vocab_words, write_chid, write_jsonl
tmp = sys.argv[1]
rng = random.Random(3)
words = vocab_words(tmp, 60)
def sent(): return " ".join(rng.choice(words) for _ in range(rng.randint(3, 8)))
dump = write_jsonl
for split, n in (("train", 30), ("dev", 10)):
    dump(f"{tmp}/afqmc/{split}.json", [{"sentence1": sent(), "sentence2": sent(), "label": rng.choice("01")} for _ in range(n)])
    dump(f"{tmp}/csl/{split}.json", [{"id": i, "abst": sent(), "keyword": [sent(), sent()], "label": rng.choice("01")} for i in range(n)])
    dump(f"{tmp}/tnews/{split}.json", [{"sentence": sent(), "label": rng.choice(["100", "101", "102", "103"]), "label_desc": "x"} for _ in range(n + 6)])
# Unlabelled test splits (5, 6, 7 examples).
dump(f"{tmp}/afqmc/test.json", [{"id": i, "sentence1": sent(), "sentence2": sent()} for i in range(5)])
dump(f"{tmp}/csl/test.json", [{"id": i, "abst": sent(), "keyword": [sent()]} for i in range(6)])
dump(f"{tmp}/tnews/test.json", [{"id": i, "sentence": sent()} for i in range(7)])
# Multiple choice. C3: JSON list of [passage lines, questions, doc id], 2-4 choices per question.
def c3doc(k, labelled=True, qid=None):
    qs = []
    for j in range(2):
        ch = [sent() for _ in range(rng.randint(2, 4))]
        q = {"question": sent(), "choice": ch}
        if labelled: q["answer"] = rng.choice(ch)
        if qid is not None: q["id"] = qid + j
        qs.append(q)
    return [[sent(), sent()], qs, "doc-%d" % k]
os.makedirs(f"{tmp}/c3")
for split, n in (("train", 10), ("dev", 4)):
    json.dump([c3doc(k) for k in range(n)], open(f"{tmp}/c3/{split}.json", "w"), ensure_ascii=False)
json.dump([c3doc(k, False, 2 * k) for k in range(3)], open(f"{tmp}/c3/test.json", "w"), ensure_ascii=False)
# ChID, CLUE format: passages with 3 "#idiomNNNNNN#" blanks sharing 10 candidates (distinct
# answers: Hungarian decoding applies); answers in <split>_answer.json.
idioms = [" ".join(rng.choice(words) for _ in range(4)) for _ in range(30)]
os.makedirs(f"{tmp}/chid")
counter = [0]
def chid_file(name, n, with_answers=True):
    write_chid(f"{tmp}/chid", name, n, rng, sent, idioms, counter, with_answers)
chid_file("train", 6); chid_file("dev", 2); chid_file("test", 2, with_answers=False)
PY
run() {  # out-dir extra-args...
  local out=$1; shift
  "$BIN" multitask --tasks afqmc,csl,tnews --data "$T/afqmc,$T/csl,$T/tnews" --init "$T/pt/checkpoints" \
    --out "$T/$out" --epochs 2 --batch 8 --micro-batch 4 --max-len 24 --lr 1e-3 --set log_every=1 "$@" \
    >"$T/$out.out" 2>"$T/$out.err" || { cat "$T/$out.err"; exit 1; }
}
run rt --weighting realtime
run rt2 --weighting realtime
run gn --weighting gradnorm
run rr --weighting fixed --set multitask.sampling=round_robin --set save_best=false
python3 - "$T" <<'PY'
import json, math, sys
tmp = sys.argv[1]
def load(name):
    return [json.loads(l) for l in open(f"{tmp}/{name}/metrics.jsonl")]
def strip(rows):
    return [{k: v for k, v in r.items() if k not in ("elapsed_s", "submission")} for r in rows]
rt, rt2, gn, rr = load("rt"), load("rt2"), load("gn"), load("rr")
tasks = ["afqmc", "csl", "tnews"]
# 30 + 30 + 36 training examples, batch 8: 12 steps per epoch, 2 epochs.
for name, m in (("rt", rt), ("gn", gn), ("rr", rr)):
    steps = [r for r in m if r["event"] == "step"]
    epochs = [r for r in m if r["event"] == "epoch"]
    assert len(steps) == 24 and len(epochs) == 2, (name, len(steps), len(epochs))
    for e in epochs:
        accs = [e[t + "_dev_accuracy"] for t in tasks]
        assert abs(e["mean_dev_accuracy"] - sum(accs) / 3) < 1e-9, (name, e)
assert strip(rt) == strip(rt2), "two identical runs differ"
for r in (r for r in rt if r["event"] == "step"):
    for t in tasks:
        # mixed: every task in every step; realtime: w_i = 1 / L_i.
        assert r[t + "_loss"] > 0, r
        assert abs(r["w_" + t] * r[t + "_loss"] - 1) < 1e-6, (t, r)
for r in (r for r in gn if r["event"] == "step"):
    for t in tasks:
        assert abs(r["w_" + t] * r["gnorm_" + t] - 1) < 1e-6, (t, r)
for r in (r for r in rr if r["event"] == "step"):
    present = [t for t in tasks if r[t + "_loss"] > 0]
    assert present == [tasks[(r["step"] - 1) % 3]], (present, r)
print("multitask records OK")
PY
python3 - "$T" <<'PY'
import json, sys
tmp = sys.argv[1]
files = {"afqmc": "afqmc_predict.json", "csl": "csl_predict.json", "tnews": "tnews11_predict.json"}
want = {"afqmc": 5, "csl": 6, "tnews": 7}
tests = {r["task"]: r for r in map(json.loads, open(f"{tmp}/rt/metrics.jsonl")) if r["event"] == "test"}
assert sorted(tests) == sorted(want), tests
for t, n in want.items():
    rows = [json.loads(l) for l in open(f"{tmp}/rt/{t}/{files[t]}")]
    assert [r["id"] for r in rows] == list(range(n)), (t, rows)
    assert tests[t]["entries"] == n and tests[t]["validated"], tests[t]
print("multitask submissions OK")
PY
# Resume: uninterrupted vs stopped at step 7 and rerun vs "crashed" after step 12.
run full --weighting uncertainty --set checkpoint_every=5
run part --weighting uncertainty --set checkpoint_every=5 --max-steps 7
grep -q "stopped after 7 steps" "$T/part.out" || { cat "$T/part.out"; exit 1; }
[ ! -e "$T/part/afqmc" ] || { echo "FAIL: a stopped run wrote submissions"; exit 1; }
# The same --max-steps again: resumes at step 7 and stops at once (no eighth step).
run part --weighting uncertainty --set checkpoint_every=5 --max-steps 7
grep -q "stopped after 7 steps" "$T/part.out" || { cat "$T/part.out"; exit 1; }
run part --weighting uncertainty --set checkpoint_every=5
grep -q "resumed from step 7" "$T/part.out" || { cat "$T/part.out"; exit 1; }
run crash --weighting uncertainty --set checkpoint_every=5 --max-steps 12
ls "$T/crash/checkpoints/encoder" | grep -q "step_0*10$" || { ls "$T/crash/checkpoints/encoder"; exit 1; }
rm -rf "$T/crash/checkpoints/encoder/"step_*12 "$T/crash/checkpoints/head/"step_*12
run crash --weighting uncertainty --set checkpoint_every=5
grep -q "resumed from step 10" "$T/crash.out" || { cat "$T/crash.out"; exit 1; }
python3 - "$T" <<'PY'
import json, sys
tmp = sys.argv[1]
def load(name):
    return [{k: v for k, v in r.items() if k not in ("elapsed_s", "submission")}
            for r in map(json.loads, open(f"{tmp}/{name}/metrics.jsonl")) if r["event"] != "resume"]
full = load("full")
assert sum(r["event"] == "step" for r in full) == 24
for name in ("part", "crash"):
    assert load(name) == full, f"{name}: resumed records differ from the uninterrupted run"
print("multitask resume OK")
PY
for run in part crash; do
  for d in checkpoints/encoder checkpoints/head best/encoder best/head; do
    "$BIN" ckpt diff "$T/full/$d" "$T/$run/$d" --tolerance 0 >/dev/null ||
      { echo "FAIL: $run $d differs from the uninterrupted run"; exit 1; }
  done
  cmp -s "$T/full/tnews/tnews11_predict.json" "$T/$run/tnews/tnews11_predict.json" ||
    { echo "FAIL: $run submission differs"; exit 1; }
done
# Multiple-choice tasks (C3, ChID) next to a classification task, with gradnorm.
"$BIN" multitask --tasks afqmc,c3,chid --data "$T/afqmc,$T/c3,$T/chid" --init "$T/pt/checkpoints" \
  --out "$T/mc" --epochs 2 --batch 8 --micro-batch 4 --max-len 48 --lr 1e-3 --set log_every=1 \
  --weighting gradnorm >"$T/mc.out" 2>"$T/mc.err" || { cat "$T/mc.err"; exit 1; }
python3 - "$T" <<'PY'
import json, math, sys
tmp = sys.argv[1]
m = [json.loads(l) for l in open(f"{tmp}/mc/metrics.jsonl")]
steps = [r for r in m if r["event"] == "step"]
# 30 afqmc + 20 c3 questions + 18 chid blanks, batch 8: 9 steps per epoch.
assert len(steps) == 18, len(steps)
for r in steps:
    for t in ("afqmc", "c3", "chid"):
        assert r[t + "_loss"] > 0 and abs(r["w_" + t] * r["gnorm_" + t] - 1) < 1e-6, (t, r)
# Before training, a question's loss is about log(its choices): C3 log 2..log 4, ChID log 10.
assert 0.5 < steps[0]["c3_loss"] < 1.6 and 1.9 < steps[0]["chid_loss"] < 2.8, steps[0]
ep = [r for r in m if r["event"] == "epoch"]
assert len(ep) == 2 and all(0 <= e["c3_dev_accuracy"] <= 100 and "chid_dev_accuracy" in e for e in ep)
tests = {r["task"]: r["entries"] for r in m if r["event"] == "test"}
assert tests == {"afqmc": 5, "c3": 6, "chid": 6}, tests
c3 = [json.loads(l) for l in open(f"{tmp}/mc/c3/c311_predict.json")]
assert [r["id"] for r in c3] == list(range(6)), c3
chid = json.load(open(f"{tmp}/mc/chid/chid11_predict.json"))
assert len(chid) == 6 and all(0 <= v < 10 for v in chid.values()), chid
# Hungarian decoding: the blanks of one passage take distinct candidates.
by_line = {}
for k, v in sorted(chid.items()):
    by_line.setdefault(int(k[6:12]) // 3, []).append(v)
assert all(len(set(v)) == len(v) for v in by_line.values()), by_line
print("multitask multiple choice OK")
PY
"$BIN" ckpt verify "$T/rt/best/encoder" >/dev/null
"$BIN" ckpt verify "$T/rt/best/head" >/dev/null
[ ! -e "$T/rr/best" ] || { echo "FAIL: save_best=false wrote best/"; exit 1; }
grep -q "best mean dev" "$T/rt.out" || { cat "$T/rt.out"; exit 1; }
expect_error() {  # message-substring args...
  local want=$1; shift
  set +e
  "$BIN" multitask "$@" >"$T/err.out" 2>&1
  local rc=$?
  set -e
  [ $rc -eq 2 ] || { echo "FAIL: expected exit 2, got $rc for $*"; cat "$T/err.out"; exit 1; }
  grep -q -- "$want" "$T/err.out" || { echo "FAIL: no '$want' in:"; cat "$T/err.out"; exit 1; }
}
base=(--init "$T/pt/checkpoints" --out "$T/bad" --epochs 1)
expect_error "2 tasks but 1 --data" --tasks afqmc,csl --data "$T/afqmc" "${base[@]}"
expect_error "cmrc2018 is a span task; multi-task fine-tuning supports classification and multiple-choice tasks only" \
  --tasks afqmc,cmrc2018 --data "$T/afqmc,$T/csl" "${base[@]}"
expect_error "task afqmc given twice" --tasks afqmc,afqmc --data "$T/afqmc,$T/afqmc" "${base[@]}"
expect_error "max-steps must be a positive" --tasks afqmc,csl --data "$T/afqmc,$T/csl" "${base[@]}" --max-steps 0
expect_error "checkpoint_every must be >= 0" --tasks afqmc,csl --data "$T/afqmc,$T/csl" "${base[@]}" --set checkpoint_every=-1
expect_error "unknown loss weighting scheme" --tasks afqmc,csl --data "$T/afqmc,$T/csl" "${base[@]}" --weighting best
expect_error "multitask.sampling" --tasks afqmc,csl --data "$T/afqmc,$T/csl" "${base[@]}" --set multitask.sampling=shuffle
expect_error "multitask.weights" --tasks afqmc,csl --data "$T/afqmc,$T/csl" "${base[@]}" --set multitask.weights=1,2,3
echo "multitask_cli: OK"
