#!/usr/bin/env bash
# label: unit
# model.attention_recompute through the fine-tuning paths (model/finetune_batch.cc EncodeMicroBatch,
# model/finetune.cc, model/multitask_finetune.cc) and the forward-only commands (`infer`, `embed`).
# A tiny 3-layer model (with 2 layers the RealFormer carry is never rebuilt by subtraction: layer
# 0 takes its scores from S, so 3 is the least that exercises the inexact path) is pretrained
# twice, with attention_recompute false / true; finetune and multitask take the model config from
# the checkpoint manifest, so the option travels with the checkpoint (with --init only
# model.attention_recompute may be changed by --set). From each: `finetune` AFQMC (classifier), C3 and ChID (multiple choice:
# several choices per example, variable rows per micro-batch) and CMRC2018 (span head, several
# windows per context), 2 epochs, batch 4 in micro-batches of 2 (several forward/backward pairs
# per step, dev passes between epochs), encoder and head dropout on; `multitask` AFQMC + C3 + ChID
# under gradnorm; `infer` (padded rows) and `embed`. Asserts: every recompute run succeeds (no
# "one EncoderBackward per EncoderForward" CHECK), the recompute checkpoints record the option,
# and the runs match the stored-probability runs:
#   RealFormer: per-step losses (pretrain, finetune, multitask per task) within 1e-4 relative,
#     epoch dev metrics equal (dev/train losses within 1e-4), dev prediction files identical
#     (ChID per-blank argmax here: Hungarian decoding of a near-random model's blanks of one
#     passage is a near tie that 1e-7 differences can flip), infer/embed outputs within 1e-4;
#   vanilla (realformer=false): everything bit-identical (metrics records but elapsed_s, dev
#     prediction files incl. Hungarian ChID, pretrained checkpoints with `ckpt diff --tolerance 0`,
#     infer/embed tensors).
# Plus `finetune --from-scratch --set model.attention_recompute=true` (RealFormer, AFQMC + C3):
# identical init, losses within 1e-4, and best/encoder records the option; and `finetune --init`
# of a checkpoint pretrained without the option plus `--set model.attention_recompute=true`: the
# option applies (within 1e-4 of the run without it), another model.* field only warns.
# Usage: bash recompute_finetune.sh <roformer-binary> <source-dir>   (needs python3)
set -euo pipefail
BIN=$1
SRC=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export GLOG_minloglevel=${GLOG_minloglevel:-1} OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
bash "$SRC/tests/make_tiny_corpus.sh" "$BIN" "$T" 11 200 >/dev/null

# Synthetic CLUE-format task directories over vocab words (as tests/cli/multitask_cli.sh).
python3 - "$T" "$SRC/tests" <<'PY'
import json, os, random, sys
sys.path.insert(0, sys.argv[2])
from tiny_clue import vocab_words, write_chid, write_jsonl
tmp = sys.argv[1]
rng = random.Random(5)
words = vocab_words(tmp, 80)
def sent(a=3, b=8): return "".join(rng.choice(words) for _ in range(rng.randint(a, b)))
dump = write_jsonl
for split, n in (("train", 16), ("dev", 8)):
    dump(f"{tmp}/afqmc/{split}.json",
         [{"sentence1": sent(), "sentence2": sent(), "label": rng.choice("01")} for _ in range(n)])
# C3: [passage lines, questions, doc id], 2-4 choices per question.
def c3doc(k):
    qs = []
    for j in range(2):
        ch = [sent(2, 4) for _ in range(rng.randint(2, 4))]
        qs.append({"question": sent(), "choice": ch, "answer": rng.choice(ch)})
    return [[sent(), sent()], qs, "doc-%d" % k]
os.makedirs(f"{tmp}/c3")
for split, n in (("train", 6), ("dev", 3)):
    json.dump([c3doc(k) for k in range(n)], open(f"{tmp}/c3/{split}.json", "w"), ensure_ascii=False)
# ChID, CLUE format: 3 "#idiomNNNNNN#" blanks per passage sharing 10 candidates.
idioms = [sent(4, 4) for _ in range(30)]
os.makedirs(f"{tmp}/chid")
counter = [0]
def chid_file(name, n):
    write_chid(f"{tmp}/chid", name, n, rng, sent, idioms, counter)
