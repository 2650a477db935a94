"""Golden AdamW trajectory from PyTorch (torch.optim.AdamW + clip_grad_norm_ + warmup/linear decay).

Run: /path/to/venv/bin/python tests/reference/make_optimizer_fixture.py
     (needs `pip install torch`; writes tests/reference/fixtures/adamw_trajectory.json)

Two tensors: "w" (decayed) and "ln.weight" (no decay, like LayerNorm weights). Gradients at each
step are a fixed function of the step and the current weights so the trajectory depends on every
update; the C++ test replays the same gradient function.
"""
import json
import math
import os

import torch

torch.set_default_dtype(torch.float32)
g = torch.Generator().manual_seed(7)
w = torch.randn(6, 5, generator=g).requires_grad_(True)
ln = (1.0 + 0.1 * torch.randn(5, generator=g)).requires_grad_(True)
init = {"w": w.detach().clone().reshape(-1).tolist(), "ln.weight": ln.detach().clone().tolist()}

lr, warmup, total, wd, clip = 1e-2, 2, 6, 0.1, 1.0
opt = torch.optim.AdamW([{"params": [w], "weight_decay": wd}, {"params": [ln], "weight_decay": 0.0}],
                        lr=lr, betas=(0.9, 0.999), eps=1e-6)


def lr_at(step):  # must match model/lr_schedule.cc (step s uses (s+1)/warmup during warmup)
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(max((step - warmup) / max(1, total - warmup), 0.0), 1.0)
    return lr * (1.0 - t)


steps = []
for step in range(total):
    # Loss whose gradient is 3*w*sin(step+1) + w^3 ... (simple, nonlinear, scale varies by step).
    loss = (torch.sin(torch.tensor(step + 1.0)) * 1.5 * (w ** 2).sum() + 0.25 * (w ** 4).sum()
            + 4.0 * ((ln - 0.5) ** 2).sum() * (step + 1))
    opt.zero_grad()
    loss.backward()
    grads = {"w": w.grad.reshape(-1).tolist(), "ln.weight": ln.grad.tolist()}
    norm = float(torch.nn.utils.clip_grad_norm_([w, ln], clip))
    for group in opt.param_groups:
        group["lr"] = lr_at(step)
    opt.step()
    steps.append({"grads": grads, "grad_norm": norm, "lr": lr_at(step),
                  "w": w.detach().reshape(-1).tolist(), "ln.weight": ln.detach().tolist()})

out = {"config": {"lr": lr, "warmup": warmup, "total": total, "weight_decay": wd, "clip": clip,
                  "beta1": 0.9, "beta2": 0.999, "eps": 1e-6, "torch": torch.__version__},
       "init": init, "steps": steps}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "adamw_trajectory.json")
with open(path, "w") as f:
    json.dump(out, f, indent=0)
print("wrote", path)
