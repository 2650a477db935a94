#!/usr/bin/env bash
# The trainer on the GPU (train.device = "cuda") against the trainer on the CPU, end to end
# through `roformer pretrain`: the same tiny corpus, config, seed and dropout masks, RealFormer on.
#   - fp32: per-step losses within 1e-5 relative at step 1 and 2e-3 over 30 steps (cuBLAS and the
#     CPU GEMM, oneDNN or OpenBLAS, sum in different orders; the difference compounds through the
#     updates);
#   - bf16 on the GPU against fp32 on the CPU: per-step losses within 3e-2 relative, and the
#     loss falls;
#   - resume on the GPU: 15 steps, a new process resumes to 30: per-step losses and the final
#     checkpoint identical to the uninterrupted GPU run (deterministic mode).
# Exit 77 (ctest: skipped) when `roformer device` lists no CUDA device.
#   bash tests/gpu/train_parity.sh ROFORMER_BINARY REPO_ROOT
set -euo pipefail
R=$1
if ! "$R" device | grep -q '^cuda:[0-9]'; then
  echo "SKIPPED: no CUDA device ($("$R" device | grep -m1 -i 'no CUDA device\|not built' || true))"
  exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
bash "$2/tests/make_tiny_corpus.sh" "$R" "$T" 7 600
SETS=(--set model.hidden_size=64 --set model.num_hidden_layers=3 --set model.num_attention_heads=4
      --set model.intermediate_size=128 --set model.realformer=true --set train.steps=30
      --set train.micro_batch=8 --set train.global_batch=16 --set train.seq_len=64
      --set train.lr=1e-3 --set train.warmup_steps=5 --set train.log_every=1
      --set train.eval_every=0 --set train.eval_samples=16 --set model.max_position_embeddings=64
      --set data.corpus="$T/shards" --set data.vocab="$T/vocab.txt")
run() {  # name, extra flags...
  local name=$1
  shift
  "$R" pretrain "${SETS[@]}" "$@" --run-dir "$T/$name" 2>"$T/$name.log" ||
    { tail -n 20 "$T/$name.log"; echo "FAIL: pretrain $name"; exit 1; }
}
run cpu32 --set train.device=cpu
run gpu32 --set train.device=cuda
run gpu16 --set train.device=cuda --set model.precision=bf16
run gpu_split --set train.device=cuda --max-steps 15
run gpu_split --set train.device=cuda
grep -q "training on cuda:" "$T/gpu32.log" || { echo "FAIL: gpu32 did not train on the GPU"; exit 1; }
python3 - "$T" <<'PY'
import json, sys
T = sys.argv[1]
def losses(name):
    # A non-finite loss is written as null: keep it as NaN so the checks below FAIL, not crash.
    return [float("nan") if r["loss"] is None else r["loss"]
            for r in (json.loads(l) for l in open(f"{T}/{name}/metrics.jsonl") if '"loss"' in l)]
cpu32, gpu32, gpu16, split = (losses(n) for n in ("cpu32", "gpu32", "gpu16", "gpu_split"))
ok = True
def check(what, cond, detail):
    global ok
    print(("PASS " if cond else "FAIL ") + what + ": " + detail)
    ok &= cond
rel = lambda a, b: abs(a - b) / max(abs(b), 1e-12)  # NaN compares false: a NaN fails every bound
check("CPU reference ran 30 steps", len(cpu32) == 30, f"{len(cpu32)} steps")
check("fp32 step 1", rel(gpu32[0], cpu32[0]) <= 1e-5, f"gpu {gpu32[0]!r} cpu {cpu32[0]!r}")
worst = max(rel(g, c) for g, c in zip(gpu32, cpu32))
check("fp32 30 steps", len(gpu32) == 30 and worst <= 2e-3 and all(
    r == r for r in gpu32), f"max rel diff {worst:.2e}")
worst16 = max(rel(g, c) for g, c in zip(gpu16, cpu32))
check("bf16 30 steps vs CPU fp32", len(gpu16) == 30 and worst16 <= 3e-2 and all(
    r == r for r in gpu16), f"max rel diff {worst16:.2e}")
check("bf16 loss falls", gpu16[-1] < gpu16[0], f"{gpu16[0]:.4f} -> {gpu16[-1]:.4f}")
check("GPU resume", split == gpu32, f"{len(split)} steps, identical = {split == gpu32}")
sys.exit(0 if ok else 1)
PY
a=$T/gpu32/checkpoints/step_00000030
b=$T/gpu_split/checkpoints/step_00000030
for f in "$a"/chunk-*.bin; do
  cmp -s "$f" "$b/$(basename "$f")" || { echo "FAIL: GPU resume: final weights differ ($f)"; exit 1; }
done
echo "PASS GPU resume: final checkpoint byte-identical"
