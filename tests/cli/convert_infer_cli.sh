#!/usr/bin/env bash
# label: unit
# `roformer convert --from-hf` of HF fixtures, then `roformer infer`; the logits must match the
# fixture's expected HF logits (non-padded positions, 1e-5 relative). Also: `convert --to-hf`
# round trip, and user errors (bad jsonl line, id >= vocab) exit 2 naming file:line.
# Usage: bash convert_infer_cli.sh <roformer-binary> <source-dir>   (needs python3, no numpy)
set -euo pipefail
BIN=$1
SRC=$2
FIX=$SRC/tests/reference/fixtures
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Pure-python safetensors helpers (no numpy/torch).
cat > "$TMP/st.py" <<'PY'
import json, struct, sys

def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    out = {}
    for k, v in h.items():
        s, e = v["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        fmt = {"F32": "f", "I64": "q", "I32": "i"}[v["dtype"]]
        out[k] = (v["shape"], struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw))
    return out

def to_jsonl(expected, out):
    t = load(expected)
    (B, L), ids = t["input_ids"]
    _, tt = t["token_type_ids"]
    _, am = t["attention_mask"]
    with open(out, "w") as f:
        for b in range(B):
            n = sum(am[b * L:(b + 1) * L])
            f.write(json.dumps({"input_ids": list(ids[b * L:b * L + n]),
                                "token_type_ids": list(tt[b * L:b * L + n])}) + "\n")

def compare(expected, got):
    e, g = load(expected), load(got)
    (B, L, V), ref = e["logits"]
    _, am = e["attention_mask"]
    gs, ours = g["mlm_logits"]
    assert gs == [B, L, V], (gs, [B, L, V])
    md = mr = 0.0
    for r in range(B * L):
        if not am[r]:
            continue
        for v in range(V):
            i = r * V + v
            md = max(md, abs(ours[i] - ref[i]))
            mr = max(mr, abs(ref[i]))
    rel = md / max(mr, 1e-6)
    print("logits max diff %.3g rel %.3g" % (md, rel))
    sys.exit(0 if rel <= 1e-5 else 1)

if __name__ == "__main__":
    {"jsonl": to_jsonl, "compare": compare}[sys.argv[1]](*sys.argv[2:])
PY

for name in hf_base hf_embproj pre_ln realformer_log_n; do
  [ -d "$FIX/$name" ] || { echo "missing fixture $name"; exit 1; }
  echo "== $name"
  if ! "$BIN" convert --from-hf "$FIX/$name" --out "$TMP/ck_$name" > "$TMP/convert.log" 2>&1; then
    cat "$TMP/convert.log"
    echo "FAIL: convert --from-hf $name"
    exit 1
  fi
  grep -q "not in HF checkpoint, initialised" "$TMP/convert.log"
  python3 "$TMP/st.py" jsonl "$FIX/$name/expected.safetensors" "$TMP/$name.jsonl"
  "$BIN" infer --ckpt "$TMP/ck_$name" --input "$TMP/$name.jsonl" --out "$TMP/$name.out.safetensors" --micro-batch 2
  python3 "$TMP/st.py" compare "$FIX/$name/expected.safetensors" "$TMP/$name.out.safetensors"
  # --to-hf then --from-hf again: same logits.
  "$BIN" convert --to-hf "$TMP/ck_$name" --out "$TMP/hf_$name" > /dev/null
  "$BIN" convert --from-hf "$TMP/hf_$name" --out "$TMP/ck2_$name" > /dev/null
  "$BIN" infer --ckpt "$TMP/ck2_$name" --input "$TMP/$name.jsonl" --out "$TMP/$name.out2.safetensors" > /dev/null
  python3 "$TMP/st.py" compare "$FIX/$name/expected.safetensors" "$TMP/$name.out2.safetensors"
done

expect_error() {  # expect_error <needle> <cmd...>
  local needle=$1
  shift
  set +e
  "$@" > "$TMP/err.log" 2>&1
  local rc=$?
  set -e
  if [ $rc -ne 2 ] || ! grep -qF -- "$needle" "$TMP/err.log"; then
    cat "$TMP/err.log"
    echo "FAIL: expected exit 2 mentioning '$needle', got rc=$rc"
    exit 1
  fi
}
CK=$TMP/ck_hf_base
printf '{"input_ids":[2,3]}\n{"input_ids":[2,3\n' > "$TMP/bad.jsonl"
expect_error "bad.jsonl:2" "$BIN" infer --ckpt "$CK" --input "$TMP/bad.jsonl" --out "$TMP/x.safetensors"
printf '{"input_ids":[2,3]}\n\n{"input_ids":[2,100000]}\n' > "$TMP/big.jsonl"
expect_error "big.jsonl:3" "$BIN" infer --ckpt "$CK" --input "$TMP/big.jsonl" --out "$TMP/x.safetensors"
printf '{"input_ids":[2,3],"token_type_ids":[0]}\n' > "$TMP/len.jsonl"
expect_error "len.jsonl:1" "$BIN" infer --ckpt "$CK" --input "$TMP/len.jsonl" --out "$TMP/x.safetensors"
mkdir -p "$TMP/badhf"
cp "$FIX/hf_base/config.json" "$TMP/badhf/"
head -c 1000 "$FIX/hf_base/model.safetensors" > "$TMP/badhf/model.safetensors"
expect_error "model.safetensors" "$BIN" convert --from-hf "$TMP/badhf" --out "$TMP/ckbad"
echo "OK"
