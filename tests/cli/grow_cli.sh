#!/usr/bin/env bash
# label: unit
# `roformer grow`: pretrain a tiny RealFormer (Post-LN, RoPE) 3 steps, grow it (hidden x2, heads x2,
# FFN to a non-multiple, +1 layer in the middle) with symmetric splits: the printed MLM losses
# before/after must agree to fp32 rounding; with random splits they stay close. The grown
# checkpoint verifies, infers, and `roformer pretrain` continues from it.
set -euo pipefail
R=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
bash "$2/tests/make_tiny_corpus.sh" "$R" "$T" 7 300
COMMON=(--set model.realformer=true --set model.max_position_embeddings=64
        --set model.hidden_dropout_prob=0.1 --set model.attention_probs_dropout_prob=0.1
        --set train.micro_batch=4 --set train.global_batch=8 --set train.seq_len=32 --set train.lr=1e-3
        --set train.warmup_steps=2 --set train.log_every=1 --set train.eval_every=100 --set train.eval_samples=8
        --set data.corpus="$T/shards" --set data.vocab="$T/vocab.txt")
SMALL=(--set model.hidden_size=32 --set model.num_hidden_layers=2 --set model.num_attention_heads=2
       --set model.intermediate_size=64)
"$R" pretrain "${COMMON[@]}" "${SMALL[@]}" --set train.steps=3 --run-dir "$T/small" 2>"$T/small.log" \
  || { cat "$T/small.log"; echo "FAIL: small pretraining"; exit 1; }
cat > "$T/big.textproto" <<'TXT'
model { hidden_size: 64 num_attention_heads: 4 intermediate_size: 144 num_hidden_layers: 3 }
TXT
"$R" grow --from "$T/small/checkpoints" --to "$T/big.textproto" --out "$T/big/checkpoints" \
  --insert-layers 1 --noise-scale 0 --corpus "$T/shards" --vocab "$T/vocab.txt" >"$T/grow.out" 2>"$T/grow.err" \
  || { cat "$T/grow.out" "$T/grow.err"; echo "FAIL: grow"; exit 1; }
cat "$T/grow.out"
python3 - "$T/grow.out" 1e-5 <<'PY'
import re, sys
text = open(sys.argv[1]).read()
b = float(re.search(r"mlm loss before (\S+)", text).group(1))
a = float(re.search(r"mlm loss after\s+(\S+)", text).group(1))
assert abs(a - b) <= float(sys.argv[2]) * abs(b), (b, a)
assert "step 3" in text and "growth stage 1" in text, text
PY
"$R" ckpt verify "$T/big/checkpoints" >/dev/null
"$R" ckpt inspect "$T/big/checkpoints" >"$T/inspect.txt"
grep -q "64" "$T/inspect.txt" || { cat "$T/inspect.txt"; echo "FAIL: inspect"; exit 1; }
# Random zero-sum splits: close, not equal to the bit.
"$R" grow --from "$T/small/checkpoints" --to "$T/big.textproto" --out "$T/big_noise" \
  --insert-layers 1 --seed 5 >"$T/grow_noise.out" 2>"$T/grow_noise.err" \
  || { cat "$T/grow_noise.out" "$T/grow_noise.err"; echo "FAIL: grow with noise"; exit 1; }
python3 - "$T/grow_noise.out" 1e-4 <<'PY'
import re, sys
text = open(sys.argv[1]).read()
b = float(re.search(r"mlm loss before (\S+)", text).group(1))
a = float(re.search(r"mlm loss after\s+(\S+)", text).group(1))
assert abs(a - b) <= float(sys.argv[2]) * abs(b), (b, a)
PY
# Bad targets are refused with a clear error (exit 2).
echo 'model { hidden_size: 48 num_attention_heads: 3 }' > "$T/bad.textproto"
if "$R" grow --from "$T/small/checkpoints" --to "$T/bad.textproto" --out "$T/bad" 2>"$T/bad.err"; then
  echo "FAIL: x1.5 width accepted"; exit 1
fi
grep -q "integer multiple" "$T/bad.err" || { cat "$T/bad.err"; exit 1; }
# Inference on the grown checkpoint.
echo '{"input_ids": [2, 50, 60, 70, 3]}' > "$T/ids.jsonl"
"$R" infer --ckpt "$T/big/checkpoints" --input "$T/ids.jsonl" --out "$T/out.safetensors" >/dev/null
# Continue pretraining the grown model from the grown checkpoint (resume in its run dir).
BIG=(--set model.hidden_size=64 --set model.num_hidden_layers=3 --set model.num_attention_heads=4
     --set model.intermediate_size=144)
"$R" pretrain "${COMMON[@]}" "${BIG[@]}" --set train.steps=5 --run-dir "$T/big" 2>"$T/big.log" \
  || { cat "$T/big.log"; echo "FAIL: continue pretraining"; exit 1; }
grep -q "resumed from .*step_00000003" "$T/big.log" || { cat "$T/big.log"; echo "FAIL: no resume"; exit 1; }
python3 - "$T/big/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert [r["step"] for r in rows] == [4, 5], rows
assert all(math.isfinite(r["loss"]) for r in rows), rows
PY
"$R" ckpt verify "$T/big/checkpoints" >/dev/null
echo "grow: losses equal at noise 0, close with noise; grown checkpoint verifies, infers and trains on"