chid_file("train", 4); chid_file("dev", 2)
# CMRC2018 (SQuAD style): contexts longer than one 48-token window.
def cmrc(prefix, n):
    paras = []
    for k in range(n):
        ctx = sent(40, 70)
        qas = []
        for j in range(2):
            s = rng.randint(0, len(ctx) - 5); ln = rng.randint(1, 4)
            qas.append({"question": sent(2, 5), "id": "%s_%d_Q%d" % (prefix, k, j),
                        "answers": [{"text": ctx[s:s + ln], "answer_start": s}]})
        paras.append({"id": "%s_%d" % (prefix, k), "context": ctx, "qas": qas})
    return {"version": "v1.0", "data": [{"id": prefix, "title": "t", "paragraphs": paras}]}
os.makedirs(f"{tmp}/cmrc")
json.dump(cmrc("TRIAL", 4), open(f"{tmp}/cmrc/trial.json", "w"), ensure_ascii=False)
json.dump(cmrc("DEV", 2), open(f"{tmp}/cmrc/dev.json", "w"), ensure_ascii=False)
# infer: rows of different lengths (padded to the longest, attention_mask 0 on the padding).
with open(f"{tmp}/ids.jsonl", "w") as f:
    for n in (7, 12, 20, 5):
        f.write(json.dumps({"input_ids": [2] + [rng.randint(5, 599) for _ in range(n)] + [3]}) + "\n")
with open(f"{tmp}/sentences.txt", "w", encoding="utf-8") as f:
    for _ in range(6): f.write(sent(3, 12) + "\n")
PY

# run NAME CMD...: runs the binary, output to $T/NAME.log; fails on a non-zero exit or on the
# recompute + RealFormer "second EncoderBackward" CHECK.
run() {
  local name=$1; shift
  if ! "$BIN" "$@" >"$T/$name.log" 2>&1; then
    echo "FAIL: $name: roformer $*"; tail -20 "$T/$name.log"; exit 1
  fi
  if grep -q "one EncoderBackward per" "$T/$name.log"; then
    echo "FAIL: $name: second EncoderBackward"; tail -20 "$T/$name.log"; exit 1
  fi
}
recorded() {  # CKPT true|false: the manifest's model config records attention_recompute
  local manifest
  manifest=$("$BIN" ckpt inspect "$1")
  grep -q "attention_recompute: $2" <<<"$manifest" ||
    { echo "FAIL: $1 does not record attention_recompute: $2"; exit 1; }
}

TINY=(--set model.hidden_size=32 --set model.num_hidden_layers=3 --set model.num_attention_heads=2
      --set model.intermediate_size=64 --set model.max_position_embeddings=64
      --set model.hidden_dropout_prob=0.1 --set model.attention_probs_dropout_prob=0.1)
FT=(--epochs 2 --batch 4 --micro-batch 2 --lr 1e-3 --set log_every=1 --set hidden_dropout=0.1
    --set attention_dropout=0.1 --set head_dropout=0.1 --set test_split=)
