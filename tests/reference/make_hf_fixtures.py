#!/usr/bin/env python3
"""Builds the HF RoFormer parity fixtures under tests/reference/fixtures/ (and checks exports).

Regenerate (deterministic; needs torch, transformers >= 4.4x, safetensors, numpy):

    VENV/bin/python tests/reference/make_hf_fixtures.py            # writes tests/reference/fixtures/*
    VENV/bin/python tests/reference/make_hf_fixtures.py --out DIR  # elsewhere

Check a `roformer convert --to-hf` export against a fixture's expected outputs:

    VENV/bin/python tests/reference/make_hf_fixtures.py --check-export EXPORT_DIR --fixture hf_base

Each fixture directory holds
  config.json         HF RoFormerConfig plus our variant keys: realformer, realformer_running_mean,
                      pre_ln (bools), attention_scale ("sqrt_d" | "log_n").
  model.safetensors   save_pretrained(safe_serialization=True): HF names, the tied
                      cls.predictions.decoder.{weight,bias} omitted (tie_word_embeddings), the
                      sinusoidal table roformer.encoder.embed_positions.weight included; pre_ln adds
                      roformer.encoder.final_layer_norm.{weight,bias}.
  expected.safetensors
      input_ids, token_type_ids, attention_mask   int64 [B, L] (right padding, pad id 0)
      labels          int64 [B, L], -100 = not predicted (only at non-padded positions)
      logits          f32 [B, L, V] (every position, padded ones included; compare non-padded only)
      loss            f32 [1] mean cross-entropy over labels != -100
      hidden_states_0 .. hidden_states_N   f32 [B, L, H]: 0 = embedding output (after
                      embeddings_project), i = output of layer i. For pre_ln these are the raw
                      residual stream, the last one BEFORE the final LayerNorm (the convention of
                      HF's pre-LN encoders, RobertaPreLayerNorm / XLMRobertaXL).
      sequence_output f32 [B, L, H] pre_ln only: the encoder output the MLM head reads (after
                      roformer.encoder.final_layer_norm); elsewhere it is hidden_states_N.
      grad.<name>     f32 gradient of d(loss)/d(param) for every trainable parameter (HF names;
                      word_embeddings includes the tied decoder's contribution; the sinusoidal table
                      is frozen and has none).

Stock HF has no RealFormer / Pre-LN / log-n scale, so the variant fixtures use HF's modules with
a short patch of RoFormerSelfAttention.forward and RoFormerEncoder.forward (see `install_variant`):
  realformer       running SUM of QK^T/sqrt(d) over layers, carried unmasked; the mask is added
                   to each layer's softmax input only (google-research/realformer semantics).
  realformer_mean  softmax over the carried sum / (layer index + 1).
  pre_ln           x + Attn(LN_a(x)), x + FFN(LN_f(x)); LN_a = attention.output.LayerNorm,
                   LN_f = output.LayerNorm, embedding LN kept, final LN encoder.final_layer_norm.
  log_n            scores * log(max(n,16))/log(512) / sqrt(d), n = unmasked keys of the row
                   (bert4keras softmax_plus).
  realformer_log_n the carried sum is of QK^T/sqrt(d); the log512(n) factor multiplies the summed
                   scores just before mask + softmax.
With every switch off the patched model is checked to reproduce stock HF bit for bit.
Sequence length 20 with row lengths 20/17/11 so that n differs per row and the clamp at 16 is hit;
row 1 has a real (unmasked) token with id 0 to exercise padding_idx; the pad row of the word
embeddings is made non-zero so the tied decoder's row 0 matters.
"""
import argparse
import json
import math
import os
import sys
import types

import numpy as np
import torch
from torch import nn
from safetensors.torch import load_file, save_file
from transformers import RoFormerConfig, RoFormerForMaskedLM
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (HF config overrides, variant flags)
FIXTURES = {
    "hf_base": (dict(vocab_size=80, hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                     intermediate_size=32), {}),
    "hf_embproj": (dict(vocab_size=150, hidden_size=40, embedding_size=24, num_attention_heads=2,
                        num_hidden_layers=2, intermediate_size=40), {}),
    "realformer": (dict(vocab_size=120, hidden_size=32, num_attention_heads=2, num_hidden_layers=3,
                        intermediate_size=32), dict(realformer=True)),
    "realformer_mean": (dict(vocab_size=110, hidden_size=32, num_attention_heads=4,
                             num_hidden_layers=3, intermediate_size=32),
                        dict(realformer=True, realformer_running_mean=True)),
    "pre_ln": (dict(vocab_size=140, hidden_size=32, num_attention_heads=2, num_hidden_layers=2,
                    intermediate_size=48), dict(pre_ln=True)),
    "log_n": (dict(vocab_size=100, hidden_size=32, num_attention_heads=2, num_hidden_layers=2,
                   intermediate_size=40), dict(attention_scale="log_n")),
    "realformer_log_n": (dict(vocab_size=105, hidden_size=32, num_attention_heads=4,
                              num_hidden_layers=2, intermediate_size=40),
                         dict(realformer=True, attention_scale="log_n")),
}

