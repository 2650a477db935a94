#!/usr/bin/env bash
# `mpirun -np N roformer finetune` (DP=N) equals the single-process run on tiny synthetic CLUE
# directories written here, with a tiny --from-scratch model (TNEWS: 23 train / 10 dev / 9
# unlabelled test lines):
#   A: TNEWS, batch 6, micro-batch 2, dropout on, N=2: the step's 3 micro-batches are dealt 1 + 2
#      with their single-process rows and dropout masks (the epoch's last step has 5 examples);
#   B: TNEWS, batch 5 = micro-batch (odd: the 5 examples are split 3 + 2), dropout off, N=2;
#   C: C3 (multiple choice, ragged choice counts), batch 3, micro-batch 1, dropout on, N=2;
#   D: TNEWS, batch 11, micro-batch 4, dropout off, N=3: one micro-batch per rank, and the epoch's
#      last step has 1 example, so two ranks have an empty share;
#   E: CMRC2018 (span head, sliding windows), batch 4, micro-batch 1, dropout on, N=2.
# For each: every step's loss (metrics.jsonl "step" events, log_every=1) within 1e-6 relative,
# identical per-epoch dev metrics and best epoch, byte-identical submission and dev-prediction
# files (dev/test inference is sharded), only rank 0 printed the summary line, and best/encoder +
# best/head within 1e-5 (`roformer ckpt diff --tolerance`). B: 1e-4, as its ranks run other
# micro-batch shapes than one process (more than the summation order changes; Adam's
# normalisation magnifies rounding in near-zero gradient entries of LayerNorm biases to ~1e-5).
# No parameter check for C and E: the multiple-choice / span head's bias and the last LayerNorm's
# beta add the same constant to every choice / position, so their exact gradient is 0 and Adam
# turns the rounding residue (which any summation order changes) into full-size steps; their
# predictions are compared instead.
set -euo pipefail
R=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT; [ -n "${KEEP:-}" ] && trap - EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export GLOG_minloglevel=${GLOG_minloglevel:-1}
python3 - "$T" <<'PY'
import json, os, random, sys
tmp = sys.argv[1]
rng = random.Random(3)
chars = list("我你他她们的是了在有不人这中大为上个国和地到以说时要就出会可也对生能而子那得于着下自之年过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部")
def sent(a, b): return "".join(rng.choice(chars) for _ in range(rng.randint(a, b)))
corpus = []
os.makedirs(f"{tmp}/tnews")
for split, n in (("train", 23), ("dev", 10), ("test", 9)):
    with open(f"{tmp}/tnews/{split}.json", "w", encoding="utf-8") as f:
        for i in range(n):
            r = {"sentence": sent(5, 20), "keywords": ""}
            if split == "test": r["id"] = i
            else: r.update(label=rng.choice(["100", "101", "102", "103"]), label_desc="x")
            corpus.append(r["sentence"])
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
def c3doc(k, qid=None):
    lines = [sent(8, 20) for _ in range(2)]
    corpus.extend(lines)
    qs = []
    for j in range(2):
        ch = [sent(2, 4) for _ in range(rng.randint(2, 4))]
        q = {"question": sent(4, 8), "choice": ch}
        if qid is None: q["answer"] = rng.choice(ch)
        else: q["id"] = qid + j
        qs.append(q); corpus.extend(ch + [q["question"]])
    return [lines, qs, "doc-%d" % k]
os.makedirs(f"{tmp}/c3")
json.dump([c3doc(k) for k in range(7)], open(f"{tmp}/c3/train.json", "w"), ensure_ascii=False)
json.dump([c3doc(k) for k in range(3)], open(f"{tmp}/c3/dev.json", "w"), ensure_ascii=False)
json.dump([c3doc(k, 2 * k) for k in range(3)], open(f"{tmp}/c3/test.json", "w"), ensure_ascii=False)
def cmrc(prefix, n, labelled=True):
    paras = []
    for k in range(n):
        ctx = sent(60, 110); corpus.append(ctx)
        qas = []
        for j in range(2):
            s = rng.randint(0, len(ctx) - 5); ln = rng.randint(1, 4)
            qa = {"question": sent(4, 8), "id": "%s_%d_Q%d" % (prefix, k, j)}
            qa["answers"] = [{"text": ctx[s:s + ln], "answer_start": s}] if labelled else []
            qas.append(qa); corpus.append(qa["question"])
        paras.append({"id": "%s_%d" % (prefix, k), "context": ctx, "qas": qas})
    return {"version": "v1.0", "data": [{"id": prefix, "title": "t", "paragraphs": paras}]}
os.makedirs(f"{tmp}/cmrc2018")
for split, n in (("trial", 5), ("dev", 3), ("test", 2)):
    json.dump(cmrc(split.upper(), n, split != "test"), open(f"{tmp}/cmrc2018/{split}.json", "w"),
              ensure_ascii=False)
