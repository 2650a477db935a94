// Attention core of kernels/cpu/attention.h on the GPU: the four per-head GEMMs through cuBLAS
// strided-batched calls (gemm_cublas.h) around a fused row kernel that does, per score row,
//   forward:  s = S / sqrt(d) (+ carry, RealFormer; carry := s), logit = s * c_b, masked softmax
//   backward: dS = P (dP - <P, dP>) * c_b (+ dcarry_in; dcarry := dS, RealFormer)
// with c_b = mean_div * (log_n ? log(max(n_b, 16)) / log(512) : 1) computed per batch row from
// the mask exactly as AttentionLogitScale (in fp64, then rounded). Attention dropout reuses
// dropout.cu on the [B, heads * L * L] view, which is the CPU's logical view, so masks are equal.
//
// Memory: scores are materialised (RealFormer needs the pre-softmax sum anyway, anchors §9): the
// fp32 scratch [B, heads, L, L] is reused by forward and backward; probs [B, heads, L, L] (T) is
// what each layer must keep for its backward; the carry and dcarry are one running fp32 buffer
// each (the backward never needs an earlier layer's carry). docs/cuda.md has the formula.
//
// With p.recompute (model.attention_recompute) no layer keeps probs: they live in the workspace
// and the backward first redoes q k^T and the forward row kernel (rebuild mode) on them, which is
// the forward's arithmetic, so P is bit-identical whenever its input is. For RealFormer that input
// is cur_l, which the backward of layer l+1 has rebuilt in the carry as cur_{l+1} - S_{l+1}: exact
// up to fp32 rounding of the subtraction (kernels/cpu/attention.h says more).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm_cublas.h"
#include "kernels/cuda/ops.h"

