// Multi-head self-attention core on [B, L, heads, d] activations, with RealFormer residual scores
// (He et al. 2020, official google-research/realformer semantics) and the entropy-invariant
// log_512(n) scale (Su, kexue.fm 8823). RoPE is applied to q and k before this
// (kernels/cpu/rope.h).
//
// Per (batch b, head h), layer l:
//   S     = q k^T / sqrt(d)                       (divided after the GEMM, as HF)
//   cur   = S + carry_in      (RealFormer; carry_in = running sum of earlier layers' S, UNMASKED)
//   logit = cur * c_b,  c_b = mean_div * (log_n ? log(max(n_b, 16)) / log(512) : 1)
//           mean_div = 1/(l+1) for the running-mean variant; n_b = unmasked keys of batch row b
//   P     = softmax over unmasked keys (padded keys get probability exactly 0)
//   ctx   = dropout(P) v
// The carry passed to layer l+1 is cur (mask and dropout excluded). Backward: since
// cur_l = S_l + cur_{l-1}, dcur_l = dlogit_l * c_b + dcur_{l+1}, and that one tensor is both dS_l
// and the carry gradient handed to layer l-1.
//
// Recomputation (p.recompute, model.attention_recompute): P is not kept from forward to backward,
// so no [B, heads, L, L] tensor per layer survives the forward; both passes hold P of one head in
// per-thread scratch. The backward recomputes S = q k^T and P with the forward's own row code, so
// without RealFormer P (and every gradient) is bit-identical. With RealFormer the backward needs
// cur_l, and only the last layer's survives the forward (the single carry buffer); going down,
// each layer's backward turns the carry back into cur_{l-1} = cur_l - S_l. That subtraction
// undoes the forward's fp32 addition only up to rounding (a few ulps of |cur|, growing with the
// layers walked), so RealFormer gradients match the stored-P run to ~1e-6 relative, not bitwise.
// Layer 0's P is exact again (cur_0 = S_0 is taken from S, not from the rebuilt carry).
#pragma once

#include <cstdint>

#include "kernels/cpu/dropout.h"

namespace roformer {

struct AttentionDims {
  int batch = 0, seq = 0;
  int heads = 0;     // heads held locally (heads / tp)
  int head_dim = 0;  // d
  int64_t ld = 0;    // floats between consecutive tokens in q/k/v/ctx (local hidden = heads * d)
};

struct AttentionParams {
  bool realformer = false;  // carry the running score sum through `carry`
  bool has_prev = false;    // carry holds earlier layers' sum (false at layer 0)
  float mean_div = 1.0f;    // 1 / (layer + 1) for the running mean, else 1
  bool log_n = false;       // multiply by log(max(n,16)) / log(512)
  // Dropout on the probabilities; for TP the logical view is [B, heads_global * L * L] with
  // col_offset = first_local_head * L * L (set by the caller). p = 0 disables it.
  DropoutSpec dropout;
  // Keep no probs between forward and backward (see above): `probs` is then neither written nor
  // read (may be null), and a RealFormer backward needs the forward's carry.
  bool recompute = false;
};

// Per-batch-row multiplier c_b of the logits (see above); mask [B, L] (1 = real), null = all real.
float AttentionLogitScale(const AttentionParams& p, const int32_t* mask_row, int seq);

// q, k, v: [B, L, heads, d] views with row stride ld (RoPE already applied to q, k).
// carry: [B, heads, L, L] (RealFormer only; read when has_prev, then overwritten with cur).
// probs: [B, heads, L, L] output, the softmax before dropout (saved for the backward); unused
// with p.recompute.
// ctx: [B, L, heads, d] output with row stride ld.
void AttentionForward(const AttentionDims& dims, const AttentionParams& p, const float* q,
                      const float* k, const float* v, const int32_t* mask, float* carry,
                      float* probs, float* ctx);

// dctx: [B, L, heads, d]. dcarry: [B, heads, L, L] (RealFormer only): on entry the carry gradient
// from layer l+1 when has_dcarry_in (otherwise treated as zero); on exit dS_l = dcur_l, the carry
// gradient for layer l-1. dq, dk, dv are overwritten (gradients w.r.t. the rotated q, k).
// With p.recompute, probs is unused and, for RealFormer, carry [B, heads, L, L] holds cur_l on
// entry (what this layer's forward left there once the layers above have rebuilt it) and, when
// has_prev, cur_{l-1} on exit, ready for the backward of layer l-1. One backward per forward:
// the carry is consumed on the way down.
void AttentionBackward(const AttentionDims& dims, const AttentionParams& p, const float* dctx,
                       const float* q, const float* k, const float* v, const int32_t* mask,
                       const float* probs, float* dcarry, bool has_dcarry_in, float* dq, float* dk,
                       float* dv, float* carry = nullptr);

}  // namespace roformer
