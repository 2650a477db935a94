#!/usr/bin/env bash
# label: unit
# `roformer sts`, `embed` and `whiten fit` end to end on a tiny model (the hf_base fixture converted
# to a checkpoint, hidden 64, vocab 80, with an 80-token vocab made here): every pooling x whitening
# mode prints one well-formed JSON object; --fit on other sentences; embeddings and whitened
# (L2-normalised) embeddings have the right shapes; a bad TSV line exits 2 naming file:line.
# Usage: bash sts_cli.sh <roformer-binary> <source-dir>   (needs python3, no numpy)
set -euo pipefail
BIN=$1
SRC=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

"$BIN" convert --from-hf "$SRC/tests/reference/fixtures/hf_base" --out "$TMP/ckpt" > /dev/null

python3 - "$TMP" <<'PY'
import random, sys
tmp = sys.argv[1]
chars = [chr(0x4E00 + i) for i in range(75)]
with open(tmp + "/vocab.txt", "w", encoding="utf-8") as f:
    f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars) + "\n")
rng = random.Random(1)
def sent():
    return "".join(rng.choice(chars) for _ in range(rng.randint(3, 20)))
with open(tmp + "/pairs.tsv", "w", encoding="utf-8") as f:
    for i in range(16):
        a = sent()
        b = a[: len(a) // 2] + sent() if i % 2 else sent()
        f.write("%s\t%s\t%d\n" % (a, b, i % 6))
with open(tmp + "/fit.txt", "w", encoding="utf-8") as f:
    for i in range(150):
        f.write(sent() + "\n")
with open(tmp + "/bad.tsv", "w", encoding="utf-8") as f:
    f.write("%s\t%s\t1\n%s\t%s\t0\n%s\t2\n" % (sent(), sent(), sent(), sent(), sent()))
PY

COMMON=(--ckpt "$TMP/ckpt" --vocab "$TMP/vocab.txt" --max-len 32 --batch 4)
for p in cls pooler last-avg first-last-avg; do
  "$BIN" sts "${COMMON[@]}" --data "$TMP/pairs.tsv" --pooling $p --whiten none,full,8 \
    > "$TMP/sts_$p.jsonl"
  "$BIN" sts "${COMMON[@]}" --data "$TMP/pairs.tsv" --pooling $p --whiten 8 --fit "$TMP/fit.txt" \
    > "$TMP/stsfit_$p.jsonl"
done

python3 - "$TMP" <<'PY'
import json, math, sys
tmp = sys.argv[1]
for p in ["cls", "pooler", "last-avg", "first-last-avg"]:
    rows = [json.loads(l) for l in open("%s/sts_%s.jsonl" % (tmp, p))]
    assert [r["whiten"] for r in rows] == ["none", "full", "8"], rows
    for r in rows:
        for key in ["spearman", "pairs", "pooling", "whiten", "fit_on"]:
            assert key in r, (key, r)
        assert r["pairs"] == 16 and r["pooling"] == p, r
        assert isinstance(r["spearman"], float) and -1 <= r["spearman"] <= 1, r
    assert rows[0]["fit_on"] == "none" and rows[1]["fit_on"] == "data", rows
    assert rows[1]["k"] == 64 and rows[2]["k"] == 8 and rows[1]["fit_sentences"] == 32, rows
    fit = [json.loads(l) for l in open("%s/stsfit_%s.jsonl" % (tmp, p))]
    assert len(fit) == 1 and fit[0]["fit_on"].endswith("fit.txt"), fit
    assert fit[0]["fit_sentences"] == 150 and -1 <= fit[0]["spearman"] <= 1, fit
print("sts JSON ok")
PY

# embed, whiten fit, embed --whiten: shapes and unit-norm rows.
cut -f1 "$TMP/pairs.tsv" > "$TMP/sent.txt"
"$BIN" embed "${COMMON[@]}" --input "$TMP/sent.txt" --pooling first-last-avg --out "$TMP/e.st" \
  > /dev/null
"$BIN" whiten fit "${COMMON[@]}" --input "$TMP/fit.txt" "$TMP/pairs.tsv" --pooling first-last-avg \
  --out "$TMP/kern.st" > "$TMP/fit.json"
"$BIN" embed "${COMMON[@]}" --input "$TMP/sent.txt" --pooling first-last-avg --out "$TMP/w.st" \
  --whiten "$TMP/kern.st" --k 8 > /dev/null
python3 - "$TMP" <<'PY'
import json, math, struct, sys
tmp = sys.argv[1]
def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    v = h["embeddings"]
    s, e = v["data_offsets"]
    assert v["dtype"] == "F32", v
    return v["shape"], struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e])
shape, x = load(tmp + "/e.st")
assert shape == [16, 64], shape
shape, y = load(tmp + "/w.st")
assert shape == [16, 8], shape
for r in range(16):
    norm = math.sqrt(sum(v * v for v in y[r * 8:(r + 1) * 8]))
    assert abs(norm - 1) < 1e-5, norm
fit = json.load(open(tmp + "/fit.json"))
assert fit["sentences"] == 150 + 32 and fit["dim"] == 64, fit
print("embed / whiten fit ok")
PY

# User errors: exit 2 with the location.
set +e
"$BIN" sts "${COMMON[@]}" --data "$TMP/bad.tsv" --pooling cls > /dev/null 2> "$TMP/err"
rc=$?
set -e
[ $rc -eq 2 ] || { echo "bad TSV: expected exit 2, got $rc"; exit 1; }
grep -q "bad.tsv:3" "$TMP/err" || { echo "bad TSV: error does not name bad.tsv:3:"; cat "$TMP/err"; exit 1; }
for args in "--pooling mean" "--pooling cls --whiten 65" "--pooling cls --whiten nope"; do
  set +e
  # shellcheck disable=SC2086
  "$BIN" sts "${COMMON[@]}" --data "$TMP/pairs.tsv" $args > /dev/null 2> "$TMP/err"
  rc=$?
  set -e
  [ $rc -eq 2 ] || { echo "'$args': expected exit 2, got $rc"; cat "$TMP/err"; exit 1; }
done
echo "sts_cli: all ok"