open(f"{tmp}/corpus.txt", "w", encoding="utf-8").write("\n".join(corpus) + "\n")
PY
"$R" vocab build --corpus "$T/corpus.txt" --size 300 --out "$T/vocab.txt" >/dev/null
MODEL=(--from-scratch --vocab "$T/vocab.txt" --set model.hidden_size=32
       --set model.num_hidden_layers=2 --set model.num_attention_heads=2
       --set model.intermediate_size=64 --set model.max_position_embeddings=64 --set log_every=1
       --lr 1e-3 --max-len 48)
MPI=(mpirun --oversubscribe --bind-to none)

run() {  # name np task extra-args...
  local name=$1 np=$2 task=$3; shift 3
  local cmd=("$R" finetune --task "$task" --data "$T/$task" --out "$T/$name" "${MODEL[@]}" "$@")
  [ "$np" -eq 1 ] || cmd=("${MPI[@]}" -np "$np" "${cmd[@]}")
  "${cmd[@]}" >"$T/$name.out" 2>"$T/$name.log" || { cat "$T/$name.out" "$T/$name.log"; exit 1; }
}

check() {  # name-of-case submission-file param-tolerance(none: skip) [np of the DP run]
  local np=${4:-2}
  local a=$T/$1_1 b=$T/$1_$np sub=$2 tol=$3
  python3 - "$a/metrics.jsonl" "$b/metrics.jsonl" "$1" "$np" <<'PY'
import json, sys
def load(p):
    recs = [json.loads(l) for l in open(p)]
    steps = {r["step"]: r for r in recs if r["event"] == "step"}
    epochs = [(r["epoch"], r.get("dev_accuracy", r.get("dev_em")), r.get("dev_f1"), r["best"])
              for r in recs if r["event"] == "epoch"]
    return recs, steps, epochs
ra, sa, ea = load(sys.argv[1])
rb, sb, eb = load(sys.argv[2])
assert ra[0]["dp"] == 1 and rb[0]["dp"] == int(sys.argv[4]), (ra[0], rb[0])
assert sa and sorted(sa) == sorted(sb), (sorted(sa), sorted(sb))
worst = 0.0
for s in sa:
    x, y = sa[s]["loss"], sb[s]["loss"]
    assert sa[s]["examples"] == sb[s]["examples"], (s, sa[s], sb[s])
    rel = abs(x - y) / max(abs(x), 1e-12)
    worst = max(worst, rel)
    assert rel <= 1e-6, ("step %d loss %r vs %r (rel %.3g)" % (s, x, y, rel))
assert ea == eb, (ea, eb)
assert ra[-1]["best_epoch"] == rb[-1]["best_epoch"], (ra[-1], rb[-1])
print("%s: %d steps, worst loss rel diff %.3g, dev %s" % (sys.argv[3], len(sa), worst, ea))
PY
  for part in encoder head; do
    [ "$tol" != none ] || break
    "$R" ckpt diff "$a/best/$part" "$b/best/$part" --tolerance "$tol" >"$T/diff.txt" ||
      { echo "$1: best/$part differs beyond $tol"; cat "$T/diff.txt"; exit 1; }
    echo "  best/$part: $(tail -1 "$T/diff.txt")"
  done
  cmp "$a/$sub" "$b/$sub" || { echo "$1: $sub differs"; exit 1; }
  cmp "$a/dev_$sub" "$b/dev_$sub" || { echo "$1: dev_$sub differs"; exit 1; }
  [ "$(grep -c "^finetune " "$b.out" || true)" = 1 ] ||
    { echo "$1: expected one summary line (rank 0) in:"; cat "$b.out"; exit 1; }
}

for np in 1 2; do run A_$np $np tnews --epochs 2 --batch 6 --micro-batch 2; done
check A tnews11_predict.json 1e-5
for np in 1 2; do
  run B_$np $np tnews --epochs 2 --batch 5 --micro-batch 5 --set hidden_dropout=0 \
    --set attention_dropout=0 --set head_dropout=0
done
check B tnews11_predict.json 1e-4
for np in 1 2; do run C_$np $np c3 --epochs 2 --batch 3 --micro-batch 1; done
check C c311_predict.json none
for np in 1 3; do
  run D_$np $np tnews --epochs 2 --batch 11 --micro-batch 4 --set hidden_dropout=0 \
    --set attention_dropout=0 --set head_dropout=0
done
check D tnews11_predict.json 1e-5 3
for np in 1 2; do
  run E_$np $np cmrc2018 --epochs 2 --batch 4 --micro-batch 1 --set train_split=trial \
    --set max_answer_len=8
done
check E cmrc2018_predict.json none
echo "finetune_dp: OK"