DEFAULT_FLAGS = dict(realformer=False, realformer_running_mean=False, pre_ln=False,
                     attention_scale="sqrt_d")
BATCH, SEQ, LENGTHS = 3, 20, (20, 17, 11)


def base_config(overrides):
    kw = dict(hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
              max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
              rotary_value=False, initializer_range=0.02)
    kw.update(overrides)
    return RoFormerConfig(**kw)


# ---------------------------------------------------------------- variant patch
class VariantState:
    def __init__(self, flags):
        self.flags = dict(DEFAULT_FLAGS, **flags)
        self.prev = None        # RealFormer carried running sum [B, h, L, L]
        self.log_factor = None  # [B, 1, L, 1] log(max(n,16))/log(512)


def _self_attention_forward(self, hidden_states, attention_mask=None, sinusoidal_pos=None, *args,
                            **kwargs):
    st, f = self._variant, self._variant.flags
    hidden_shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
    q = self.query(hidden_states).view(hidden_shape).transpose(1, 2)
    k = self.key(hidden_states).view(hidden_shape).transpose(1, 2)
    v = self.value(hidden_states).view(hidden_shape).transpose(1, 2)
    if self.rotary_value:
        q, k, v = self.apply_rotary_position_embeddings(sinusoidal_pos, q, k, v)
    else:
        q, k = self.apply_rotary_position_embeddings(sinusoidal_pos, q, k)
    scores = torch.matmul(q, k.transpose(-1, -2))
    scores = scores / math.sqrt(self.attention_head_size)
    if f["realformer"]:
        if st.prev is not None:
            scores = scores + st.prev
        st.prev = scores  # unmasked running sum goes to the next layer
        if f["realformer_running_mean"]:
            scores = scores / (self._layer_index + 1)
    if f["attention_scale"] == "log_n":
        scores = scores * st.log_factor
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = nn.functional.softmax(scores, dim=-1)
    probs = self.dropout(probs)
    ctx = torch.matmul(probs, v)
    ctx = ctx.permute(0, 2, 1, 3).contiguous()
    ctx = ctx.view(*ctx.size()[:-2], self.all_head_size)
    return ctx, probs


def _encoder_forward(self, hidden_states, attention_mask=None, *args, output_attentions=False,
                     output_hidden_states=False, return_dict=True, **kwargs):
    st, f = self._variant, self._variant.flags
    B, L = hidden_states.shape[:2]
    sinusoidal_pos = self.embed_positions(hidden_states.shape[:-1], 0)[None, None, :, :]
    st.prev = None
    if attention_mask is not None:  # additive [B, 1, L, L]: 0 = visible, finfo.min = masked
        n = (attention_mask == 0).sum(-1, keepdim=True)
    else:
        n = torch.full((B, 1, L, 1), L)
    st.log_factor = (torch.log(n.clamp(min=16).double()) / math.log(512.0)).float()
    all_h, all_a = [], []
    for layer in self.layer:
        all_h.append(hidden_states)
        if f["pre_ln"]:
            att = layer.attention
            h = att.output.LayerNorm(hidden_states)
            ctx, probs = att.self(h, attention_mask=attention_mask, sinusoidal_pos=sinusoidal_pos)
            hidden_states = hidden_states + att.output.dropout(att.output.dense(ctx))
            h = layer.output.LayerNorm(hidden_states)
            hidden_states = hidden_states + layer.output.dropout(
                layer.output.dense(layer.intermediate(h)))
        else:
            outs = layer(hidden_states, attention_mask, sinusoidal_pos)
            hidden_states, probs = outs[0], outs[1] if len(outs) > 1 else None
        all_a.append(probs)
    all_h.append(hidden_states)  # pre-LN: before the final LN, as HF RobertaPreLayerNorm reports
    if f["pre_ln"]:
        hidden_states = self.final_layer_norm(hidden_states)
    return BaseModelOutputWithPastAndCrossAttentions(
        last_hidden_state=hidden_states,
        hidden_states=tuple(all_h) if output_hidden_states else None,
        attentions=tuple(all_a) if output_attentions else None)


