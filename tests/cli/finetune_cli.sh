#!/usr/bin/env bash
# label: unit
# `roformer finetune` end to end on tiny temporary task directories with a tiny random-init model
# (--from-scratch, vocab built by `roformer vocab build` from the same lines): AFQMC (classifier,
# AdamW, CAN; then AdaFactor, and --init from the first run's best encoder), CLUEWSC2020 and CSL
# (their input construction), C3 (multiple choice), ChID in CLUE format (multiple choice +
# Hungarian decoding over the blanks of a passage) and CMRC2018 (span head, sliding windows).
# For each: metrics.jsonl has per-epoch dev metrics, best/encoder and best/head verify, the
# submission exists, was validated, and `roformer evaluate` scores it against a labelled copy of
# the temp "test" file (which is only ever predicted, never trained on). C3 as d-/m- file pairs:
# `roformer evaluate --gold DIR [--split dev]` scores finetune's dev predictions over both dev
# files (one file alone cannot). train_split selects a
# file stem of the directory (a temp subset, and OCNLI train.3k vs the default train.10k on the
# real files when ../shared/data is present). Then user errors exit 2, including an unknown split,
# whose message lists the directory's splits.
# AFQMC lines come from ../shared/data/clue/afqmc/train.json when present, else are synthetic.
# Usage: bash finetune_cli.sh <roformer-binary> <source-dir>   (needs python3)
set -euo pipefail
BIN=$1
SRC=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export GLOG_minloglevel=${GLOG_minloglevel:-1}

