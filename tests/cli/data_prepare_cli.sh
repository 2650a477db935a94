#!/usr/bin/env bash
# label: unit
# `roformer data prepare` on a small temp corpus: statistics output, determinism, error paths.
set -euo pipefail
BIN="$1"
SRC="$2"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# A tiny vocab (the shared one is not required).
{
  printf '[PAD]\n[unused1]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n。\n！\n？\n，\n'
  for c in 你 好 世 界 我 们 是 学 生 今 天 气 很 的 中 国 人 大 家; do printf '%s\n' "$c"; done
} > "$T/vocab.txt"
mkdir "$T/in"
printf '你好世界。我们是学生！\n\n今天天气很好？中国人。\n大家好\xff。\n' > "$T/in/a.txt"
printf '我是中国的学生龘。\n' > "$T/in/b.txt"

out=$("$BIN" data prepare --corpus "$T/in" --vocab "$T/vocab.txt" --out "$T/shards" --eval-fraction 0)
echo "$out"
grep -q '^documents: *4 ' <<<"$out"
grep -q '^sentences: *6$' <<<"$out"
grep -q '^invalid UTF-8 bytes: 1$' <<<"$out"
grep -q '^\[UNK\] rate: *2.8571% (1 tokens)' <<<"$out"
grep -q 'MB/s' <<<"$out"
test -f "$T/shards/manifest.txt" -a -f "$T/shards/index.bin" -a -f "$T/shards/shard-00000.bin"
test ! -e "$T/shards.tmp"
grep -q '^vocab_size 29$' "$T/shards/manifest.txt"

# Deterministic: a second run gives byte-identical files.
"$BIN" data prepare --corpus "$T/in" --vocab "$T/vocab.txt" --out "$T/shards2" --eval-fraction 0 >/dev/null
for f in manifest.txt index.bin shard-00000.bin; do cmp "$T/shards/$f" "$T/shards2/$f"; done

expect_error() {  # expect_error PATTERN cmd...
  local pat="$1"
  shift
  set +e
  err=$("$@" 2>&1 >/dev/null)
  rc=$?
  set -e
  if [[ $rc -ne 2 ]] || ! grep -q -- "$pat" <<<"$err"; then
    echo "FAIL: expected exit 2 and '$pat' from: $*; got rc=$rc: $err"
    exit 1
  fi
}
# Existing output, missing vocab, missing corpus, empty corpus.
expect_error 'already exists' "$BIN" data prepare --corpus "$T/in" --vocab "$T/vocab.txt" --out "$T/shards"
"$BIN" data prepare --corpus "$T/in" --vocab "$T/vocab.txt" --out "$T/shards" --force >/dev/null
expect_error 'no-vocab.txt' "$BIN" data prepare --corpus "$T/in" --vocab "$T/no-vocab.txt" --out "$T/x"
expect_error 'nowhere' "$BIN" data prepare --corpus "$T/nowhere" --vocab "$T/vocab.txt" --out "$T/x"
printf '\n  \n' > "$T/empty.txt"
expect_error 'empty.txt' "$BIN" data prepare --corpus "$T/empty.txt" --vocab "$T/vocab.txt" --out "$T/x"
test ! -e "$T/x"
expect_error 'missing required flag --out' "$BIN" data prepare --corpus "$T/in" --vocab "$T/vocab.txt"

# bench data prints a JSON line last.
last=$("$BIN" bench data --corpus "$T/in" --vocab "$T/vocab.txt" --reps 2 | tail -1)
grep -q '^{"bench":"data".*"best_mb_s":' <<<"$last"
echo "data_prepare_cli: OK"
