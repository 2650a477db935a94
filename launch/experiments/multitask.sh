#!/usr/bin/env bash
# Multi-task loss weighting experiment (docs/experiments/multitask.md, issue #7).
#   bash launch/experiments/multitask.sh pretrain   # (a) MLM+SOP: fixed vs realtime vs gradnorm
#   bash launch/experiments/multitask.sh finetune   # (b) TNEWS+IFLYTEK+OCNLI(train.3k) on one encoder
#   bash launch/experiments/multitask.sh plot       # PNGs + tables from runs/multitask
# Env: BIN (default build/roformer), RUNS (default runs/multitask), STEPS (pretraining steps,
# default 600), EPOCHS (fine-tuning epochs, default 3), INIT (default runs/grown/checkpoints),
# MAX_TRAIN / MAX_EVAL (first N train / dev examples per task; default 0 = all).
# Runs one job at a time with one BLAS thread under nice (the dev VM is shared).
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$SRC"
BIN=${BIN:-build/roformer}
RUNS=${RUNS:-runs/multitask}
STEPS=${STEPS:-600}
EPOCHS=${EPOCHS:-3}
INIT=${INIT:-runs/grown/checkpoints}
MAX_TRAIN=${MAX_TRAIN:-0}  # first N training examples per task (0 = all)
MAX_EVAL=${MAX_EVAL:-0}    # first N dev examples per task (0 = all)
CLUE=${CLUE:-../shared/data/clue}
VOCAB=${VOCAB:-../shared/data/vocab/bert-chinese-vocab.txt}
CORPUS=${CORPUS:-runs/default-corpus/shards}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$RUNS"
timed() {  # log-file command... : records the command, start/end time and CPU seconds
  local log=$1; shift
  { echo "# $(date -u +%FT%TZ) $(uname -n): $*"; } >"$log"
  /usr/bin/time -f "# cpu_seconds %U user %S sys, wall %e s" nice "$@" >>"$log" 2>&1
  echo "# end $(date -u +%FT%TZ)" >>"$log"
  tail -n 3 "$log"
}
case "${1:-}" in
  pretrain)
    for scheme in fixed realtime gradnorm; do
      rm -rf "$RUNS/pt-$scheme"
      timed "$RUNS/pt-$scheme.log" "$BIN" pretrain --run-dir "$RUNS/pt-$scheme" \
        --set data.corpus="$CORPUS" --set data.vocab="$VOCAB" \
        --set model.hidden_size=128 --set model.num_hidden_layers=2 --set model.num_attention_heads=2 \
        --set model.intermediate_size=512 --set model.max_position_embeddings=64 \
        --set train.seq_len=64 --set train.micro_batch=16 --set train.global_batch=16 \
        --set train.steps="$STEPS" --set train.lr=1e-3 --set train.warmup_steps=30 \
        --set train.log_every=10 --set train.eval_every=100 --set train.eval_samples=512 \
        --set checkpoint.every=0 --set multitask.weighting=$scheme
    done
    ;;
  finetune)
    for scheme in fixed realtime gradnorm; do
      rm -rf "$RUNS/ft-$scheme"
      timed "$RUNS/ft-$scheme.log" "$BIN" multitask --tasks tnews,iflytek,ocnli \
        --data "$CLUE/tnews,$CLUE/iflytek,$CLUE/ocnli" --train-splits train,train,train.3k \
        --init "$INIT" --out "$RUNS/ft-$scheme" --epochs "$EPOCHS" --lr 1e-4 --batch 32 \
        --max-len 64 --set multitask.weighting=$scheme --set save_best=false \
        --set max_train_examples="$MAX_TRAIN" --set max_eval_examples="$MAX_EVAL" --set log_every=10
    done
    ;;
  plot)
    OUT=${OUT:-$RUNS}
    "$BIN" plot "$RUNS"/pt-fixed "$RUNS"/pt-realtime "$RUNS"/pt-gradnorm --out "$OUT/multitask-pretrain.png" \
      --metrics eval_mlm_loss,eval_sop_loss,eval_sop_acc,w_mlm,w_sop --title "MLM+SOP weighting"
    # Only the step/epoch records (runs before the config record carried "step" lack it there).
    for s in fixed realtime gradnorm; do
      mkdir -p "$RUNS/plot/ft-$s"
      grep -E '"event":"(step|epoch)"' "$RUNS/ft-$s/metrics.jsonl" >"$RUNS/plot/ft-$s/metrics.jsonl"
    done
    "$BIN" plot "$RUNS"/plot/ft-fixed "$RUNS"/plot/ft-realtime "$RUNS"/plot/ft-gradnorm --out "$OUT/multitask-finetune.png" \
      --metrics tnews_dev_accuracy,iflytek_dev_accuracy,ocnli_dev_accuracy,mean_dev_accuracy,w_tnews,w_iflytek,w_ocnli \
      --title "TNEWS+IFLYTEK+OCNLI on one encoder"
    python3 "$SRC/launch/experiments/multitask_report.py" "$RUNS"
    ;;
  *)
    sed -n '2,10p' "$0"; exit 2 ;;
esac
