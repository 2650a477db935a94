#!/usr/bin/env bash
# label: unit
# train.device: "cuda" without a usable GPU (this CI machine) stops before the first step with an
# error naming train.device and writes no checkpoint; an unknown device is a config error. With a
# GPU present the cuda run must instead train on it (parity with the CPU trainer is
# tests/gpu/train_parity.sh's job; here only that it ran), and gradnorm or ZeRO-1 with a device
# are config errors.
set -euo pipefail
R=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
bash "$2/tests/make_tiny_corpus.sh" "$R" "$T" 5 200
SETS=(--set model.hidden_size=32 --set model.num_hidden_layers=2 --set model.num_attention_heads=2
      --set model.intermediate_size=64 --set train.steps=2 --set train.micro_batch=4
      --set train.global_batch=4 --set train.seq_len=32 --set train.log_every=1
      --set train.eval_every=0 --set train.eval_samples=4 --set model.max_position_embeddings=64
      --set data.corpus="$T/shards" --set data.vocab="$T/vocab.txt")
if "$R" pretrain "${SETS[@]}" --set train.device=tpu --run-dir "$T/tpu" 2>"$T/tpu.log"; then
  echo "FAIL: train.device=tpu accepted"; exit 1
fi
grep -q 'train.device' "$T/tpu.log" || { cat "$T/tpu.log"; echo "FAIL: error does not name train.device"; exit 1; }
# Combinations a device does not run are config errors, before anything is written.
for bad in "multitask.weighting=gradnorm:multitask.weighting" "optimizer.zero_stage=1:optimizer.zero_stage"; do
  if "$R" pretrain "${SETS[@]}" --set train.device=cuda --set "${bad%%:*}" --run-dir "$T/combo" \
      2>"$T/combo.log"; then
    echo "FAIL: train.device=cuda with ${bad%%:*} accepted"; exit 1
  fi
  grep -q "${bad##*:}" "$T/combo.log" || { cat "$T/combo.log"; echo "FAIL: error does not name ${bad##*:}"; exit 1; }
  [ ! -e "$T/combo" ] || { echo "FAIL: $T/combo written for a bad config"; exit 1; }
done
if "$R" device | grep -q "^cuda:[0-9]"; then
  "$R" pretrain "${SETS[@]}" --set train.device=cuda --run-dir "$T/gpu" 2>"$T/gpu.log"
  grep -q "training on cuda:" "$T/gpu.log" || { cat "$T/gpu.log"; echo "FAIL: not on the GPU"; exit 1; }
  echo "device: cuda run finished on a GPU"
  exit 0
fi
set +e
"$R" pretrain "${SETS[@]}" --set train.device=cuda --run-dir "$T/gpu" 2>"$T/gpu.log"
rc=$?
set -e
[ "$rc" -ne 0 ] || { cat "$T/gpu.log"; echo "FAIL: train.device=cuda without a GPU exited 0"; exit 1; }
[ "$rc" -lt 128 ] || { cat "$T/gpu.log"; echo "FAIL: crashed (rc $rc)"; exit 1; }
grep -q 'train.device = "cuda"' "$T/gpu.log" || { cat "$T/gpu.log"; echo "FAIL: error does not name train.device"; exit 1; }
if ls -d "$T"/gpu/checkpoints/step_* >/dev/null 2>&1; then echo "FAIL: a checkpoint was written"; exit 1; fi
echo "device: cuda without a GPU -> rc $rc: $(grep -m1 'train.device = "cuda"' "$T/gpu.log" | sed 's/.*\] //')"
