#!/bin/bash
# label: unit
# launch/experiments/{ln_variants,length_extrapolation}.sh at --scale smoke on a tiny synthetic
# corpus (no shared data needed): each must finish, pass its determinism check and write its
# Markdown report and PNG plots. Also checks `roformer eval-mlm` output and its errors. Prints
# SKIPPED and exits 0 only when gnuplot or python3 is missing.
set -euo pipefail
BIN="$1"
SRC="$2"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in gnuplot python3; do
  command -v "$tool" > /dev/null || { echo "SKIPPED: $tool not installed"; exit 0; }
done

# A tiny vocab and 600 one-line documents of random "sentences" over it (10% held out).
python3 - "$T" <<'PY'
import random, sys
root = sys.argv[1]
chars = list("你好世界我们是学生今天气很的中国人大家有一个在不了这上来到时说要就出会可也对能而子那得")
random.seed(7)
with open(f"{root}/vocab.txt", "w") as f:
    f.write("[PAD]\n[unused1]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n。\n，\n")
    for c in chars:
        f.write(c + "\n")
with open(f"{root}/corpus.txt", "w") as f:
    for _ in range(600):
        sents = []
        for _ in range(random.randint(2, 5)):
            sents.append("".join(random.choice(chars) for _ in range(random.randint(5, 15))) + "。")
        f.write("".join(sents) + "\n")
PY
"$BIN" data prepare --corpus "$T/corpus.txt" --vocab "$T/vocab.txt" --out "$T/shards" \
  --eval-fraction 0.1 > /dev/null

common=(--scale smoke --bin "$BIN" --corpus "$T/shards" --vocab "$T/vocab.txt")
bash "$SRC/launch/experiments/ln_variants.sh" "${common[@]}" --runs "$T/ln" --report "$T/ln-report" \
  > "$T/ln.out" 2>&1 || { cat "$T/ln.out" >&2; fail "ln_variants.sh failed"; }
bash "$SRC/launch/experiments/length_extrapolation.sh" "${common[@]}" --runs "$T/len" \
  --report "$T/len-report" > "$T/len.out" 2>&1 || { cat "$T/len.out" >&2; fail "length_extrapolation.sh failed"; }

is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] && [ "$(stat -c %s "$1")" -gt 2000 ]; }
for f in ln-report/ln-variants-lr1e-3.png ln-report/ln-variants-lr-sweep.png \
         len-report/length-extrapolation.png len-report/length-extrapolation-train.png; do
  is_png "$T/$f" || fail "$f is not a PNG plot"
done
grep -q '^| post-ln | ' "$T/ln-report/ln-variants.md" || fail "ln-variants.md lacks the results table"
grep -q '^| realformer | ' "$T/ln-report/ln-variants.md" || fail "ln-variants.md lacks realformer"
grep -q '\*\*identical\*\*' "$T/ln-report/ln-variants.md" \
  || fail "ln-variants determinism check not identical"
grep -q '^| log_n | ' "$T/len-report/length-extrapolation.md" || fail "length-extrapolation.md lacks log_n"
grep -q '^| sqrt_d+log_n@eval | ' "$T/len-report/length-extrapolation.md" || fail "no inference-only row"
grep -q 'printed \*\*identical\*\*' "$T/len-report/length-extrapolation.md" || fail "eval not deterministic"

# eval-mlm: one JSON line with the fields the reports use; clear errors for bad input.
line=$("$BIN" eval-mlm --ckpt "$T/len/log_n/checkpoints" --corpus "$T/shards" --vocab "$T/vocab.txt" \
       --seq-len 200 --samples 3 2>/dev/null)
python3 - "$line" <<'PY' || fail "eval-mlm output: $line"
import json, sys
r = json.loads(sys.argv[1])
assert r["seq_len"] == 200 and r["sequences"] == 3 and r["attention_scale"] == "log_n", r
assert r["trained_max_position_embeddings"] == 64, r
assert 0 <= r["mlm_acc"] <= 1 and r["mlm_loss"] > 0 and r["masked_tokens"] > 0, r
assert 0 < r["fill"] <= 1 and r["mean_real_tokens"] > 100, r
PY
expect_error() {
  local want="$1"; shift
  set +e; "$@" > "$T/o" 2> "$T/e"; local rc=$?; set -e
  [ "$rc" -eq 2 ] || fail "expected exit 2, got $rc: $*"
  grep -qF -- "$want" "$T/e" || fail "stderr lacks '$want': $(cat "$T/e")"
}
expect_error "--seq-len is required" "$BIN" eval-mlm --ckpt "$T/len/log_n/checkpoints" \
  --corpus "$T/shards" --vocab "$T/vocab.txt"
expect_error "not a prepared corpus" "$BIN" eval-mlm --ckpt "$T/len/log_n/checkpoints" \
  --corpus "$T" --vocab "$T/vocab.txt" --seq-len 64
head -n 10 "$T/vocab.txt" > "$T/small-vocab.txt"
expect_error "entries but the checkpoint model has" "$BIN" eval-mlm \
  --ckpt "$T/len/log_n/checkpoints" --corpus "$T/shards" --vocab "$T/small-vocab.txt" --seq-len 64
echo "OK"