def install_variant(model, flags):
    """Patches `model` (RoFormerForMaskedLM) in place for the variant flags; adds the final LN."""
    st = VariantState(flags)
    enc = model.roformer.encoder
    if st.flags["pre_ln"] and not hasattr(enc, "final_layer_norm"):
        cfg = model.config
        enc.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
    enc._variant = st
    enc.forward = types.MethodType(_encoder_forward, enc)
    for i, layer in enumerate(enc.layer):
        sa = layer.attention.self
        sa._variant, sa._layer_index = st, i
        sa.forward = types.MethodType(_self_attention_forward, sa)
    return model


# ---------------------------------------------------------------- fixture batch
def make_batch(vocab, gen):
    ids = torch.zeros(BATCH, SEQ, dtype=torch.long)
    tt = torch.zeros(BATCH, SEQ, dtype=torch.long)
    mask = torch.zeros(BATCH, SEQ, dtype=torch.long)
    labels = torch.full((BATCH, SEQ), -100, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        ids[b, :n] = torch.randint(1, vocab, (n,), generator=gen)
        mask[b, :n] = 1
        if b < 2:  # rows 0 and 1 have a second segment; row 2 is all segment 0
            tt[b, n // 2:n] = 1
        pos = torch.randperm(n, generator=gen)[:4]
        labels[b, pos] = torch.randint(0, vocab, (4,), generator=gen)
    # A real (unmasked) token with id 0: HF's padding_idx keeps its lookup gradient out of row 0
    # (row 0 still gets the tied decoder's gradient).
    ids[1, 5] = 0
    return ids, tt, mask, labels


def run(model, ids, tt, mask, labels):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=tt, labels=labels,
                output_hidden_states=True)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
             if p.requires_grad and p.grad is not None}
    return out, grads


def build_model(name, seed):
    overrides, flags = FIXTURES[name]
    torch.manual_seed(seed)
    cfg = base_config(overrides)
    model = RoFormerForMaskedLM(cfg).eval()
    install_variant(model, flags)
    with torch.no_grad():  # non-trivial LN / biases / pad row so that bugs show
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if "LayerNorm" in n or "layer_norm" in n:
                p.add_(0.1 * torch.randn_like(p))
            elif n.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
        model.roformer.embeddings.word_embeddings.weight[0].normal_(0.0, 0.02)
    return model, flags


def validate_patch():
    """The patch with every switch off must reproduce stock HF exactly."""
    torch.manual_seed(7)
    cfg = base_config(FIXTURES["hf_embproj"][0])
    ref = RoFormerForMaskedLM(cfg).eval()
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if p.requires_grad and ("LayerNorm" in n or n.endswith("bias")):
                p.add_(0.1 * torch.randn_like(p))
    pat = RoFormerForMaskedLM(cfg).eval()
    pat.load_state_dict(ref.state_dict())
    install_variant(pat, {})
    gen = torch.Generator().manual_seed(3)
    batch = make_batch(cfg.vocab_size, gen)
    o1, g1 = run(ref, *batch)
    o2, g2 = run(pat, *batch)
    worst = max(float((o1.logits - o2.logits).detach().abs().max()),
                float((o1.loss - o2.loss).detach().abs()))
    for a, b in zip(o1.hidden_states, o2.hidden_states):
        worst = max(worst, float((a - b).detach().abs().max()))
    assert g1.keys() == g2.keys()
    for n in g1:
        worst = max(worst, float((g1[n] - g2[n]).abs().max()))
    if worst != 0.0:
        sys.exit(f"patch with switches off differs from stock HF: max abs diff {worst}")
    print("patch validation: switches off == stock HF (bitwise)")


