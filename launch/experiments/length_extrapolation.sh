#!/bin/bash
# Length extrapolation of RoPE with the entropy-invariant scale (seeds.md §7.4): train at max length
# 64 with model.attention_scale "sqrt_d" (Attention-O) and "log_n" (Attention-E,
# log512(max(n,16))/sqrt(d)), then measure held-out MLM accuracy at longer lengths with
# `roformer eval-mlm` (RoPE's table is computed, so the trained weights run at any length). Also
# evaluates the sqrt_d model with log_n switched on at inference only (no retraining). Writes
# length-extrapolation.md and length-extrapolation-*.png into --report.
#
#   bash launch/experiments/length_extrapolation.sh [--scale smoke|small|full] [--bin PATH]
#        [--corpus SHARDS --vocab VOCAB] [--runs DIR] [--report DIR] [--threads N] [--jobs N]
#
# Scales (train seq 64, dropout 0 since these runs are far too short for it to help, AdamW lr 1e-3,
# linear decay, warmup 10%, seed 1234):
#   smoke  H32 L2 A2 FFN64, batch 4, 10 steps; eval at 64/128/256 on 4 sequences
#   small  H128 L4 A4 FFN512, batch 32, 600 steps; eval at 64/128/256/512/1024 on 512/512/256/128/128
#          held-out sequences (the committed report: 9 min measured on the shared 2-vCPU VM)
#   full   H384 L6 A6 FFN1536, batch 256, 50k steps, lr 5e-4; eval at 64..1024 on 2048 sequences
#          each (real hardware; not run here)
# Other flags: see launch/experiments/common.sh.
set -euo pipefail
EXP_NAME=length-extrapolation
EXP_ARGS="$*"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
exp_parse_args "$@"

LR=1e-3
case "$SCALE" in
  smoke) H=32; L=2; A=2; F=64; B=4; STEPS=10; EVAL_EVERY=5; EVAL_N=8
         LENS="64 128 256"; NS="4 4 4" ;;
  small) H=128; L=4; A=4; F=512; B=32; STEPS=600; EVAL_EVERY=100; EVAL_N=256
         LENS="64 128 256 512 1024"; NS="512 512 256 128 128" ;;
  full) H=384; L=6; A=6; F=1536; B=256; STEPS=50000; EVAL_EVERY=2000; EVAL_N=2048; LR=5e-4
        LENS="64 128 256 512 1024"; NS="2048 2048 2048 2048 2048" ;;
esac
WARMUP=$(( STEPS / 10 > 0 ? STEPS / 10 : 1 ))
MICRO=$(( B < 32 ? B : 32 ))
exp_write_config "$RUNS/train.textproto" "  hidden_size: $H
  num_hidden_layers: $L
  num_attention_heads: $A
  intermediate_size: $F
  max_position_embeddings: 64
  hidden_dropout_prob: 0
  attention_probs_dropout_prob: 0" "  steps: $STEPS
  micro_batch: $MICRO
  global_batch: $B
  seq_len: 64
  lr: $LR
  warmup_steps: $WARMUP
  lr_decay: \"linear\"
  log_every: $(( EVAL_EVERY / 5 > 0 ? EVAL_EVERY / 5 : 1 ))
  eval_every: $EVAL_EVERY
  eval_samples: $EVAL_N
  seed: 1234"

echo "training: attention_scale sqrt_d and log_n at length 64, $STEPS steps each"
printf '%s\n' "exp_train sqrt_d $RUNS/train.textproto --set model.attention_scale=sqrt_d" \
  "exp_train log_n $RUNS/train.textproto --set model.attention_scale=log_n" | exp_parallel
TRAIN_S=$(exp_elapsed)

# Held-out MLM at each length. "sqrt_d+log_n@eval" = the sqrt_d model with the log-n factor applied
# at inference only.
echo "evaluating at lengths $LENS"
: > "$RUNS/eval.jsonl"
set -- $NS
for n in $LENS; do
  k="$1"; shift
  for m in sqrt_d log_n sqrt_d+log_n@eval; do
    ck="$RUNS/${m%%+*}/checkpoints"
    extra=()
    [ "$m" = "sqrt_d+log_n@eval" ] && extra=(--set model.attention_scale=log_n)
    line=$("$BIN" eval-mlm --ckpt "$ck" --corpus "$CORPUS" --vocab "$VOCAB" --seq-len "$n" \
           --samples "$k" --seed 4321 "${extra[@]}" 2> "$RUNS/eval-$m-$n.log") \
      || { cat "$RUNS/eval-$m-$n.log" >&2; exit 1; }
    echo "{\"model\":\"$m\",\"result\":$line}" >> "$RUNS/eval.jsonl"
    echo "  $m n=$n: $(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print('acc %.4f loss %.3f (%d seqs, %.0f real tokens, %.1fs)' % (r['mlm_acc'], r['mlm_loss'], r['sequences'], r['mean_real_tokens'], r['seconds']))" "$line")"
  done
done
EVAL_S=$(( $(exp_elapsed) - TRAIN_S ))

# Repeat one evaluation: eval-mlm must print the same numbers.
first_n=$(echo "$LENS" | awk '{print $2}')
a=$("$BIN" eval-mlm --ckpt "$RUNS/log_n/checkpoints" --corpus "$CORPUS" --vocab "$VOCAB" \
    --seq-len "$first_n" --samples 8 --seed 4321 2>/dev/null | python3 -c "import json,sys; r=json.load(sys.stdin); print(repr((r['mlm_loss'], r['mlm_acc'], r['sop_loss'])))")
b=$("$BIN" eval-mlm --ckpt "$RUNS/log_n/checkpoints" --corpus "$CORPUS" --vocab "$VOCAB" \
    --seq-len "$first_n" --samples 8 --seed 4321 2>/dev/null | python3 -c "import json,sys; r=json.load(sys.stdin); print(repr((r['mlm_loss'], r['mlm_acc'], r['sop_loss'])))")
DET=DIFFERENT; [ "$a" = "$b" ] && DET=identical
echo "eval determinism check: $DET"

"$BIN" plot "$RUNS/sqrt_d" "$RUNS/log_n" --out "$REPORT/length-extrapolation-train.png" \
  --metrics eval_mlm_loss,eval_mlm_acc,loss --title "trained at length 64 ($SCALE)" \
  > "$RUNS/plot.log" 2>&1 || { cat "$RUNS/plot.log" >&2; exit 1; }

python3 "$EXP_SRC/launch/experiments/report.py" length-extrapolation --runs "$RUNS" \
  --report "$REPORT" --scale "$SCALE" --train-seconds "$TRAIN_S" --eval-seconds "$EVAL_S" \
  --total-seconds "$(exp_elapsed)" --determinism "$DET" --corpus "$CORPUS" --vocab "$VOCAB" \
  --model "H=$H L=$L A=$A FFN=$F" \
  --train "seq 64, batch $B, $STEPS steps, lr $LR, warmup $WARMUP, linear decay"
echo "report: $REPORT/length-extrapolation.md ($(exp_elapsed) s in all)"
[ "$DET" = identical ]
