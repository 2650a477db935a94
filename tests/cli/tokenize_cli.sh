#!/bin/bash
# label: unit
# `roformer tokenize`: JSON lines on stdout (one per '\n'-terminated input line), offsets in code
# points, and a missing vocab is an error naming the file. Uses the shared Chinese BERT vocab when
# present, else a tiny vocab written to a temp dir.
set -euo pipefail
BIN="$1"
SRC="$2"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

VOCAB="$SRC/../shared/data/vocab/bert-chinese-vocab.txt"
SHARED=1
if [ ! -f "$VOCAB" ]; then
  SHARED=0
  VOCAB="$TMP/vocab.txt"
  printf '%s\n' '[PAD]' '[UNK]' '[CLS]' '[SEP]' '[MASK]' 'hello' 'world' '!' ',' '你' '好' \
    'un' '##want' '##ed' > "$VOCAB"
fi

# Three lines; the second is empty, the third has no final newline; U+2028 inside a line is text.
printf 'Hello, world! 你好\n\nunwanted\xe2\x80\xa8你\t好' | "$BIN" tokenize --vocab "$VOCAB" > "$TMP/out.jsonl"
[ "$(wc -l < "$TMP/out.jsonl")" -eq 3 ] || fail "expected 3 JSON lines, got: $(cat "$TMP/out.jsonl")"

python3 - "$TMP/out.jsonl" "$SHARED" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8").read().split("\n") if l]
shared = sys.argv[2] == "1"
for r in rows:
    assert set(r) == {"tokens", "ids", "offsets"}, r
    assert len(r["tokens"]) == len(r["ids"]) == len(r["offsets"]), r
assert rows[1] == {"tokens": [], "ids": [], "offsets": []}, rows[1]
r0 = rows[0]
assert r0["tokens"] == ["hello", ",", "world", "!", "你", "好"], r0
assert r0["offsets"] == [[0, 5], [5, 6], [7, 12], [12, 13], [14, 15], [15, 16]], r0
if shared:
    assert r0["ids"] == [8701, 117, 8572, 106, 872, 1962], r0
r2 = rows[2]
assert r2["tokens"][-2:] == ["你", "好"], r2
# "unwanted" U+2028 "你" \t "好": U+2028 splits words (Python str.split) and counts as 1 code point.
assert r2["offsets"][-2:] == [[9, 10], [11, 12]], r2
assert r2["offsets"][0][0] == 0 and r2["offsets"][-3][1] == 8, r2
PY

# --no-lower-case keeps case (so "Hello" no longer matches the lower-case "hello" token).
printf 'Hello\n' | "$BIN" tokenize --vocab "$VOCAB" | grep -q '"tokens":\["hello"\]' \
  || fail "lower-cased 'Hello' should be 'hello'"
if printf 'Hello\n' | "$BIN" tokenize --vocab "$VOCAB" --no-lower-case | grep -q '"tokens":\["hello"\]'; then
  fail "--no-lower-case still lower-cases"
fi

# Control characters in tokens would be JSON-escaped; the output must always be valid JSON.
printf 'a\x01b "q" \\ \xff\n' | "$BIN" tokenize --vocab "$VOCAB" 2>"$TMP/err" | python3 -c \
  'import json,sys; [json.loads(l) for l in sys.stdin]' || fail "invalid JSON output"
grep -q "invalid UTF-8" "$TMP/err" || fail "invalid UTF-8 byte not reported"

# Missing vocab: non-zero exit and the path in the error.
MISSING="$TMP/no-such-dir/vocab-missing.txt"
set +e
echo hi | "$BIN" tokenize --vocab "$MISSING" > "$TMP/out2" 2> "$TMP/err2"
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "missing vocab should exit non-zero"
grep -q "vocab-missing.txt" "$TMP/err2" || fail "error does not name the vocab: $(cat "$TMP/err2")"

# Missing --vocab flag is an error too.
if echo hi | "$BIN" tokenize > /dev/null 2>&1; then fail "missing --vocab should fail"; fi

echo "tokenize_cli: OK"