python3 - "$TMP" "$SRC/../shared/data/clue/afqmc/train.json" <<'PY'
import json, os, random, sys
tmp, afqmc_src = sys.argv[1], sys.argv[2]
rng = random.Random(7)
chars = list("我你他她们的是了在有不人这中大为上个国和地到以说时要就出会可也对生能而子那得于着下自之年过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心")
def sent(a, b): return "".join(rng.choice(chars) for _ in range(rng.randint(a, b)))
def dump_lines(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows: f.write(json.dumps(r, ensure_ascii=False) + "\n")
corpus = []

# AFQMC: 40 train / 16 dev / 12 "test" (the test rows are unlabelled; test_gold keeps labels).
rows = []
if os.path.exists(afqmc_src):
    with open(afqmc_src, encoding="utf-8") as f:
        for line in f:
            if line.strip(): rows.append(json.loads(line))
            if len(rows) >= 68: break
while len(rows) < 68:
    s = sent(6, 14)
    same = rng.random() < 0.5
    rows.append({"sentence1": s, "sentence2": s[::-1] if same else sent(6, 14), "label": "1" if same else "0"})
d = os.path.join(tmp, "afqmc"); os.makedirs(d)
dump_lines(os.path.join(d, "train.json"), rows[:40])
dump_lines(os.path.join(d, "dev.json"), rows[40:56])
gold = [dict(r, id=i) for i, r in enumerate(rows[56:68])]
dump_lines(os.path.join(d, "test_gold.json"), gold)
dump_lines(os.path.join(d, "test.json"), [{"id": g["id"], "sentence1": g["sentence1"], "sentence2": g["sentence2"]} for g in gold])
for r in rows: corpus += [r["sentence1"], r["sentence2"]]

# CLUEWSC2020 and CSL (span markers; keywords + abstract).
def wsc(i, labelled=True):
    a, b = sent(3, 6), sent(3, 6)
    text = a + "他" + b + "它们" + sent(2, 5)
    r = {"target": {"span1_index": 0, "span1_text": a[:2], "span2_index": len(a) + 1 + len(b), "span2_text": "它们"}, "text": text}
    if labelled: r.update(idx=i, label=rng.choice(["true", "false"]))
    else: r["id"] = i
    return r
d = os.path.join(tmp, "wsc"); os.makedirs(d)
dump_lines(os.path.join(d, "train.json"), [wsc(i) for i in range(24)])
dump_lines(os.path.join(d, "dev.json"), [wsc(i) for i in range(8)])
dump_lines(os.path.join(d, "test.json"), [wsc(i, False) for i in range(6)])
def csl(i, labelled=True):
    r = {"id": i, "abst": sent(30, 60), "keyword": [sent(2, 4) for _ in range(3)]}
    if labelled: r["label"] = rng.choice(["0", "1"])
    return r
d = os.path.join(tmp, "csl"); os.makedirs(d)
dump_lines(os.path.join(d, "train.json"), [csl(i) for i in range(24)])
dump_lines(os.path.join(d, "dev.json"), [csl(i) for i in range(8)])
dump_lines(os.path.join(d, "test.json"), [csl(i, False) for i in range(6)])

# C3: JSON list of [passage lines, questions, doc id]; choices vary in number (2-4).
def c3doc(k, labelled=True, qid=None):
    lines = [sent(10, 25) for _ in range(2)]
    corpus.extend(lines)
    qs = []
    for j in range(2):
        ch = [sent(2, 4) for _ in range(rng.randint(2, 4))]
        q = {"question": sent(4, 8), "choice": ch}
        if labelled: q["answer"] = rng.choice(ch)
        if qid is not None: q["id"] = qid + j
        qs.append(q); corpus.extend(ch + [q["question"]])
    return [lines, qs, "doc-%d" % k]
d = os.path.join(tmp, "c3"); os.makedirs(d)
json.dump([c3doc(k) for k in range(8)], open(os.path.join(d, "train.json"), "w"), ensure_ascii=False)
json.dump([c3doc(k) for k in range(4)], open(os.path.join(d, "dev.json"), "w"), ensure_ascii=False)
test = [c3doc(k, True, 2 * k) for k in range(3)]
json.dump(test, open(os.path.join(d, "test_gold.json"), "w"), ensure_ascii=False)
for doc in test:
    for q in doc[1]: q.pop("answer")
json.dump(test, open(os.path.join(d, "test.json"), "w"), ensure_ascii=False)
# C3 with the official file pairs: train = d-train + m-train, dev = d-dev + m-dev.
d = os.path.join(tmp, "c3dm"); os.makedirs(d)
for name, k in (("d-train", 4), ("m-train", 4), ("d-dev", 2), ("m-dev", 3)):
    json.dump([c3doc(i) for i in range(k)], open(os.path.join(d, name + ".json"), "w"), ensure_ascii=False)

# ChID, CLUE format: passages with several "#idiomNNNNNN#" blanks sharing 10 candidates;
# answers in <split>_answer.json.
idioms = [sent(4, 4) for _ in range(40)]
corpus.extend(idioms)
d = os.path.join(tmp, "chid"); os.makedirs(d)
counter = [0]
def chid_file(name, n, with_answers=True):
    ans = {}
    with open(os.path.join(d, name + ".json"), "w", encoding="utf-8") as f:
        for _ in range(n):
            cands = rng.sample(idioms, 10)
            content = []
            order = rng.sample(range(10), 3)
            for p in range(2):
                text = sent(6, 12)
                for b in range(1 + p):
                    tag = "#idiom%06d#" % counter[0]; counter[0] += 1
                    ans[tag] = order.pop() if order else 0
                    text += tag + sent(5, 10)
                content.append(text); corpus.append(text)
            f.write(json.dumps({"candidates": cands, "content": content}, ensure_ascii=False) + "\n")
    if with_answers:
        json.dump(ans, open(os.path.join(d, name + "_answer.json"), "w"))
    return ans
chid_file("train", 8); chid_file("dev", 3)
test_ans = chid_file("test", 2, with_answers=False)
os.makedirs(os.path.join(d, "gold"))
import shutil
shutil.copy(os.path.join(d, "test.json"), os.path.join(d, "gold", "test.json"))
json.dump(test_ans, open(os.path.join(d, "gold", "test_answer.json"), "w"))

# CMRC2018: SQuAD-style; contexts longer than one window at max_len 64 so several windows exist.
def cmrc(prefix, n, labelled=True):
    paras = []
    for k in range(n):
        ctx = sent(60, 110)
        qas = []
        for j in range(2):
            s = rng.randint(0, len(ctx) - 5); ln = rng.randint(1, 4)
            qa = {"question": sent(4, 8), "id": "%s_%d_Q%d" % (prefix, k, j)}
            qa["answers"] = [{"text": ctx[s:s + ln], "answer_start": s}] if labelled else []
            qas.append(qa); corpus.append(qa["question"])
        paras.append({"id": "%s_%d" % (prefix, k), "context": ctx, "qas": qas}); corpus.append(ctx)
    return {"version": "v1.0", "data": [{"id": prefix, "title": "t", "paragraphs": paras}]}
d = os.path.join(tmp, "cmrc"); os.makedirs(d)
json.dump(cmrc("TRIAL", 6), open(os.path.join(d, "trial.json"), "w"), ensure_ascii=False)
json.dump(cmrc("DEV", 3), open(os.path.join(d, "dev.json"), "w"), ensure_ascii=False)
t = cmrc("TEST", 2)
json.dump(t, open(os.path.join(d, "test_gold.json"), "w"), ensure_ascii=False)
for p in t["data"][0]["paragraphs"]:
    for qa in p["qas"]: qa["answers"] = []
json.dump(t, open(os.path.join(d, "test.json"), "w"), ensure_ascii=False)

with open(os.path.join(tmp, "corpus.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(corpus) + "\n")
PY

"$BIN" vocab build --corpus "$TMP/corpus.txt" --size 400 --out "$TMP/vocab.txt"
MODEL=(--from-scratch --vocab "$TMP/vocab.txt" --set model.hidden_size=32
       --set model.num_hidden_layers=2 --set model.num_attention_heads=2
       --set model.intermediate_size=64 --set model.max_position_embeddings=128 --set log_every=0)

# check_run OUT TASK GOLD: metrics, checkpoints, submission scored by `roformer evaluate`.
check_run() {
  local out=$1 task=$2 gold=$3 sub=$4 metric=$5
  python3 - "$out/metrics.jsonl" "$metric" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ev = [r["event"] for r in recs]
assert ev[0] == "config" and ev[-1] == "done", ev
epochs = [r for r in recs if r["event"] == "epoch"]
assert epochs and all(sys.argv[2] in r for r in epochs), epochs
assert all(0 <= r[sys.argv[2]] <= 100 for r in epochs)
test = [r for r in recs if r["event"] == "test"]
assert len(test) == 1 and test[0]["validated"] and test[0]["entries"] > 0, test
print("%s: %d epochs, best %s" % (sys.argv[1], len(epochs), recs[-1]))
PY
  [[ -f "$out/$sub" ]] || { echo "missing submission $out/$sub"; exit 1; }
  "$BIN" ckpt verify "$out/best/encoder" > /dev/null
  "$BIN" ckpt verify "$out/best/head" > /dev/null
  "$BIN" evaluate --task "$task" --gold "$gold" --pred "$out/$sub"
}

# AFQMC with AdamW + CAN.
"$BIN" finetune --task afqmc --data "$TMP/afqmc" --out "$TMP/o_afqmc" "${MODEL[@]}" \
  --epochs 2 --batch 8 --max-len 48 --lr 1e-3 --can --can-k 2 --can-tau 0.5
check_run "$TMP/o_afqmc" afqmc "$TMP/afqmc/test_gold.json" afqmc_predict.json dev_accuracy
grep -q '"event":"can"' "$TMP/o_afqmc/metrics.jsonl"
python3 - "$TMP/o_afqmc/metrics.jsonl" <<'PY'
import json, sys
can = [json.loads(l) for l in open(sys.argv[1]) if '"event":"can"' in l][0]
for k in ("dev_accuracy_before", "dev_accuracy_after", "dev_accuracy_confident",
          "dev_accuracy_uncertain_before", "dev_accuracy_uncertain_after"):
    assert k in can, (k, can)
assert can["confident"] + can["uncertain"] == can["dev_count"], can
PY

# AdaFactor, from the first run's best encoder (--init; the vocab comes from its manifest).
"$BIN" finetune --task afqmc --data "$TMP/afqmc" --out "$TMP/o_afqmc_ada" \
  --init "$TMP/o_afqmc/best/encoder" --optimizer adafactor --epochs 1 --batch 8 --max-len 48 \
  --set log_every=0 --set adafactor.min_dim_size_to_factor=16
check_run "$TMP/o_afqmc_ada" afqmc "$TMP/afqmc/test_gold.json" afqmc_predict.json dev_accuracy

# train_split names any file stem of --data: train.small -> train.small.json (not the default
# train.json); metrics.jsonl records which file was read.
check_train_files() {
  python3 - "$1/metrics.jsonl" "$2" "$3" <<'PY'
import json, sys
cfg = json.loads(open(sys.argv[1]).readline())
assert cfg["event"] == "config", cfg
assert cfg["train_files"] == [sys.argv[2]], cfg["train_files"]
assert cfg["train_examples"] == int(sys.argv[3]), cfg["train_examples"]
PY
}
head -n 20 "$TMP/afqmc/train.json" > "$TMP/afqmc/train.small.json"
"$BIN" finetune --task afqmc --data "$TMP/afqmc" --out "$TMP/o_afqmc_small" "${MODEL[@]}" \
  --epochs 1 --batch 8 --max-len 48 --set train_split=train.small
check_train_files "$TMP/o_afqmc_small" train.small.json 20

# CLUEWSC2020 and CSL: submission validated inside finetune (no labelled test copy needed).
for t in wsc:cluewsc2020:cluewsc11_predict.json csl:csl:csl_predict.json; do
  IFS=: read -r dir task sub <<< "$t"
  "$BIN" finetune --task "$task" --data "$TMP/$dir" --out "$TMP/o_$dir" "${MODEL[@]}" \
    --epochs 1 --batch 8 --max-len 64 --lr 1e-3 --set pair_segment_b=1
  [[ -f "$TMP/o_$dir/$sub" ]] || { echo "missing $TMP/o_$dir/$sub"; ls "$TMP/o_$dir"; exit 1; }
  grep -q '"validated":true' "$TMP/o_$dir/metrics.jsonl"
done

# C3: per-choice scoring with ragged choice counts.
"$BIN" finetune --task c3 --data "$TMP/c3" --out "$TMP/o_c3" "${MODEL[@]}" \
  --epochs 2 --batch 4 --micro-batch 2 --max-len 64 --lr 1e-3
check_run "$TMP/o_c3" c3 "$TMP/c3/test_gold.json" c311_predict.json dev_accuracy

# C3 dev as the d-dev + m-dev pair (ids numbered across both files): `roformer evaluate --gold DIR`
# (--split dev, the default) reads the split the way finetune does and reproduces the kept epoch's
# dev accuracy from dev_c311_predict.json over all 10 questions.
"$BIN" finetune --task c3 --data "$TMP/c3dm" --out "$TMP/o_c3dm" "${MODEL[@]}" \
  --epochs 1 --batch 4 --max-len 64 --lr 1e-3 --set test_split=
"$BIN" evaluate --task c3 --gold "$TMP/c3dm" --split dev \
  --pred "$TMP/o_c3dm/dev_c311_predict.json" > "$TMP/c3dm_eval.json"
"$BIN" evaluate --task c3 --gold "$TMP/c3dm" --pred "$TMP/o_c3dm/dev_c311_predict.json" \
  > "$TMP/c3dm_eval_default.json"
cmp "$TMP/c3dm_eval.json" "$TMP/c3dm_eval_default.json"
python3 - "$TMP/o_c3dm/metrics.jsonl" "$TMP/c3dm_eval.json" <<'PY'
import json, sys
done = [json.loads(l) for l in open(sys.argv[1])][-1]
ev = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
assert ev["count"] == 10 and abs(ev["accuracy"] - done["best_dev_accuracy"]) < 1e-9, (ev, done)
PY

# ChID (CLUE format): blanks of a passage decoded jointly (Hungarian).
"$BIN" finetune --task chid --data "$TMP/chid" --out "$TMP/o_chid" "${MODEL[@]}" \
  --epochs 1 --batch 6 --max-len 40 --lr 1e-3
check_run "$TMP/o_chid" chid "$TMP/chid/gold/test.json" chid11_predict.json dev_accuracy
python3 - "$TMP/o_chid/chid11_predict.json" "$TMP/chid/test.json" <<'PY'
import json, re, sys
pred = json.load(open(sys.argv[1]))
for line in open(sys.argv[2]):
    row = json.loads(line)
    tags = [t for p in row["content"] for t in re.findall(r"#idiom\d+#", p)]
    picks = [pred[t] for t in tags]
    assert len(set(picks)) == len(picks), ("Hungarian decoding must not repeat an idiom", picks)
PY

# CMRC2018: no train split in CLUE's public data -> train on trial; windows of max_len 64.
"$BIN" finetune --task cmrc2018 --data "$TMP/cmrc" --out "$TMP/o_cmrc" "${MODEL[@]}" \
  --epochs 2 --batch 8 --max-len 64 --lr 1e-3 --set train_split=trial --set max_answer_len=8
check_run "$TMP/o_cmrc" cmrc2018 "$TMP/cmrc/test_gold.json" cmrc2018_predict.json dev_em
grep -q '"dev_f1"' "$TMP/o_cmrc/metrics.jsonl"
# The kept epoch's dev predictions (dev_<submission>) re-scored by `roformer evaluate` give the
# EM/F1 finetune selected on.
"$BIN" evaluate --task cmrc2018 --gold "$TMP/cmrc/dev.json" \
  --pred "$TMP/o_cmrc/dev_cmrc2018_predict.json" > "$TMP/cmrc_dev_eval.json"
python3 - "$TMP/o_cmrc/metrics.jsonl" "$TMP/cmrc_dev_eval.json" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
done = recs[-1]
ev = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
assert abs(ev["em"] - done["best_dev_em"]) < 1e-6 and abs(ev["f1"] - done["best_dev_f1"]) < 1e-6, (ev, done)
dp = [r for r in recs if r["event"] == "dev_predictions"]
assert len(dp) == 1 and dp[0]["epoch"] == done["best_epoch"], dp
PY
# test_split= (empty) turns the test prediction off.
"$BIN" finetune --task c3 --data "$TMP/c3" --out "$TMP/o_c3_notest" "${MODEL[@]}" \
  --epochs 1 --batch 4 --max-len 64 --set test_split=
[[ ! -e "$TMP/o_c3_notest/c311_predict.json" && -f "$TMP/o_c3_notest/dev_c311_predict.json" ]] \
  || { echo "test_split= must skip the submission"; ls "$TMP/o_c3_notest"; exit 1; }

# User errors exit 2 with a message.
expect_fail() {
  local want=$1; shift
  set +e
  "$BIN" "$@" > "$TMP/err.txt" 2>&1
  local rc=$?
  set -e
  [[ $rc -eq 2 ]] || { echo "expected exit 2, got $rc: $*"; cat "$TMP/err.txt"; exit 1; }
  grep -q -- "$want" "$TMP/err.txt" || { echo "expected '$want' in:"; cat "$TMP/err.txt"; exit 1; }
}
# One file of a two-file split cannot score its predictions (the m-dev ids are extra); --split
# needs a directory.
expect_fail "predicted id(s) not in" evaluate --task c3 --gold "$TMP/c3dm/d-dev.json" \
  --pred "$TMP/o_c3dm/dev_c311_predict.json"
expect_fail "needs --gold DIR" evaluate --task c3 --gold "$TMP/c3dm/d-dev.json" --split dev \
  --pred "$TMP/o_c3dm/dev_c311_predict.json"
expect_fail "no c3 split 'test2'" evaluate --task c3 --gold "$TMP/c3dm" --split test2 \
  --pred "$TMP/o_c3dm/dev_c311_predict.json"
expect_fail "train_split=trial" finetune --task cmrc2018 --data "$TMP/cmrc" --out "$TMP/x" "${MODEL[@]}"
expect_fail "classification tasks only" finetune --task c3 --data "$TMP/c3" --out "$TMP/x" "${MODEL[@]}" --can
expect_fail "unknown field" finetune --task afqmc --data "$TMP/afqmc" --out "$TMP/x" "${MODEL[@]}" --set nope=1
expect_fail "optimizer" finetune --task afqmc --data "$TMP/afqmc" --out "$TMP/x" "${MODEL[@]}" --optimizer sgd
expect_fail "--init" finetune --task afqmc --data "$TMP/afqmc" --out "$TMP/x"
expect_fail "train_split 'train.big': no such afqmc split.*available splits: dev (dev.json), test (test.json), train (train.json), test_gold, train.small" \
  finetune --task afqmc --data "$TMP/afqmc" --out "$TMP/x" "${MODEL[@]}" --set train_split=train.big
expect_fail "dev_split 'dev2'" finetune --task afqmc --data "$TMP/afqmc" --out "$TMP/x" "${MODEL[@]}" \
  --set dev_split=dev2

# The real OCNLI directory: "train" is the largest subset (train.10k), train_split=train.3k picks
# the 3k subset (a few examples of it: this checks the selection, not the model).
OCNLI="$SRC/../shared/data/clue/ocnli"
if [[ -f "$OCNLI/train.3k.json" && -f "$OCNLI/train.10k.json" ]]; then
  "$BIN" finetune --task ocnli --data "$OCNLI" --out "$TMP/o_ocnli3k" "${MODEL[@]}" --epochs 1 \
    --batch 8 --max-len 48 --set train_split=train.3k --set max_train_examples=24 \
    --set max_eval_examples=16
  check_train_files "$TMP/o_ocnli3k" train.3k.json 24
  "$BIN" finetune --task ocnli --data "$OCNLI" --out "$TMP/o_ocnli" "${MODEL[@]}" --epochs 1 \
    --batch 8 --max-len 48 --set max_train_examples=24 --set max_eval_examples=16
  check_train_files "$TMP/o_ocnli" train.10k.json 24
  expect_fail "available splits: dev (dev.json), test (test.json), train (train.10k.json), train.10k, train.3k" \
    finetune --task ocnli --data "$OCNLI" --out "$TMP/x" "${MODEL[@]}" --set train_split=train.30k
else
  echo "finetune_cli: shared OCNLI data absent ($OCNLI): real-file train_split checks skipped"
fi
echo "finetune_cli: OK"
