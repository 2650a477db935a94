#!/usr/bin/env python3
"""Ours vs PyTorch eager (fp32) on the same RoFormer pretraining step, timed alternately.

Setup (this script installs nothing; keep the venv outside the repository):
    python3 -m venv venv && venv/bin/pip install torch transformers
    venv/bin/python bench/compare_pytorch.py --roformer build/roformer --shape base --threads 2

What is compared, per round (ours, torch, ours, torch, ... --rounds each):
  ours : `roformer bench train --shape config --set <same shape> --steps K --warmup 1`, its JSON
         last line's step_seconds (forward + backward + AdamW, MLM + SOP heads, dropout 0.1,
         padded lengths L/2..L). OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = N.
  torch: transformers' RoFormerForMaskedLM (same width/depth/heads/FFN, vocab 21128, dropout 0.1,
         exact-erf GELU), forward + backward + torch.optim.AdamW step on random tokens with labels
         = -100 except 15 % masked positions and the same L/2..L padding; torch.set_num_threads(N).
         HF has no SOP head: ours has one (pooler H x H + 2-way classifier on B [CLS] rows, about
         2*B*H*H*3 FLOPs, < 0.1 % of the step), so the SOP-equivalent cost is negligible and is not
         added to the torch side. HF's MLM head runs the vocab decoder on every position while ours
         runs it on the masked rows only: that is part of what is being compared (an algorithmic
         saving of the implementation, not a different objective: the loss is the same).
Tokens/s = batch * seq_len / step_seconds for both (padding counted alike).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SHAPES = {
    "base": dict(layers=12, hidden=768, heads=12, ffn=3072),
    "small": dict(layers=4, hidden=256, heads=4, ffn=1024),
}
VOCAB = 21128


def ours_step_seconds(binary, shape, seq, batch, threads, steps, extra_sets, gemm=""):
    s = SHAPES[shape]
    sets = [
        f"model.hidden_size={s['hidden']}", f"model.num_hidden_layers={s['layers']}",
        f"model.num_attention_heads={s['heads']}", f"model.intermediate_size={s['ffn']}",
        f"train.seq_len={seq}", f"train.micro_batch={batch}", f"train.global_batch={batch}",
    ] + extra_sets
    cmd = [binary, "bench", "train", "--shape", "config", "--steps", str(steps), "--warmup", "1"]
    for x in sets:
        cmd += ["--set", x]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    env.pop("ROFORMER_GEMM", None)
    if gemm:
        env["ROFORMER_GEMM"] = gemm
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    j = json.loads(out.strip().splitlines()[-1])
    return j["step_seconds"], j, " ".join(cmd)


class TorchStep:
    def __init__(self, shape, seq, batch, threads, seed=1234):
        import torch
        from transformers import RoFormerConfig, RoFormerForMaskedLM
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        s = SHAPES[shape]
        cfg = RoFormerConfig(vocab_size=VOCAB, embedding_size=s["hidden"], hidden_size=s["hidden"],
                             num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                             intermediate_size=s["ffn"], hidden_act="gelu",
                             hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                             max_position_embeddings=512, type_vocab_size=2)
        self.torch = torch
        self.model = RoFormerForMaskedLM(cfg).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-6)
        self.seq, self.batch = seq, batch
        self.gen = torch.Generator().manual_seed(seed)

    def batch_tensors(self):
        torch, B, L = self.torch, self.batch, self.seq
        ids = torch.randint(1, VOCAB, (B, L), generator=self.gen)
        lengths = torch.randint(L // 2, L + 1, (B,), generator=self.gen)
        mask = (torch.arange(L)[None, :] < lengths[:, None]).long()
        ids = ids * mask
        types = torch.zeros_like(ids)
        masked = (torch.rand((B, L), generator=self.gen) < 0.15) & mask.bool()
        labels = torch.where(masked, ids, torch.full_like(ids, -100))
        return ids, types, mask, labels

    def step(self):
        ids, types, mask, labels = self.batch_tensors()
        out = self.model(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels)
        out.loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def time_steps(self, k):
        t = []
        for _ in range(k):
            t0 = time.perf_counter()
            self.step()
            t.append(time.perf_counter() - t0)
        return sum(t) / len(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--roformer", default="build/roformer")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round and side")
    ap.add_argument("--set", action="append", default=[], help="extra --set for ours")
    ap.add_argument("--gemm", default="",
                    help="comma list of our GEMM backends to time each round (ROFORMER_GEMM: "
                         "onednn, openblas); empty = the build's default")
    ap.add_argument("--json", help="append the result as one JSON line to this file")
    a = ap.parse_args()

    torch_side = TorchStep(a.shape, a.seq, a.batch, a.threads)
    t0 = time.perf_counter()
    torch_side.step()  # warm-up (allocator, AdamW state)
    warm = time.perf_counter() - t0
    print(f"torch warm-up step {warm:.2f} s", flush=True)
    backends = a.gemm.split(",") if a.gemm else [""]
    ours = {g: [] for g in backends}
    last = {g: {} for g in backends}
    theirs, cmd = [], ""
    for r in range(a.rounds):
        line = f"round {r}:"
        for g in backends:
            so, last[g], cmd = ours_step_seconds(a.roformer, a.shape, a.seq, a.batch, a.threads,
                                                 a.steps, a.set, g)
            ours[g].append(so)
            line += f" ours[{last[g].get('gemm_backend', g)}] {so:.3f} s/step,"
        st = torch_side.time_steps(a.steps)
        theirs.append(st)
        line += f" torch {st:.3f} s/step; ratios " + " ".join(
            f"{st / ours[g][-1]:.2f}x" for g in backends)
        print(line, flush=True)
    tokens = a.batch * a.seq
    mt = statistics.median(theirs)
    for g in backends:
        mo = statistics.median(ours[g])
        res = dict(
            date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            machine=platform.processor() or platform.machine(), shape=a.shape, threads=a.threads,
            seq=a.seq, batch=a.batch, rounds=a.rounds, steps=a.steps, ours_cmd=cmd,
            gemm_backend=last[g].get("gemm_backend"), ours_step_s=ours[g], torch_step_s=theirs,
            ours_tokens_s=tokens / mo, torch_tokens_s=tokens / mt, ratio=mt / mo,
            ours_mfu=last[g].get("mfu"), gemm_peak_gflops=last[g].get("gemm_peak_gflops"),
            openblas_peak_gflops=last[g].get("openblas_peak_gflops"),
            torch_version=__import__("torch").__version__)
        print(json.dumps(res), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    sys.exit(main())
