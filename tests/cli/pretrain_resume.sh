#!/usr/bin/env bash
# label: unit
# Resume is bit-identical: N steps in one process == N/2 steps, checkpoint, a fresh process, N/2
# more (dropout on, RealFormer + RoPE, Post-LN). Also: --no-resume refuses to clobber a run.
set -euo pipefail
R=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
bash "$2/tests/make_tiny_corpus.sh" "$R" "$T" 5 400
SETS=(--set model.hidden_size=32 --set model.num_hidden_layers=2 --set model.num_attention_heads=2
      --set model.intermediate_size=64 --set model.realformer=true --set train.steps=8
      --set train.micro_batch=4 --set train.global_batch=8 --set train.seq_len=32 --set train.lr=1e-3
      --set train.warmup_steps=2 --set train.log_every=1 --set train.eval_every=4 --set train.eval_samples=8
      --set data.corpus="$T/shards" --set data.vocab="$T/vocab.txt" --set model.max_position_embeddings=64)
"$R" pretrain "${SETS[@]}" --run-dir "$T/full" 2>"$T/full.log"
"$R" pretrain "${SETS[@]}" --run-dir "$T/split" --max-steps 4 2>"$T/split1.log"
grep -q "stopped after 4 of 8 steps" "$T/split1.log" || { cat "$T/split1.log"; echo "FAIL: no early stop"; exit 1; }
"$R" pretrain "${SETS[@]}" --run-dir "$T/split" 2>"$T/split2.log"
grep -q "resumed from" "$T/split2.log" || { cat "$T/split2.log"; echo "FAIL: did not resume"; exit 1; }
losses() { python3 -c "
import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l)
    if 'loss' in r: print(r['step'], repr(r['loss']), repr(r['grad_norm']))
" "$1"; }
diff <(losses "$T/full/metrics.jsonl") <(losses "$T/split/metrics.jsonl") || { echo "FAIL: loss sequences differ"; exit 1; }
[ "$(losses "$T/full/metrics.jsonl" | wc -l)" -eq 8 ] || { echo "FAIL: expected 8 loss records"; exit 1; }
a=$(ls -d "$T"/full/checkpoints/step_00000008); b=$(ls -d "$T"/split/checkpoints/step_00000008)
for f in "$a"/chunk-*.bin; do cmp "$f" "$b/$(basename "$f")" || { echo "FAIL: final weights differ ($f)"; exit 1; }; done
"$R" ckpt verify "$b" >/dev/null
# The loss went down over the run (sanity that the optimizer is wired).
python3 - "$T/full/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert rows[-1]["loss"] < rows[0]["loss"], (rows[0]["loss"], rows[-1]["loss"])
PY
# --no-resume refuses to clobber without --force.
if "$R" pretrain "${SETS[@]}" --run-dir "$T/full" --no-resume 2>"$T/refuse.log"; then echo "FAIL: clobbered"; exit 1; fi
grep -q "add --force" "$T/refuse.log" || { cat "$T/refuse.log"; exit 1; }
echo "resume: bit-identical over 8 steps; --no-resume guarded"
