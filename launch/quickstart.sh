#!/usr/bin/env bash
# README command 1: on a fresh Debian machine, install the dependencies, build, assemble the default
# corpus, and pretrain a small RoFormer for a few minutes (the held-out MLM loss falls).
#   bash launch/quickstart.sh [extra `roformer pretrain` flags, e.g. --set train.steps=600]
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
R=./build/roformer
SHARED=../shared/data
mkdir -p runs

# 1. Corpus: Debian's fortunes-zh + manpages-zh, plus ../shared/data/corpus when present.
if [ -d "$SHARED/corpus" ]; then
  $R data default --out runs/default-corpus --shared "$SHARED"
else
  $R data default --out runs/default-corpus
fi
CORPUS=runs/default-corpus/default-corpus.txt

# 2. Vocab: the Chinese BERT vocab when present, else one built from the corpus.
if [ -f "$SHARED/vocab/bert-chinese-vocab.txt" ]; then
  VOCAB="$SHARED/vocab/bert-chinese-vocab.txt"
else
  VOCAB=runs/default-corpus/vocab.txt
  [ -f "$VOCAB" ] || $R vocab build --corpus "$CORPUS" --size 8000 --out "$VOCAB"
fi

# 3. Shards + corpus statistics.
if [ ! -f runs/default-corpus/shards/manifest.txt ]; then
  $R data prepare --corpus "$CORPUS" --vocab "$VOCAB" --out runs/default-corpus/shards --eval-fraction 0.01
fi

# 4. Pretrain (resumes if runs/demo already has checkpoints).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
$R pretrain --config configs/demo.textproto --run-dir runs/demo \
  --set data.corpus=runs/default-corpus/shards --set data.vocab="$VOCAB" "$@"
echo "held-out MLM loss (step, eval_mlm_loss, eval_mlm_acc):"
grep eval_mlm_loss runs/demo/metrics.jsonl | sed -E 's/.*"step":([0-9]+).*"eval_mlm_loss":([0-9.e+-]+),"eval_mlm_acc":([0-9.e+-]+).*/  \1 \2 \3/'