for variant in rf van; do
  real=$([ $variant = rf ] && echo true || echo false)
  chid_hungarian=$([ $variant = rf ] && echo false || echo true)
  for rc in off on; do
    recompute=$([ $rc = on ] && echo true || echo false)
    v=${variant}_$rc
    run pt_$v pretrain "${TINY[@]}" --set model.realformer=$real \
      --set model.attention_recompute=$recompute --set train.steps=3 --set train.micro_batch=2 \
      --set train.global_batch=4 --set train.seq_len=32 --set train.lr=1e-3 \
      --set train.warmup_steps=0 --set train.log_every=1 --set train.eval_every=0 \
      --set data.corpus="$T/shards" --set data.vocab="$T/vocab.txt" --run-dir "$T/pt_$v"
    recorded "$T/pt_$v/checkpoints" $recompute
    init=(--init "$T/pt_$v/checkpoints")
    run ft_afqmc_$v finetune --task afqmc --data "$T/afqmc" --out "$T/ft_afqmc_$v" "${init[@]}" \
      "${FT[@]}" --max-len 32
    run ft_c3_$v finetune --task c3 --data "$T/c3" --out "$T/ft_c3_$v" "${init[@]}" "${FT[@]}" \
      --max-len 48
    run ft_chid_$v finetune --task chid --data "$T/chid" --out "$T/ft_chid_$v" "${init[@]}" \
      "${FT[@]}" --max-len 32 --set chid_hungarian=$chid_hungarian
    run ft_cmrc2018_$v finetune --task cmrc2018 --data "$T/cmrc" --out "$T/ft_cmrc2018_$v" \
      "${init[@]}" "${FT[@]}" --max-len 48 --set train_split=trial
    recorded "$T/ft_c3_$v/best/encoder" $recompute
    run mt_$v multitask --tasks afqmc,c3,chid --data "$T/afqmc,$T/c3,$T/chid" "${init[@]}" \
      --out "$T/mt_$v" --epochs 2 --batch 4 --micro-batch 2 --max-len 32 --lr 1e-3 \
      --set log_every=1 --set test_split= --weighting gradnorm
    run infer_$v infer --ckpt "$T/pt_$v/checkpoints" --input "$T/ids.jsonl" \
      --out "$T/infer_$v.safetensors" --micro-batch 3
    run embed_$v embed --ckpt "$T/pt_$v/checkpoints" --input "$T/sentences.txt" \
      --out "$T/embed_$v.safetensors" --pooling first-last-avg --batch 4
  done
done
# --from-scratch: --set model.attention_recompute=true applies (same seed: identical init).
for rc in off on; do
  recompute=$([ $rc = on ] && echo true || echo false)
  for task in afqmc c3; do
    run fs_${task}_$rc finetune --task $task --data "$T/$task" --out "$T/fs_${task}_$rc" \
      --from-scratch --vocab "$T/vocab.txt" "${TINY[@]}" --set model.realformer=true \
      --set model.attention_recompute=$recompute "${FT[@]}" --max-len 48
  done
done
recorded "$T/fs_c3_on/best/encoder" true
# --init with --set model.attention_recompute=true: the memory option applies to a checkpoint
# pretrained without it; any other model.* field is ignored with a warning naming it.
run init_c3_on finetune --task c3 --data "$T/c3" --out "$T/init_c3_on" \
  --init "$T/pt_rf_off/checkpoints" "${FT[@]}" --max-len 48 \
  --set model.attention_recompute=true --set model.hidden_size=64
recorded "$T/init_c3_on/best/encoder" true
grep -q "model.hidden_size is ignored with --init" "$T/init_c3_on.log" ||
  { echo "FAIL: no warning for model.hidden_size with --init"; exit 1; }

python3 - "$T" <<'PY'
import json, os, struct, sys
from array import array
tmp = sys.argv[1]
fails = []
def check(ok, what):
    if not ok: fails.append(what)
def records(path):
    return [json.loads(l) for l in open(path)]
def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-30)
def numbers_match(ra, rb, tol, what):
    # Same keys; strings/ints equal; floats within tol relative (0 = bit-identical).
    check(sorted(ra) == sorted(rb), f"{what}: keys differ {sorted(ra)} vs {sorted(rb)}")
    for k in ra:
        if k not in rb or k in ("elapsed_s", "path", "init", "best_checkpoint", "submission"):
            continue
        a, b = ra[k], rb[k]
        if isinstance(a, float) and isinstance(b, (int, float)) and tol > 0 and \
                not k.endswith("accuracy") and not k.startswith(("dev_em", "dev_f1")):
            check(rel(a, b) <= tol, f"{what}: {k} {a} vs {b} (rel {rel(a, b):.3g} > {tol})")
        else:
            check(a == b, f"{what}: {k} {a!r} vs {b!r}")
def pretrain_steps(run):
    keep = ("step", "loss", "mlm_loss", "sop_loss", "grad_norm", "mlm_acc", "sop_acc")
    return [{k: r[k] for k in keep if k in r}
            for r in records(f"{tmp}/{run}/metrics.jsonl") if "loss" in r]
