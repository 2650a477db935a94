#include "kernels/cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/vec_math.h"
#include "runtime/error.h"
#include "runtime/philox.h"

namespace roformer {

namespace {

// Per-thread [2, L, L] scratch; grows on the first larger shape only (OpenMP threads persist).
float* ThreadScratch(int64_t floats) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < floats) buf.resize(floats);
  return buf.data();
}

int CountKeys(const int32_t* mask_row, int seq) {
  if (!mask_row) return seq;
  int n = 0;
  for (int j = 0; j < seq; ++j) n += mask_row[j] != 0;
  return n;
}

// Multiplies P [L, L] of head (b, h) by the dropout keep mask / (1 - p) into out (may alias P).
void ApplyProbDropout(const DropoutSpec& s, int b, int h, int seq, const float* in, float* out) {
  // Row b of the logical [B, heads_global * L * L] view; local head h starts at
  // col_offset + h * L * L.
  const uint64_t base =
      static_cast<uint64_t>(b * s.cols_global + s.col_offset + static_cast<int64_t>(h) * seq * seq);
  DropoutRange(s, base, static_cast<int64_t>(seq) * seq, in, out);
}

// Masked softmax rows of one head, P [L, L], from the raw scores S = q k^T (overwritten as
// scratch). The forward (rebuild = false) forms cur = S / sqrt(d) (+ the carry) and stores it as
// the next carry. The recomputing backward (rebuild = true) finds cur_l in the carry instead and
// leaves cur_{l-1} = cur_l - S / sqrt(d) there. Both go through this one function so that the
// recomputed P equals the forward's bit for bit whenever cur is the same.
void SoftmaxRows(const AttentionParams& p, bool rebuild, const int32_t* mrow, int L, float sqrt_d,
                 float c, float* S, float* cur, float* P) {
  for (int i = 0; i < L; ++i) {
    float* srow = S + static_cast<int64_t>(i) * L;
    float* prow = P + static_cast<int64_t>(i) * L;
    float* crow = cur ? cur + static_cast<int64_t>(i) * L : nullptr;
    float mx = -INFINITY;
    for (int j = 0; j < L; ++j) {
      const float raw = srow[j] / sqrt_d;
      float s = raw;
      if (crow && p.has_prev) {
        if (rebuild) {
          s = crow[j];
          crow[j] = s - raw;
        } else {
          s += crow[j];
        }
      }
      if (crow && !rebuild) crow[j] = s;
      const float logit = s * c;
      srow[j] = logit;
      if ((!mrow || mrow[j]) && logit > mx) mx = logit;
    }
    VecExp(srow, prow, L, mx);
    if (mrow) {
      for (int j = 0; j < L; ++j) prow[j] = mrow[j] ? prow[j] : 0.0f;
    }
    float sum = 0.0f;
    for (int j = 0; j < L; ++j) sum += prow[j];
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int j = 0; j < L; ++j) prow[j] *= inv;
  }
}

}  // namespace

float AttentionLogitScale(const AttentionParams& p, const int32_t* mask_row, int seq) {
  float c = p.mean_div;
  if (p.log_n) {
    const int n = std::max(CountKeys(mask_row, seq), 16);
    c = static_cast<float>(static_cast<double>(p.mean_div) *
                           (std::log(static_cast<double>(n)) / std::log(512.0)));
  }
  return c;
}

void AttentionForward(const AttentionDims& dims, const AttentionParams& p, const float* q,
                      const float* k, const float* v, const int32_t* mask, float* carry,
                      float* probs, float* ctx) {
  const int B = dims.batch, L = dims.seq, NH = dims.heads, d = dims.head_dim;
  const int64_t ld = dims.ld, LL = static_cast<int64_t>(L) * L;
  const int ldi = static_cast<int>(ld);
  const float sqrt_d = std::sqrt(static_cast<float>(d));
  const bool dropout = p.dropout.p > 0.0f;
  ScopedSingleThreadBlas single;
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * NH; ++bh) {
    const int b = bh / NH, h = bh % NH;
    const int64_t tok0 = static_cast<int64_t>(b) * L * ld + static_cast<int64_t>(h) * d;
    const float* qb = q + tok0;
    const float* kb = k + tok0;
    const float* vb = v + tok0;
    const int32_t* mrow = mask ? mask + static_cast<int64_t>(b) * L : nullptr;
    // Scratch: S, the dropped P, and (recompute) P itself. The backward uses the same offsets.
    float* S = ThreadScratch((p.recompute ? 3 : 2) * LL);
    float* P = p.recompute ? S + 2 * LL : probs + static_cast<int64_t>(bh) * LL;
    float* cur = p.realformer ? carry + static_cast<int64_t>(bh) * LL : nullptr;
    Sgemm(false, true, L, L, d, 1.0f, qb, ldi, kb, ldi, 0.0f, S, L);
    SoftmaxRows(p, /*rebuild=*/false, mrow, L, sqrt_d, AttentionLogitScale(p, mrow, L), S, cur, P);
    const float* Pd = P;
    if (dropout) {
      float* D = S + LL;
      ApplyProbDropout(p.dropout, b, h, L, P, D);
      Pd = D;
    }
    Sgemm(false, false, L, d, L, 1.0f, Pd, L, vb, ldi, 0.0f, ctx + tok0, ldi);
  }
}