def write_fixture(name, out_root, seed):
    model, flags = build_model(name, seed)
    cfg = model.config
    gen = torch.Generator().manual_seed(seed + 1)
    ids, tt, mask, labels = make_batch(cfg.vocab_size, gen)
    out, grads = run(model, ids, tt, mask, labels)
    with torch.no_grad():
        seq_out = model.roformer(input_ids=ids, attention_mask=mask, token_type_ids=tt)[0]
    d = os.path.join(out_root, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    cpath = os.path.join(d, "config.json")
    with open(cpath) as fh:
        cj = json.load(fh)
    cj.update(dict(DEFAULT_FLAGS, **flags))
    cj.pop("transformers_version", None)  # keeps regenerated fixtures byte-stable across versions
    with open(cpath, "w") as fh:
        json.dump(cj, fh, indent=2, sort_keys=True)
        fh.write("\n")
    exp = {"input_ids": ids, "token_type_ids": tt, "attention_mask": mask, "labels": labels,
           "logits": out.logits.detach(), "loss": out.loss.detach().reshape(1)}
    for i, h in enumerate(out.hidden_states):
        exp[f"hidden_states_{i}"] = h.detach()
    if flags.get("pre_ln"):  # elsewhere it equals hidden_states_N (kept out to save space)
        exp["sequence_output"] = seq_out
    else:
        assert torch.equal(seq_out, out.hidden_states[-1])
    for n, g in grads.items():
        exp[f"grad.{n}"] = g
    exp = {k: v.contiguous() for k, v in exp.items()}
    save_file(exp, os.path.join(d, "expected.safetensors"),
              # one key: the writer stores metadata in a hash map, several keys reorder per run
              metadata={"fixture": json.dumps(dict(DEFAULT_FLAGS, **flags, name=name, seed=seed),
                                              sort_keys=True)})
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name:18s} loss={out.loss.item():.6f} params={sum(p.numel() for p in model.parameters())}"
          f" files={size / 1024:.0f} KiB")
    return size


def check_export(export_dir, fixture, root):
    """Loads an exported HF dir (as HF would) and compares logits/loss with the fixture."""
    with open(os.path.join(export_dir, "config.json")) as fh:
        cj = json.load(fh)
    flags = {k: cj[k] for k in DEFAULT_FLAGS if k in cj}
    variant = dict(DEFAULT_FLAGS, **flags) != DEFAULT_FLAGS
    if not variant:
        model, info = RoFormerForMaskedLM.from_pretrained(export_dir, output_loading_info=True)
        bad = {k: v for k, v in info.items() if v}
        if bad:
            sys.exit(f"from_pretrained loading info not clean: {bad}")
    else:  # the variant modules (final LN) exist only after the patch
        model = RoFormerForMaskedLM(RoFormerConfig.from_pretrained(export_dir))
        install_variant(model, flags)
        sd = load_file(os.path.join(export_dir, "model.safetensors"))
        res = model.load_state_dict(sd, strict=False)
        missing = [k for k in res.missing_keys if not k.startswith("cls.predictions.decoder.")]
        if missing or res.unexpected_keys:
            sys.exit(f"state dict mismatch: missing={missing} unexpected={res.unexpected_keys}")
        model.tie_weights()
    model.eval()
    if not variant:
        install_variant(model, {})
    exp = load_file(os.path.join(root, fixture, "expected.safetensors"))
    with torch.no_grad():
        out = model(input_ids=exp["input_ids"], attention_mask=exp["attention_mask"],
                    token_type_ids=exp["token_type_ids"], labels=exp["labels"])
    m = exp["attention_mask"].bool()
    ref, got = exp["logits"][m], out.logits[m]
    rel = float((ref - got).abs().max() / ref.abs().max().clamp(min=1e-6))
    lrel = abs(float(out.loss) - float(exp["loss"][0])) / max(abs(float(exp["loss"][0])), 1e-6)
    print(f"check-export {export_dir} vs {fixture}: logits rel {rel:.3g}, loss rel {lrel:.3g}")
    if rel > 1e-5 or lrel > 1e-5:
        sys.exit("export check FAILED")
    print("export check OK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures"))
    ap.add_argument("--only", nargs="*", help="fixture names (default: all)")
    ap.add_argument("--check-export", metavar="DIR")
    ap.add_argument("--fixture", default="hf_base", help="fixture for --check-export")
    args = ap.parse_args()
    torch.set_num_threads(1)  # deterministic reductions
    if args.check_export:
        check_export(args.check_export, args.fixture, args.out)
        return
    validate_patch()
    total = 0
    for i, name in enumerate(args.only or FIXTURES):
        total += write_fixture(name, args.out, seed=1000 + 17 * list(FIXTURES).index(name))
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
