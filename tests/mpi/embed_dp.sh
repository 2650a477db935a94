#!/usr/bin/env bash
# `roformer embed` and `roformer sts` under mpirun: 3 DP ranks (37 sentences: uneven slices) give
# the single-process embeddings (1e-5; batches differ, so GEMM blocking may too) and the same
# Spearman, and only rank 0 writes / prints.
set -euo pipefail
R=$1
SRC=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
"$R" convert --from-hf "$SRC/tests/reference/fixtures/hf_base" --out "$T/ck" > /dev/null
python3 - "$T" <<'PY'
import random, sys
t = sys.argv[1]
chars = [chr(0x4E00 + i) for i in range(75)]
open(t + "/v.txt", "w").write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars) + "\n")
r = random.Random(2)
s = lambda: "".join(r.choice(chars) for _ in range(r.randint(2, 25)))
open(t + "/s.txt", "w").write("\n".join(s() for _ in range(37)) + "\n")
open(t + "/p.tsv", "w").write("".join("%s\t%s\t%d\n" % (s(), s(), i % 6) for i in range(19)))
PY
MPI=(mpirun --oversubscribe --bind-to none -np 3)
C=(--ckpt "$T/ck" --vocab "$T/v.txt" --max-len 32 --batch 4)
"$R" embed "${C[@]}" --input "$T/s.txt" --pooling first-last-avg --out "$T/one.st" > /dev/null
"${MPI[@]}" "$R" embed "${C[@]}" --input "$T/s.txt" --pooling first-last-avg --out "$T/three.st" \
  > "$T/embed3.out"
"$R" sts "${C[@]}" --data "$T/p.tsv" --pooling cls --whiten none,8 > "$T/sts1.jsonl"
"${MPI[@]}" "$R" sts "${C[@]}" --data "$T/p.tsv" --pooling cls --whiten none,8 > "$T/sts3.jsonl"
python3 - "$T" <<'PY'
import json, struct, sys
t = sys.argv[1]
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    v = json.loads(b[8:8 + n])["embeddings"]
    s, e = v["data_offsets"]
    return v["shape"], struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e])
a, b = load(t + "/one.st"), load(t + "/three.st")
assert a[0] == b[0] == [37, 64], (a[0], b[0])
err = max(abs(x - y) for x, y in zip(a[1], b[1]))
assert err < 1e-5, err
assert len(open(t + "/embed3.out").read().strip().splitlines()) == 1  # rank 0 only
one = [json.loads(l) for l in open(t + "/sts1.jsonl")]
three = [json.loads(l) for l in open(t + "/sts3.jsonl")]
assert len(three) == 2, three
for x, y in zip(one, three):
    assert abs(x["spearman"] - y["spearman"]) < 1e-6, (x, y)
print("embed_dp ok, max diff", err)
PY