void AttentionBackward(const AttentionDims& dims, const AttentionParams& p, const float* dctx,
                       const float* q, const float* k, const float* v, const int32_t* mask,
                       const float* probs, float* dcarry, bool has_dcarry_in, float* dq, float* dk,
                       float* dv, float* carry) {
  const int B = dims.batch, L = dims.seq, NH = dims.heads, d = dims.head_dim;
  const int64_t ld = dims.ld, LL = static_cast<int64_t>(L) * L;
  const int ldi = static_cast<int>(ld);
  const float sqrt_d = std::sqrt(static_cast<float>(d));
  const float inv_sqrt_d = 1.0f / sqrt_d;
  const bool dropout = p.dropout.p > 0.0f;
  const float drop_scale = dropout ? 1.0f / (1.0f - p.dropout.p) : 1.0f;
  if (p.recompute && p.realformer && !carry) {
    Fail("AttentionBackward: recompute with RealFormer needs the forward's carry");
  }
  ScopedSingleThreadBlas single;
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * NH; ++bh) {
    const int b = bh / NH, h = bh % NH;
    const int64_t tok0 = static_cast<int64_t>(b) * L * ld + static_cast<int64_t>(h) * d;
    const int32_t* mrow = mask ? mask + static_cast<int64_t>(b) * L : nullptr;
    float* dP = ThreadScratch((p.recompute ? 3 : 2) * LL);
    float* Pd = dP + LL;
    const float* P = nullptr;
    if (!p.recompute) {
      P = probs + static_cast<int64_t>(bh) * LL;
    } else {
      // The forward's GEMM and rows again, at the forward's scratch offsets; dP's slot is free
      // until the rows are done.
      float* S = dP;
      float* Pr = dP + 2 * LL;
      Sgemm(false, true, L, L, d, 1.0f, q + tok0, ldi, k + tok0, ldi, 0.0f, S, L);
      float* cur = p.realformer ? carry + static_cast<int64_t>(bh) * LL : nullptr;
      SoftmaxRows(p, /*rebuild=*/true, mrow, L, sqrt_d, AttentionLogitScale(p, mrow, L), S, cur,
                  Pr);
      P = Pr;
    }
    // dv = dropout(P)^T dctx
    const float* Pv = P;
    if (dropout) {
      ApplyProbDropout(p.dropout, b, h, L, P, Pd);
      Pv = Pd;
    }
    Sgemm(true, false, L, d, L, 1.0f, Pv, L, dctx + tok0, ldi, 0.0f, dv + tok0, ldi);
    // d(dropout(P)) = dctx v^T, then through the dropout (keep / (1 - p)). Where P > 0 the
    // regenerated Pd is non-zero exactly when kept; where P == 0 the softmax backward ignores dP.
    Sgemm(false, true, L, L, d, 1.0f, dctx + tok0, ldi, v + tok0, ldi, 0.0f, dP, L);
    if (dropout) {
      for (int64_t i = 0; i < LL; ++i) dP[i] = Pd[i] != 0.0f ? dP[i] * drop_scale : 0.0f;
    }
    const float c = AttentionLogitScale(p, mrow, L);
    float* dS = p.realformer ? dcarry + static_cast<int64_t>(bh) * LL : dP;
    for (int i = 0; i < L; ++i) {
      const float* prow = P + static_cast<int64_t>(i) * L;
      const float* dprow = dP + static_cast<int64_t>(i) * L;
      float dot = 0.0f;
      for (int j = 0; j < L; ++j) dot += prow[j] * dprow[j];
      float* dsrow = dS + static_cast<int64_t>(i) * L;
      for (int j = 0; j < L; ++j) {
        const float g = prow[j] * (dprow[j] - dot) * c;
        dsrow[j] = (p.realformer && has_dcarry_in) ? dsrow[j] + g : g;
      }
    }
    Sgemm(false, false, L, d, L, inv_sqrt_d, dS, L, k + tok0, ldi, 0.0f, dq + tok0, ldi);
    Sgemm(true, false, L, d, L, inv_sqrt_d, dS, L, q + tok0, ldi, 0.0f, dk + tok0, ldi);
  }
}

}  // namespace roformer
