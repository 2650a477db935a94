#!/bin/bash
# Post-LN vs Pre-LN vs Post-LN + RealFormer (residual attention scores, running sum) at small
# scale, with a learning-rate sweep (seeds.md §1.2-1.3: RealFormer >= Post-LN >= Pre-LN, and
# RealFormer is robust to the learning rate). Every run has the same seed (so the same data order,
# masking and initialisation of the shared parameters), steps, batch and sequence length, so the
# same FLOPs up to the LayerNorms. Writes ln-variants.md and ln-variants-*.png into --report.
#
#   bash launch/experiments/ln_variants.sh [--scale smoke|small|full] [--bin PATH]
#        [--corpus SHARDS --vocab VOCAB] [--runs DIR] [--report DIR] [--threads N] [--jobs N]
#
# Scales (all: seq 64 unless noted, dropout 0.1, AdamW, linear decay, warmup 10%, seed 1234):
#   smoke  H32 L2 A2 FFN64, batch 4, 10 steps, lr 1e-3 only (tests/cli/experiments_smoke.sh)
#   small  H128 L4 A4 FFN512, batch 32, 300 steps, lr 3e-4 / 1e-3 / 3e-3, eval every 50 steps on
#          256 held-out sequences (the committed report: 26 min measured on the shared 2-vCPU VM)
#   full   H512 L4 A8 FFN2048 (RealFormer "Small"), seq 128, batch 256, 20k steps, lr 1e-4 / 3e-4 /
#          1e-3, eval every 1000 steps on 2048 sequences (real hardware; not run here)
# A determinism check runs one short configuration twice and compares metrics.jsonl (all fields
# but timings) exactly. Other flags: see launch/experiments/common.sh.
set -euo pipefail
EXP_NAME=ln-variants
EXP_ARGS="$*"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
exp_parse_args "$@"

SEQ=64
case "$SCALE" in
  smoke) H=32; L=2; A=2; F=64; B=4; STEPS=10; EVAL_EVERY=5; EVAL_N=8; LRS="1e-3"; DET_STEPS=4 ;;
  small) H=128; L=4; A=4; F=512; B=32; STEPS=300; EVAL_EVERY=50; EVAL_N=256
         LRS="3e-4 1e-3 3e-3"; DET_STEPS=20 ;;
  full) H=512; L=4; A=8; F=2048; B=256; SEQ=128; STEPS=20000; EVAL_EVERY=1000; EVAL_N=2048
        LRS="1e-4 3e-4 1e-3"; DET_STEPS=50 ;;
esac
WARMUP=$(( STEPS / 10 > 0 ? STEPS / 10 : 1 ))
MICRO=$(( B < 32 ? B : 32 ))
MODEL="  hidden_size: $H
  num_hidden_layers: $L
  num_attention_heads: $A
  intermediate_size: $F
  max_position_embeddings: 512"
train_block() {  # $1 = lr, $2 = steps
  echo "  steps: $2
  micro_batch: $MICRO
  global_batch: $B
  seq_len: $SEQ
  lr: $1
  warmup_steps: $WARMUP
  lr_decay: \"linear\"
  log_every: $(( EVAL_EVERY / 5 > 0 ? EVAL_EVERY / 5 : 1 ))
  eval_every: $EVAL_EVERY
  eval_samples: $EVAL_N
  seed: 1234"
}
VARIANTS="post-ln pre-ln realformer"
variant_sets() {
  case "$1" in
    post-ln) echo "" ;;
    pre-ln) echo "--set model.pre_ln=true" ;;
    realformer) echo "--set model.realformer=true" ;;
  esac
}

for lr in $LRS; do exp_write_config "$RUNS/lr$lr.textproto" "$MODEL" "$(train_block "$lr" "$STEPS")"; done
echo "training: variants {$VARIANTS} x lr {$LRS}, $STEPS steps each"
for lr in $LRS; do
  for v in $VARIANTS; do
    echo "exp_train ${v}_lr$lr $RUNS/lr$lr.textproto $(variant_sets "$v")"
  done
done | exp_parallel
TRAIN_S=$(exp_elapsed)

# Determinism: the same short configuration twice must give identical metrics.
first_lr=$(echo "$LRS" | tr ' ' '\n' | sed -n '2p'); [ -n "$first_lr" ] || first_lr=$(echo "$LRS" | awk '{print $1}')
exp_write_config "$RUNS/determinism.textproto" "$MODEL" "$(train_block "$first_lr" "$DET_STEPS")"
sed -i "s/eval_every: .*/eval_every: $(( DET_STEPS / 2 ))/" "$RUNS/determinism.textproto"
exp_train determinism_a "$RUNS/determinism.textproto" --set model.realformer=true
exp_train determinism_b "$RUNS/determinism.textproto" --set model.realformer=true
if cmp -s <(exp_metrics_no_timing "$RUNS/determinism_a/metrics.jsonl") \
          <(exp_metrics_no_timing "$RUNS/determinism_b/metrics.jsonl"); then
  DET="identical"
else
  DET="DIFFERENT"
fi
echo "determinism check: $DET"

# Plots: held-out curves per learning rate, and final held-out accuracy/loss against the lr.
for lr in $LRS; do
  runs=()
  for v in $VARIANTS; do runs+=("$RUNS/${v}_lr$lr"); done
  "$BIN" plot "${runs[@]}" --out "$REPORT/ln-variants-lr$lr.png" \
    --metrics eval_mlm_loss,eval_mlm_acc,loss,grad_norm --title "ln-variants ($SCALE), lr $lr" \
    > "$RUNS/plot-lr$lr.log" 2>&1 || { cat "$RUNS/plot-lr$lr.log" >&2; exit 1; }
done

python3 "$EXP_SRC/launch/experiments/report.py" ln-variants --runs "$RUNS" --report "$REPORT" \
  --scale "$SCALE" --lrs "$LRS" --variants "$VARIANTS" --train-seconds "$TRAIN_S" \
  --total-seconds "$(exp_elapsed)" --determinism "$DET" --determinism-steps "$DET_STEPS" \
  --determinism-lr "$first_lr" --corpus "$CORPUS" --vocab "$VOCAB" \
  --model "H=$H L=$L A=$A FFN=$F" --train "seq $SEQ, batch $B, $STEPS steps, warmup $WARMUP, linear decay, eval every $EVAL_EVERY steps on $EVAL_N held-out sequences"
echo "report: $REPORT/ln-variants.md ($(exp_elapsed) s in all)"
[ "$DET" = identical ]