namespace roformer::cuda {
namespace {

constexpr int kRowThreads = 128;

size_t Align256(size_t n) { return (n + 255) / 256 * 256; }

// c_b of kernels/cpu/attention.cc's AttentionLogitScale, one thread per batch row.
__global__ void LogitScaleKernel(const int32_t* mask, int batch, int seq, float mean_div,
                                 bool log_n, float* out) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  float c = mean_div;
  if (log_n) {
    int n = seq;
    if (mask) {
      n = 0;
      for (int j = 0; j < seq; ++j) n += mask[static_cast<int64_t>(b) * seq + j] != 0;
    }
    n = n < 16 ? 16 : n;
    c = static_cast<float>(static_cast<double>(mean_div) *
                           (log(static_cast<double>(n)) / log(512.0)));
  }
  out[b] = c;
}

void LogitScale(const AttentionDims& dims, const AttentionParams& p, const int32_t* mask,
                float* out, cudaStream_t stream) {
  LogitScaleKernel<<<(dims.batch + 127) / 128, 128, 0, stream>>>(mask, dims.batch, dims.seq,
                                                                 p.mean_div, p.log_n, out);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

// One block per score row (b, h, i). rebuild (the recomputing backward): the carry holds this
// layer's cur already; it is read instead of formed, and cur - S / sqrt(d), the previous layer's
// cur, is left in its place. The same kernel in both modes keeps the recomputed P identical.
template <typename T>
__global__ void SoftmaxForwardKernel(float* scores, float* carry, T* probs, const int32_t* mask,
                                     const float* scale, int heads, int seq, float sqrt_d,
                                     bool realformer, bool has_prev, bool rebuild) {
  __shared__ float scratch[kWarp];
  const int64_t row = blockIdx.x;
  const int b = static_cast<int>(row / (static_cast<int64_t>(heads) * seq));
  const float c = scale[b];
  const int32_t* mrow = mask ? mask + static_cast<int64_t>(b) * seq : nullptr;
  float* srow = scores + row * seq;
  float* crow = realformer ? carry + row * seq : nullptr;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < seq; j += blockDim.x) {
    const float raw = srow[j] / sqrt_d;  // divided after the GEMM, as the CPU and HF
    float s = raw;
    if (crow && has_prev) {
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
  mx = BlockMax(mx, scratch);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < seq; j += blockDim.x) {
    // Padded keys get probability exactly 0 (never exp of anything).
    const float e = (!mrow || mrow[j]) ? expf(srow[j] - mx) : 0.0f;
    srow[j] = e;
    sum += e;
  }
  sum = BlockSum(sum, scratch);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  T* prow = probs + row * seq;
  for (int j = threadIdx.x; j < seq; j += blockDim.x) prow[j] = FromFloat<T>(srow[j] * inv);
}

template <typename T>
__global__ void SoftmaxBackwardKernel(float* dp, const T* probs, const float* scale, float* dcarry,
                                      bool realformer, bool has_dcarry_in, T* ds_out, int heads,
                                      int seq) {
  __shared__ float scratch[kWarp];
  const int64_t row = blockIdx.x;
  const int b = static_cast<int>(row / (static_cast<int64_t>(heads) * seq));
  const float c = scale[b];
  const T* prow = probs + row * seq;
  float* dprow = dp + row * seq;
  float dot = 0.0f;
  for (int j = threadIdx.x; j < seq; j += blockDim.x) dot += ToFloat(prow[j]) * dprow[j];
  dot = BlockSum(dot, scratch);
  float* dst = realformer ? dcarry + row * seq : dprow;
  const bool add = realformer && has_dcarry_in;
  for (int j = threadIdx.x; j < seq; j += blockDim.x) {
    const float g = ToFloat(prow[j]) * (dprow[j] - dot) * c;
    const float v = add ? dst[j] + g : g;
    dst[j] = v;
    if (ds_out) ds_out[row * seq + j] = FromFloat<T>(v);
  }
}

struct Layout {
  float* scores;
  float* scale;
  void* probs;    // T [B, heads, L, L], with p.recompute (then no layer keeps its own)
  void* dropped;  // T [B, heads, L, L], when dropout is on
  void* ds;       // T [B, heads, L, L], when T is not float
};

template <typename T>
Layout Carve(const AttentionDims& dims, const AttentionParams& p, void* workspace) {
  const size_t n = static_cast<size_t>(dims.batch) * dims.heads * dims.seq * dims.seq;
  char* w = static_cast<char*>(workspace);
  Layout l{};
  l.scores = reinterpret_cast<float*>(w);
  w += Align256(n * sizeof(float));
  l.scale = reinterpret_cast<float*>(w);
  w += Align256(dims.batch * sizeof(float));
  if (p.recompute) {
    l.probs = w;
    w += Align256(n * sizeof(T));
  }
  if (p.dropout.p > 0.0f) {
    l.dropped = w;
    w += Align256(n * sizeof(T));
  }
  if (!std::is_same_v<T, float>) l.ds = w;
  return l;
}

}  // namespace

template <typename T>
size_t AttentionWorkspaceBytes(const AttentionDims& dims, const AttentionParams& p) {
  const size_t n = static_cast<size_t>(dims.batch) * dims.heads * dims.seq * dims.seq;
  size_t bytes = Align256(n * sizeof(float)) + Align256(dims.batch * sizeof(float));
  if (p.recompute) bytes += Align256(n * sizeof(T));
  if (p.dropout.p > 0.0f) bytes += Align256(n * sizeof(T));
  if (!std::is_same_v<T, float>) bytes += Align256(n * sizeof(T));
  return bytes;
}

namespace {

template <typename T>
void SoftmaxRows(const AttentionDims& dims, const AttentionParams& p, bool rebuild, float* scores,
                 const int32_t* mask, float* carry, T* probs, float* scale_ws,
                 cudaStream_t stream) {
  const int64_t rows = static_cast<int64_t>(dims.batch) * dims.heads * dims.seq;
  if (rows <= 0) return;
  LogitScale(dims, p, mask, scale_ws, stream);
  const float sqrt_d = std::sqrt(static_cast<float>(dims.head_dim));
  SoftmaxForwardKernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(
      scores, carry, probs, mask, scale_ws, dims.heads, dims.seq, sqrt_d, p.realformer, p.has_prev,
      rebuild);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

}  // namespace

template <typename T>
void AttentionSoftmaxForward(const AttentionDims& dims, const AttentionParams& p, float* scores,
                             const int32_t* mask, float* carry, T* probs, float* scale_ws,
                             cudaStream_t stream) {
  SoftmaxRows<T>(dims, p, /*rebuild=*/false, scores, mask, carry, probs, scale_ws, stream);
}

template <typename T>
void AttentionSoftmaxBackward(const AttentionDims& dims, const AttentionParams& p, float* dp,
                              const T* probs, const int32_t* mask, float* dcarry,
                              bool has_dcarry_in, T* ds_out, float* scale_ws, cudaStream_t stream) {
  const int64_t rows = static_cast<int64_t>(dims.batch) * dims.heads * dims.seq;
  if (rows <= 0) return;
  LogitScale(dims, p, mask, scale_ws, stream);
  SoftmaxBackwardKernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(
      dp, probs, scale_ws, dcarry, p.realformer, has_dcarry_in, ds_out, dims.heads, dims.seq);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

template <typename T>
void AttentionForward(Blas& blas, const AttentionDims& dims, const AttentionParams& p, const T* q,
                      const T* k, const T* v, const int32_t* mask, float* carry, T* probs, T* ctx,
                      void* workspace) {
  const int B = dims.batch, L = dims.seq, NH = dims.heads, d = dims.head_dim;
  const int64_t ld = dims.ld, LL = static_cast<int64_t>(L) * L;
  const int ldi = static_cast<int>(ld);
  const HeadStrides tok{L * ld, d};   // q, k, v, ctx: [B, L, heads, d]
  const HeadStrides sc{NH * LL, LL};  // scores, probs: [B, heads, L, L]
  const Layout w = Carve<T>(dims, p, workspace);
  cudaStream_t stream = blas.stream();
  if (p.recompute) probs = static_cast<T*>(w.probs);
  blas.BatchedHeadGemm<T, float>(B, NH, false, true, L, L, d, 1.0f, q, ldi, tok, k, ldi, tok, 0.0f,
                                 w.scores, L, sc);
  SoftmaxRows<T>(dims, p, /*rebuild=*/false, w.scores, mask, carry, probs, w.scale, stream);
  const T* pv = probs;
  if (p.dropout.p > 0.0f) {
    T* dropped = static_cast<T*>(w.dropped);
    DropoutForward<T>(p.dropout, probs, dropped, B, NH * LL, stream);
    pv = dropped;
  }
  blas.BatchedHeadGemm<T, T>(B, NH, false, false, L, d, L, 1.0f, pv, L, sc, v, ldi, tok, 0.0f, ctx,
                             ldi, tok);
}

template <typename T>
void AttentionBackward(Blas& blas, const AttentionDims& dims, const AttentionParams& p,
                       const T* dctx, const T* q, const T* k, const T* v, const int32_t* mask,
                       const T* probs, float* dcarry, bool has_dcarry_in, T* dq, T* dk, T* dv,
                       void* workspace, float* carry) {
  const int B = dims.batch, L = dims.seq, NH = dims.heads, d = dims.head_dim;
  const int64_t ld = dims.ld, LL = static_cast<int64_t>(L) * L;
  const int ldi = static_cast<int>(ld);
  const HeadStrides tok{L * ld, d};
  const HeadStrides sc{NH * LL, LL};
  const Layout w = Carve<T>(dims, p, workspace);
  cudaStream_t stream = blas.stream();
  const bool dropout = p.dropout.p > 0.0f;
  if (p.recompute) {
    if (p.realformer && !carry) {
      std::fprintf(stderr, "AttentionBackward: recompute with RealFormer needs the carry\n");
      std::abort();
    }
    // The forward's GEMM and row kernel again; the scores scratch is free until dP below.
    T* recomputed = static_cast<T*>(w.probs);
    blas.BatchedHeadGemm<T, float>(B, NH, false, true, L, L, d, 1.0f, q, ldi, tok, k, ldi, tok,
                                   0.0f, w.scores, L, sc);
    SoftmaxRows<T>(dims, p, /*rebuild=*/true, w.scores, mask, carry, recomputed, w.scale, stream);
    probs = recomputed;
  }
  // dv = dropout(P)^T dctx, the dropped probabilities regenerated from the counters.
  const T* pv = probs;
  if (dropout) {
    T* dropped = static_cast<T*>(w.dropped);
    DropoutForward<T>(p.dropout, probs, dropped, B, NH * LL, stream);
    pv = dropped;
  }
  blas.BatchedHeadGemm<T, T>(B, NH, true, false, L, d, L, 1.0f, pv, L, sc, dctx, ldi, tok, 0.0f, dv,
                             ldi, tok);
  // d(dropout(P)) = dctx v^T (fp32), then back through the dropout: keep / (1 - p).
  float* dp = w.scores;
  blas.BatchedHeadGemm<T, float>(B, NH, false, true, L, L, d, 1.0f, dctx, ldi, tok, v, ldi, tok,
                                 0.0f, dp, L, sc);
  if (dropout) DropoutBackward<float>(p.dropout, dp, dp, B, NH * LL, stream);
  T* ds_copy = std::is_same_v<T, float> ? nullptr : static_cast<T*>(w.ds);
  AttentionSoftmaxBackward<T>(dims, p, dp, probs, mask, dcarry, has_dcarry_in, ds_copy, w.scale,
                              stream);
  const T* ds;
  if constexpr (std::is_same_v<T, float>) {
    ds = p.realformer ? dcarry : dp;
  } else {
    ds = ds_copy;
  }
  const float inv_sqrt_d = 1.0f / std::sqrt(static_cast<float>(d));
  blas.BatchedHeadGemm<T, T>(B, NH, false, false, L, d, L, inv_sqrt_d, ds, L, sc, k, ldi, tok, 0.0f,
                             dq, ldi, tok);
  blas.BatchedHeadGemm<T, T>(B, NH, true, false, L, d, L, inv_sqrt_d, ds, L, sc, q, ldi, tok, 0.0f,
                             dk, ldi, tok);
}

#define ROFORMER_INSTANTIATE(T)                                                                    \
  template size_t AttentionWorkspaceBytes<T>(const AttentionDims&, const AttentionParams&);        \
  template void AttentionSoftmaxForward<T>(const AttentionDims&, const AttentionParams&, float*,   \
                                           const int32_t*, float*, T*, float*, cudaStream_t);      \
  template void AttentionSoftmaxBackward<T>(const AttentionDims&, const AttentionParams&, float*,  \
                                            const T*, const int32_t*, float*, bool, T*, float*,    \
                                            cudaStream_t);                                         \
  template void AttentionForward<T>(Blas&, const AttentionDims&, const AttentionParams&, const T*, \
                                    const T*, const T*, const int32_t*, float*, T*, T*, void*);    \
  template void AttentionBackward<T>(Blas&, const AttentionDims&, const AttentionParams&,          \
                                     const T*, const T*, const T*, const T*, const int32_t*,       \
                                     const T*, float*, bool, T*, T*, T*, void*, float*);
ROFORMER_INSTANTIATE(float)
ROFORMER_INSTANTIATE(bf16)
#undef ROFORMER_INSTANTIATE

}  // namespace roformer::cuda
