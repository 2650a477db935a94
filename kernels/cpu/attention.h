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
};

// Per-batch-row multiplier c_b of the logits (see above); mask [B, L] (1 = real), null = all real.
float AttentionLogitScale(const AttentionParams& p, const int32_t* mask_row, int seq);

// q, k, v: [B, L, heads, d] views with row stride ld (RoPE already applied to q, k).
// carry: [B, heads, L, L] (RealFormer only; read when has_prev, then overwritten with cur).
// probs: [B, heads, L, L] output, the softmax before dropout (saved for the backward).
// ctx: [B, L, heads, d] output with row stride ld.
void AttentionForward(const AttentionDims& dims, const AttentionParams& p, const float* q,
                      const float* k, const float* v, const int32_t* mask, float* carry,
                      float* probs, float* ctx);

// dctx: [B, L, heads, d]. dcarry: [B, heads, L, L] (RealFormer only): on entry the carry gradient
// from layer l+1 when has_dcarry_in (otherwise treated as zero); on exit dS_l = dcur_l, the carry
// gradient for layer l-1. dq, dk, dv are overwritten (gradients w.r.t. the rotated q, k).
void AttentionBackward(const AttentionDims& dims, const AttentionParams& p, const float* dctx,
                       const float* q, const float* k, const float* v, const int32_t* mask,
                       const float* probs, float* dcarry, bool has_dcarry_in, float* dq, float* dk,
                       float* dv);

}  // namespace roformer
