#!/usr/bin/env bash
# label: unit
# `roformer multitask` end to end on tiny synthetic AFQMC + CSL + TNEWS directories, from a 2-step
# pretraining checkpoint of a tiny model: per-task step records (loss, accuracy, w_<task>,
# gnorm_<task>) and per-epoch dev accuracies + their mean in metrics.jsonl; gradnorm's
# w_i * gnorm_i = 1; two identical runs write identical records (sampling and dropout are pure
# functions of (seed, step)); mixed sampling takes every task in every step, round_robin one task
# per step; the best checkpoint verifies; user errors exit 2.
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
python3 - "$T" <<'PY'
import json, os, random, sys
tmp = sys.argv[1]
rng = random.Random(3)
words = [l.strip() for l in open(os.path.join(tmp, "vocab.txt"), encoding="utf-8")][5:60]
def sent(): return " ".join(rng.choice(words) for _ in range(rng.randint(3, 8)))
def dump(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows: f.write(json.dumps(r, ensure_ascii=False) + "\n")
for split, n in (("train", 30), ("dev", 10)):
    dump(f"{tmp}/afqmc/{split}.json", [{"sentence1": sent(), "sentence2": sent(), "label": rng.choice("01")} for _ in range(n)])
    dump(f"{tmp}/csl/{split}.json", [{"id": i, "abst": sent(), "keyword": [sent(), sent()], "label": rng.choice("01")} for i in range(n)])
    dump(f"{tmp}/tnews/{split}.json", [{"sentence": sent(), "label": rng.choice(["100", "101", "102", "103"]), "label_desc": "x"} for _ in range(n + 6)])
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
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]
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
expect_error "classification tasks only" --tasks afqmc,c3 --data "$T/afqmc,$T/csl" "${base[@]}"
expect_error "unknown loss weighting scheme" --tasks afqmc,csl --data "$T/afqmc,$T/csl" "${base[@]}" --weighting best
expect_error "multitask.sampling" --tasks afqmc,csl --data "$T/afqmc,$T/csl" "${base[@]}" --set multitask.sampling=shuffle
expect_error "multitask.weights" --tasks afqmc,csl --data "$T/afqmc,$T/csl" "${base[@]}" --set multitask.weights=1,2,3
echo "multitask_cli: OK"