def compare(off, on, tol, min_steps):
    a, b = records(f"{tmp}/{off}/metrics.jsonl"), records(f"{tmp}/{on}/metrics.jsonl")
    steps = sum(r["event"] == "step" for r in a)
    check(steps >= min_steps, f"{off}: {steps} step records, expected >= {min_steps}")
    check([r["event"] for r in a] == [r["event"] for r in b], f"{on}: other records than {off}")
    worst = 0.0
    for ra, rb in zip(a, b):
        if ra["event"] == "config":
            continue
        numbers_match(ra, rb, tol, f"{on} {ra['event']} step {ra.get('step')}")
        if ra["event"] == "step":
            for k, x in ra.items():
                if k.endswith("loss") and isinstance(x, float):
                    worst = max(worst, rel(x, rb[k]))
    return steps, worst
def tensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        s, e = t["data_offsets"]
        code = {"F32": "f", "I64": "q"}[t["dtype"]]
        out[name] = array(code, raw[8 + n + s:8 + n + e])
    return out
def tensors_match(off, on, tol):
    a, b = tensors(f"{tmp}/{off}.safetensors"), tensors(f"{tmp}/{on}.safetensors")
    check(sorted(a) == sorted(b), f"{on}: tensor names differ")
    for name in a:
        x, y = a[name], b[name]
        if tol == 0:
            check(x == y, f"{on}: {name} not bit-identical to {off}")
        else:
            scale = max(max(abs(v) for v in x), 1e-30)
            worst = max(abs(p - q) for p, q in zip(x, y)) / scale
            check(len(x) == len(y) and worst <= tol, f"{on}: {name} differs by {worst:.3g}")
files = {"afqmc": "afqmc_predict.json", "c3": "c311_predict.json", "chid": "chid11_predict.json",
         "cmrc2018": "cmrc2018_predict.json"}
for variant, tol in (("rf", 1e-4), ("van", 0.0)):
    pa, pb = pretrain_steps(f"pt_{variant}_off"), pretrain_steps(f"pt_{variant}_on")
    check(len(pa) == 3 and len(pb) == 3, f"pt_{variant}: {len(pa)}/{len(pb)} step records")
    for ra, rb in zip(pa, pb):
        numbers_match(ra, rb, tol, f"pt_{variant}_on step {ra['step']}")
    for task, sub in files.items():
        steps, worst = compare(f"ft_{task}_{variant}_off", f"ft_{task}_{variant}_on", tol, 4)
        da = open(f"{tmp}/ft_{task}_{variant}_off/dev_{sub}", "rb").read()
        db = open(f"{tmp}/ft_{task}_{variant}_on/dev_{sub}", "rb").read()
        check(da == db, f"ft_{task}_{variant}: dev predictions differ with recompute")
        print(f"finetune {task} {variant}: {steps} steps, worst step-loss rel diff {worst:.3g}")
    steps, worst = compare(f"mt_{variant}_off", f"mt_{variant}_on", tol, 4)
    print(f"multitask {variant}: {steps} steps, worst per-task loss rel diff {worst:.3g}")
    tensors_match(f"infer_{variant}_off", f"infer_{variant}_on", tol)
    tensors_match(f"embed_{variant}_off", f"embed_{variant}_on", tol)
steps, worst = compare("ft_c3_rf_off", "init_c3_on", 1e-4, 4)
print(f"finetune --init + --set model.attention_recompute=true c3 rf: worst rel diff {worst:.3g}")
for task in ("afqmc", "c3"):
    steps, worst = compare(f"fs_{task}_off", f"fs_{task}_on", 1e-4, 4)
    print(f"finetune --from-scratch {task} rf: {steps} steps, worst step-loss rel diff {worst:.3g}")
if fails:
    print("FAIL:\n  " + "\n  ".join(fails))
    sys.exit(1)
PY
# The vanilla pretraining runs computed bit-identical weights.
"$BIN" ckpt diff "$T/pt_van_off/checkpoints" "$T/pt_van_on/checkpoints" --tolerance 0 >/dev/null ||
  { echo "FAIL: vanilla recompute pretraining changed the weights"; exit 1; }
echo "recompute_finetune: OK"
