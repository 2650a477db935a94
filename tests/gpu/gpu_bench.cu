// GPU benchmark of the CUDA backend on one device (tests/gpu/run.sh runs it; not a ctest test).
//  1. Ceilings measured first (METHOD.md): device-to-device copy bandwidth (bytes read + written)
//     and an 8192^3 bf16 GEMM, next to the H200 datasheet peaks (989 TFLOP/s dense bf16, 494
//     tf32, 67 fp32).
//  2. GEMMs at BERT-base shapes (h 768, ffn 3072, 12 heads, vocab 30522 padded to 30592) for
//     32768 tokens per step (seq 128 x 256, seq 512 x 64) in bf16, fp32 and tf32.
//  3. Memory-bound ops in bf16 against the measured copy bandwidth (minimal bytes: each input read
//     once, each output written once).
//  4. A composed BERT-base training step: the exact kernel sequence of one step (embeddings, 12
//     post-LN encoder layers with RoPE and RealFormer on/off, masked-only MLM head with the tied
//     decoder and fused cross-entropy, backward, grad norm, AdamW on fp32 master weights with a
//     bf16 copy) on real buffers. It is NOT the model code (model_bench times that): it times
//     what a CUDA step must execute, in tokens/s and MFU = FLOPs/token (anchors §8: 6 N_nonemb +
//     12 L s h + MLM decoder) x tokens/s / 989 TFLOP/s.
// Inputs are non-zero random values; every number is the median of several timed repetitions
// after a warm-up, timed with CUDA events. Prints a short table last.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device_query.h"
#include "kernels/cuda/gemm_cublas.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/philox_device.cuh"

namespace roformer::cuda {
namespace {

constexpr double kPeakBf16 = 989e12, kPeakTf32 = 494e12, kPeakFp32 = 67e12;
constexpr int kHidden = 768, kHeads = 12, kHeadDim = 64, kFfn = 3072, kLayers = 12;
constexpr int kVocab = 30522, kVocabPadded = 30592;  // padded to a multiple of 128

// ---- buffers and random fill ----
template <typename T>
__global__ void FillKernel(T* p, int64_t n, uint64_t seed, float scale) {
  ROFORMER_GRID_STRIDE(i, n) {
    const float u = WordToUniform(WordAt(seed, 77, static_cast<uint64_t>(i)));
    p[i] = FromFloat<T>((u - 0.5f) * 2.0f * scale);
  }
}
__global__ void FillIdsKernel(int32_t* p, int64_t n, uint64_t seed, int32_t modulo) {
  ROFORMER_GRID_STRIDE(i, n) {
    p[i] = static_cast<int32_t>(WordAt(seed, 78, static_cast<uint64_t>(i)) % modulo);
  }
}

std::vector<void*> g_allocs;
template <typename T>
T* Alloc(int64_t n, float scale = 1.0f, uint64_t seed = 1) {
  void* p = nullptr;
  ROFORMER_CUDA_CHECK(cudaMalloc(&p, std::max<int64_t>(n, 1) * sizeof(T)));
  g_allocs.push_back(p);
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, bf16>) {
    if (scale != 0.0f) {
      FillKernel<T><<<GridFor(n, 256), 256>>>(static_cast<T*>(p), n, seed, scale);
      ROFORMER_CUDA_LAUNCH_CHECK();
    }
  }
  return static_cast<T*>(p);
}
int32_t* AllocIds(int64_t n, int32_t modulo, uint64_t seed) {
  int32_t* p = Alloc<int32_t>(n);
  FillIdsKernel<<<GridFor(n, 256), 256>>>(p, n, seed, modulo);
  ROFORMER_CUDA_LAUNCH_CHECK();
  return p;
}
void FreeAll() {
  ROFORMER_CUDA_CHECK(cudaDeviceSynchronize());
  for (void* p : g_allocs) cudaFree(p);
  g_allocs.clear();
}

// Median milliseconds per call of f over `reps` timed batches of `iters` calls, after `warm`.
double TimeMs(cudaStream_t s, const std::function<void()>& f, int warm = 3, int iters = 10,
              int reps = 5) {
  // Alloc's random fills run on the legacy default stream, which does not order against the
  // non-blocking stream `s`: finish them first, or the warm-up (and the first timed batch) can
  // read buffers that are still being filled.
  ROFORMER_CUDA_CHECK(cudaDeviceSynchronize());
  for (int i = 0; i < warm; ++i) f();
  cudaEvent_t a, b;
  ROFORMER_CUDA_CHECK(cudaEventCreate(&a));
  ROFORMER_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    ROFORMER_CUDA_CHECK(cudaEventRecord(a, s));
    for (int i = 0; i < iters; ++i) f();
    ROFORMER_CUDA_CHECK(cudaEventRecord(b, s));
    ROFORMER_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    ROFORMER_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms / iters);
  }
  ROFORMER_CUDA_CHECK(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Row {
  std::string what, type;
  double ms, rate;   // rate: TFLOP/s or GB/s
  std::string unit;  // "TFLOP/s" or "GB/s"
  double pct;        // of the relevant peak
};
std::vector<Row> g_rows;
void Add(const std::string& what, const std::string& type, double ms, double rate,
         const std::string& unit, double pct) {
  g_rows.push_back({what, type, ms, rate, unit, pct});
  std::printf("%-46s %-5s %9.3f ms %9.1f %-7s %5.1f%%\n", what.c_str(), type.c_str(), ms, rate,
              unit.c_str(), pct);
  std::fflush(stdout);
}

double g_copy_gbs = 0;  // measured device copy bandwidth, GB/s

// ---- 1. ceilings ----
void Ceilings(cudaStream_t s) {
  const int64_t bytes = int64_t{2} << 30;
  char* a = Alloc<char>(bytes);
  char* b = Alloc<char>(bytes);
  ROFORMER_CUDA_CHECK(cudaMemset(a, 0x5a, bytes));
  const double ms = TimeMs(
      s, [&] { ROFORMER_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s)); });
  g_copy_gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;
  Add("ceiling: device copy 2 GiB (read+write)", "-", ms, g_copy_gbs, "GB/s", 100.0);
  Blas blas(s);
  const int n = 8192;
  bf16* x = Alloc<bf16>(int64_t{n} * n, 1.0f, 2);
  bf16* y = Alloc<bf16>(int64_t{n} * n, 1.0f, 3);
  bf16* z = Alloc<bf16>(int64_t{n} * n, 0.0f);
  const double gms =
      TimeMs(s, [&] { blas.Gemm<bf16, bf16>(false, true, n, n, n, 1.0f, x, n, y, n, 0.0f, z, n); });
  const double tf = 2.0 * n * n * n / (gms * 1e-3) / 1e12;
  Add("ceiling: bf16 GEMM 8192^3", "bf16", gms, tf, "TFLOP/s", 100.0 * tf * 1e12 / kPeakBf16);
  FreeAll();
}

// ---- 2. GEMMs ----
template <typename T, typename TC = T>
void GemmRow(Blas& blas, const std::string& what, bool ta, bool tb, int m, int n, int k, float beta,
             double peak, const char* type) {
  const int64_t arows = ta ? k : m, acols = ta ? m : k, brows = tb ? n : k, bcols = tb ? k : n;
  T* a = Alloc<T>(arows * acols, 1.0f, 5);
  T* b = Alloc<T>(brows * bcols, 0.05f, 6);
  TC* c = Alloc<TC>(int64_t{m} * n, 0.01f, 7);
  const double ms = TimeMs(blas.stream(), [&] {
    blas.Gemm<T, TC>(ta, tb, m, n, k, 1.0f, a, static_cast<int>(acols), b, static_cast<int>(bcols),
                     beta, c, n);
  });
  const double tf = 2.0 * m * n * k / (ms * 1e-3) / 1e12;
  Add(what, type, ms, tf, "TFLOP/s", 100.0 * tf * 1e12 / peak);
  FreeAll();
}

template <typename T>
void AttentionGemmRow(Blas& blas, int batch, int seq, double peak, const char* type) {
  const int64_t ld = 3 * kHidden;  // q, k, v inside the fused QKV rows
  T* qkv = Alloc<T>(int64_t{batch} * seq * ld, 1.0f, 8);
  float* sc = Alloc<float>(int64_t{batch} * kHeads * seq * seq, 0.0f);
  T* p = Alloc<T>(int64_t{batch} * kHeads * seq * seq, 0.01f, 9);
  T* ctx = Alloc<T>(int64_t{batch} * seq * ld, 0.0f);
  const HeadStrides tok{seq * ld, kHeadDim}, s2{int64_t{kHeads} * seq * seq, int64_t{seq} * seq};
  const int ldi = static_cast<int>(ld);
  const double flops = 2.0 * batch * kHeads * double(seq) * seq * kHeadDim;
  double ms = TimeMs(blas.stream(), [&] {
    blas.BatchedHeadGemm<T, float>(batch, kHeads, false, true, seq, seq, kHeadDim, 1.0f, qkv, ldi,
                                   tok, qkv + kHidden, ldi, tok, 0.0f, sc, seq, s2);
  });
  Add("attn q k^T  b" + std::to_string(batch) + " s" + std::to_string(seq), type, ms,
      flops / (ms * 1e-3) / 1e12, "TFLOP/s", 100.0 * flops / (ms * 1e-3) / peak);
  ms = TimeMs(blas.stream(), [&] {
    blas.BatchedHeadGemm<T, T>(batch, kHeads, false, false, seq, kHeadDim, seq, 1.0f, p, seq, s2,
                               qkv + 2 * kHidden, ldi, tok, 0.0f, ctx, ldi, tok);
  });
  Add("attn P v    b" + std::to_string(batch) + " s" + std::to_string(seq), type, ms,
      flops / (ms * 1e-3) / 1e12, "TFLOP/s", 100.0 * flops / (ms * 1e-3) / peak);
  FreeAll();
}

void Gemms(cudaStream_t s) {
  const int T = 32768, masked = T * 15 / 100;
  struct Shape {
    const char* name;
    bool ta, tb;
    int m, n, k;
  };
  // Row-major: forward y = x W^T; dgrad dx = dy W; wgrad dW += dy^T x.
  const Shape shapes[] = {
      {"fwd QKV    [32768,768]x[768,2304]", false, true, T, 3 * kHidden, kHidden},
      {"fwd attn-o [32768,768]x[768,768]", false, true, T, kHidden, kHidden},
      {"fwd FFN1   [32768,768]x[768,3072]", false, true, T, kFfn, kHidden},
      {"fwd FFN2   [32768,3072]x[3072,768]", false, true, T, kHidden, kFfn},
      {"dgrad FFN1 [32768,3072]x[3072,768]", false, false, T, kHidden, kFfn},
      {"MLM decoder [4915,768]x[768,30592]", false, true, masked, kVocabPadded, kHidden},
  };
  for (int variant = 0; variant < 3; ++variant) {
    BlasOptions o;
    o.allow_tf32 = variant == 2;
    Blas blas(s, o);
    const char* type = variant == 0 ? "bf16" : (variant == 1 ? "fp32" : "tf32");
    const double peak = variant == 0 ? kPeakBf16 : (variant == 1 ? kPeakFp32 : kPeakTf32);
    for (const auto& sh : shapes) {
      if (variant == 0) {
        GemmRow<bf16>(blas, sh.name, sh.ta, sh.tb, sh.m, sh.n, sh.k, 0.0f, peak, type);
      } else {
        GemmRow<float>(blas, sh.name, sh.ta, sh.tb, sh.m, sh.n, sh.k, 0.0f, peak, type);
      }
    }
    if (variant == 0) {
      GemmRow<bf16, float>(blas, "wgrad FFN1 [3072,32768]x[32768,768] +=f32", true, false, kFfn,
                           kHidden, T, 1.0f, peak, type);
      AttentionGemmRow<bf16>(blas, 256, 128, peak, type);
      AttentionGemmRow<bf16>(blas, 64, 512, peak, type);
    } else if (variant == 1) {
      AttentionGemmRow<float>(blas, 256, 128, peak, type);
      AttentionGemmRow<float>(blas, 64, 512, peak, type);
    }
  }
}

// ---- 3. memory-bound ops (bf16) ----
void BwRow(cudaStream_t s, const std::string& what, double bytes, const std::function<void()>& f) {
  const double ms = TimeMs(s, f);
  const double gbs = bytes / (ms * 1e-3) / 1e9;
  Add(what, "bf16", ms, gbs, "GB/s", 100.0 * gbs / g_copy_gbs);
}

void MemoryOps(cudaStream_t s) {
  const int64_t T = 32768, h = kHidden, f = kFfn;
  bf16* x = Alloc<bf16>(T * f, 1.0f, 11);
  bf16* y = Alloc<bf16>(T * f, 0.0f);
  bf16* dy = Alloc<bf16>(T * f, 1.0f, 12);
  float* gamma = Alloc<float>(h, 1.0f, 13);
  float* beta = Alloc<float>(h, 1.0f, 14);
  float* mean = Alloc<float>(T, 0.0f);
  float* rstd = Alloc<float>(T, 0.0f);
  float* dg = Alloc<float>(h, 0.0f);
  float* db = Alloc<float>(h, 0.0f);
  void* ws = Alloc<char>(static_cast<int64_t>(LayerNormBackwardWorkspaceBytes(kHidden)));
  const double e = 2;  // bytes per bf16
  BwRow(s, "layernorm fwd [32768,768]", T * h * 2 * e + T * 8,
        [&] { LayerNormForward<bf16>(x, gamma, beta, y, mean, rstd, T, kHidden, 1e-12f, s); });
  LayerNormForward<bf16>(x, gamma, beta, y, mean, rstd, T, kHidden, 1e-12f, s);
  BwRow(s, "layernorm bwd (dx, dgamma, dbeta) [32768,768]", T * h * 3 * e + T * 8, [&] {
    LayerNormBackward<bf16>(dy, x, mean, rstd, gamma, y, dg, db, T, kHidden, false, ws, s);
  });
  BwRow(s, "gelu fwd [32768,3072]", T * f * 2 * e, [&] { GeluForward<bf16>(x, y, T * f, s); });
  BwRow(s, "gelu bwd [32768,3072]", T * f * 3 * e, [&] { GeluBackward<bf16>(dy, x, y, T * f, s); });
  DropoutSpec sp;
  sp.p = 0.1f;
  sp.key = 1;
  sp.stream = 2;
  sp.cols_global = h;
  BwRow(s, "bias+dropout+residual [32768,768]", T * h * 3 * e,
        [&] { BiasDropoutResidualForward<bf16>(sp, y, gamma, x, T, h, s); });
  float* table = Alloc<float>(512 * kHeadDim, 1.0f, 15);
  BwRow(s, "rope q,k in QKV rows [32768,2x768]", T * 2 * h * 2 * e, [&] {
    RopeForward<bf16>(y, table, 64, 512, kHeads, kHeadDim, 3 * h, s);
    RopeForward<bf16>(y + h, table, 64, 512, kHeads, kHeadDim, 3 * h, s);
  });
  FreeAll();

  for (int seq : {128, 512}) {
    AttentionDims d;
    d.batch = static_cast<int>(T / seq);
    d.seq = seq;
    d.heads = kHeads;
    d.head_dim = kHeadDim;
    d.ld = 3 * h;
    AttentionParams p;
    p.realformer = true;
    p.has_prev = true;
    p.log_n = true;
    const int64_t n = int64_t{d.batch} * kHeads * seq * seq;
    float* sc = Alloc<float>(n, 1.0f, 16);
    float* carry = Alloc<float>(n, 1.0f, 17);
    bf16* probs = Alloc<bf16>(n, 0.0f);
    float* scale = Alloc<float>(d.batch, 0.0f);
    int32_t* mask = AllocIds(int64_t{d.batch} * seq, 2, 18);
    // Bytes: scores read + written (in-place scratch), carry read + written, probs written.
    BwRow(s, "softmax fwd +realformer s" + std::to_string(seq), n * (4 + 4 + 4 + 4 + e),
          [&] { AttentionSoftmaxForward<bf16>(d, p, sc, mask, carry, probs, scale, s); });
    float* dcarry = Alloc<float>(n, 0.01f, 19);
    bf16* ds = Alloc<bf16>(n, 0.0f);
    BwRow(s, "softmax bwd +realformer s" + std::to_string(seq), n * (4 + e + 4 + 4 + e), [&] {
      AttentionSoftmaxBackward<bf16>(d, p, sc, probs, mask, dcarry, true, ds, scale, s);
    });
    FreeAll();
  }

  const int64_t rows = T * 15 / 100;
  bf16* logits = Alloc<bf16>(rows * kVocabPadded, 3.0f, 20);
  int32_t* labels = AllocIds(rows, kVocab, 21);
  auto* stats = Alloc<CrossEntropyDeviceStats>(1);
  void* cews = Alloc<char>(static_cast<int64_t>(CrossEntropyWorkspaceBytes(rows)));
  // The gradient goes to its own buffer: in place, every repetition after the first would run on
  // the previous gradients (near zero) instead of random logits. Same bytes moved either way.
  bf16* dlogits = Alloc<bf16>(rows * kVocabPadded, 0.0f);
  BwRow(s, "fused cross-entropy fwd+bwd [4915,30592]", rows * kVocabPadded * 2 * e, [&] {
    SoftmaxCrossEntropy<bf16>(logits, labels, rows, kVocabPadded, kVocab, dlogits, 1e-4f, stats,
                              cews, s);
  });
  FreeAll();

  const int64_t params = 110'000'000;
  float* w = Alloc<float>(params, 0.05f, 22);
  float* g = Alloc<float>(params, 0.01f, 23);
  float* m = Alloc<float>(params, 0.001f, 24);
  float* v = Alloc<float>(params, 0.0f);
  bf16* w16 = Alloc<bf16>(params, 0.0f);
  const AdamWCoefficients c = MakeAdamWCoefficients(0.9, 0.999, 1e-6, 1e-4, 10, 1.0, 0.5);
  BwRow(s, "adamw 110M fp32 master + bf16 copy", params * (4 * 4 + 3 * 4 + 2),
        [&] { AdamWUpdate(c, 1e-6f, w, g, m, v, params, w16, s); });
  FreeAll();
}

// ---- 4. composed BERT-base training step ----
struct Tensor {
  int64_t offset, numel;
  bool decay;
};

struct StepResult {
  double ms, tokens_per_s, mfu;
};

StepResult ComposedStep(cudaStream_t s, int batch, int seq, bool realformer) {
  const int64_t T = int64_t{batch} * seq, h = kHidden, f = kFfn;
  const int64_t masked = T * 15 / 100;
  Blas blas(s);
  // Parameters: fp32 master, grads, m, v; bf16 copy for the GEMMs (refreshed by AdamW).
  std::vector<Tensor> tensors;
  int64_t total = 0;
  auto declare = [&](int64_t n, bool decay) {
    tensors.push_back({total, n, decay});
    total += (n + 63) / 64 * 64;  // 256-byte aligned views for cuBLASLt
    return tensors.size() - 1;
  };
  struct LayerParams {
    size_t wqkv, bqkv, wo, bo, ln1g, ln1b, w1, b1, w2, b2, ln2g, ln2b;
  };
  const size_t word = declare(int64_t{kVocabPadded} * h, true);
  const size_t type_emb = declare(2 * h, true);
  const size_t eln_g = declare(h, false), eln_b = declare(h, false);
  std::vector<LayerParams> lp(kLayers);
  for (auto& l : lp) {
    l.wqkv = declare(3 * h * h, true);
    l.bqkv = declare(3 * h, false);
    l.wo = declare(h * h, true);
    l.bo = declare(h, false);
    l.ln1g = declare(h, false);
    l.ln1b = declare(h, false);
    l.w1 = declare(f * h, true);
    l.b1 = declare(f, false);
    l.w2 = declare(h * f, true);
    l.b2 = declare(h, false);
    l.ln2g = declare(h, false);
    l.ln2b = declare(h, false);
  }
  const size_t mlm_w = declare(h * h, true), mlm_b = declare(h, false);
  const size_t mlm_lng = declare(h, false), mlm_lnb = declare(h, false);
  const size_t dec_b = declare(kVocabPadded, false);
  float* master = Alloc<float>(total, 0.02f, 31);
  float* grads = Alloc<float>(total, 0.0f);
  float* adam_m = Alloc<float>(total, 0.0f);
  float* adam_v = Alloc<float>(total, 0.0f);
  bf16* w16 = Alloc<bf16>(total, 0.02f, 31);
  auto W = [&](size_t t) { return w16 + tensors[t].offset; };
  auto P = [&](size_t t) { return master + tensors[t].offset; };
  auto G = [&](size_t t) { return grads + tensors[t].offset; };
  std::vector<int64_t> offsets;
  for (const auto& t : tensors) offsets.push_back(t.offset);
  offsets.push_back(tensors.back().offset + tensors.back().numel);
  int64_t* d_offsets = Alloc<int64_t>(static_cast<int64_t>(offsets.size()));
  ROFORMER_CUDA_CHECK(
      cudaMemcpy(d_offsets, offsets.data(), offsets.size() * 8, cudaMemcpyHostToDevice));
  const int nseg = static_cast<int>(tensors.size());
  double* per_seg = Alloc<double>(nseg);
  double* norm2 = Alloc<double>(1);
  int* first_bad = Alloc<int>(1);
  void* gn_ws = Alloc<char>(static_cast<int64_t>(GradNormWorkspaceBytes(nseg)));

  // Data.
  int32_t* ids = AllocIds(T, kVocab, 32);
  int32_t* types = AllocIds(T, 2, 33);
  int32_t* mask = Alloc<int32_t>(T);
  {
    std::vector<int32_t> m(T, 1);  // full-length sequences: the FLOP count assumes all positions
    ROFORMER_CUDA_CHECK(cudaMemcpy(mask, m.data(), T * 4, cudaMemcpyHostToDevice));
  }
  int32_t* mpos = Alloc<int32_t>(masked);
  {
    std::vector<int32_t> pos(masked);  // distinct, spread over the batch (15 % of positions)
    for (int64_t i = 0; i < masked; ++i) pos[i] = static_cast<int32_t>(i * (T / masked));
    ROFORMER_CUDA_CHECK(cudaMemcpy(mpos, pos.data(), masked * 4, cudaMemcpyHostToDevice));
  }
  int32_t* mlabels = AllocIds(masked, kVocab, 34);
  float* rope = Alloc<float>(int64_t{seq} * kHeadDim, 1.0f, 35);

  // Activations saved per layer (bf16) and shared scratch.
  struct Saved {
    bf16 *x, *qkv, *probs, *ctx, *a, *h1, *f1, *g, *f2;
    float *mean1, *rstd1, *mean2, *rstd2;
  };
  const int64_t sc_n = int64_t{batch} * kHeads * seq * seq;
  std::vector<Saved> sv(kLayers + 1);
  for (int l = 0; l <= kLayers; ++l) {
    Saved& v = sv[l];
    v.x = Alloc<bf16>(T * h, 0.0f);
    if (l == kLayers) break;  // the last entry is the encoder output only
    v.qkv = Alloc<bf16>(T * 3 * h, 0.0f);
    v.probs = Alloc<bf16>(sc_n, 0.0f);
    v.ctx = Alloc<bf16>(T * 3 * h, 0.0f);
    v.a = Alloc<bf16>(T * h, 0.0f);
    v.h1 = Alloc<bf16>(T * h, 0.0f);
    v.f1 = Alloc<bf16>(T * f, 0.0f);
    v.g = Alloc<bf16>(T * f, 0.0f);
    v.f2 = Alloc<bf16>(T * h, 0.0f);
    v.mean1 = Alloc<float>(T);
    v.rstd1 = Alloc<float>(T);
    v.mean2 = Alloc<float>(T);
    v.rstd2 = Alloc<float>(T);
  }
  bf16* emb = Alloc<bf16>(T * h, 0.0f);
  float* emean = Alloc<float>(T);
  float* erstd = Alloc<float>(T);
  float* carry = Alloc<float>(sc_n, 0.0f);
  float* dcarry = Alloc<float>(sc_n, 0.0f);
  AttentionDims ad;
  ad.batch = batch;
  ad.seq = seq;
  ad.heads = kHeads;
  ad.head_dim = kHeadDim;
  ad.ld = 3 * h;
  AttentionParams ap;
  ap.realformer = realformer;
  ap.log_n = true;
  ap.dropout.p = 0.1f;
  ap.dropout.key = 99;
  ap.dropout.cols_global = int64_t{kHeads} * seq * seq;
  void* attn_ws = Alloc<char>(static_cast<int64_t>(AttentionWorkspaceBytes<bf16>(ad, ap)));
  void* ln_ws = Alloc<char>(static_cast<int64_t>(LayerNormBackwardWorkspaceBytes(kVocabPadded)));
  void* col_ws = Alloc<char>(static_cast<int64_t>(ColumnSumWorkspaceBytes(kVocabPadded)));
  bf16* d_out = Alloc<bf16>(T * h, 0.0f);
  bf16* d_a = Alloc<bf16>(T * h, 0.0f);
  bf16* d_f = Alloc<bf16>(T * f, 0.0f);
  bf16* d_ctx = Alloc<bf16>(T * 3 * h, 0.0f);
  bf16* d_qkv = Alloc<bf16>(T * 3 * h, 0.0f);
  // MLM head.
  bf16* mx = Alloc<bf16>(masked * h, 0.0f);
  bf16* mh = Alloc<bf16>(masked * h, 0.0f);
  bf16* mg = Alloc<bf16>(masked * h, 0.0f);
  bf16* mln = Alloc<bf16>(masked * h, 0.0f);
  float* mmean = Alloc<float>(masked);
  float* mrstd = Alloc<float>(masked);
  bf16* logits = Alloc<bf16>(masked * kVocabPadded, 0.0f);
  bf16* dm1 = Alloc<bf16>(masked * h, 0.0f);
  bf16* dm2 = Alloc<bf16>(masked * h, 0.0f);
  auto* ce_stats = Alloc<CrossEntropyDeviceStats>(1);
  void* ce_ws = Alloc<char>(static_cast<int64_t>(CrossEntropyWorkspaceBytes(masked)));
  int64_t step = 0;

  auto spec = [&](uint32_t layer, uint32_t op, int64_t cols) {
    DropoutSpec d;
    d.p = 0.1f;
    d.key = 99;
    d.stream = (static_cast<uint64_t>(step) << 32) ^ (layer << 8) ^ op;
    d.cols_global = cols;
    return d;
  };

  auto run_step = [&] {
    ++step;
    ROFORMER_CUDA_CHECK(cudaMemsetAsync(grads, 0, total * 4, s));
    // Embeddings: word + token type, LayerNorm, dropout.
    EmbeddingForward<bf16>(ids, W(word), emb, T, kHidden, 0, kVocabPadded, false, s);
    EmbeddingForward<bf16>(types, W(type_emb), emb, T, kHidden, 0, 2, true, s);
    LayerNormForward<bf16>(emb, P(eln_g), P(eln_b), sv[0].x, emean, erstd, T, kHidden, 1e-12f, s);
    DropoutForward<bf16>(spec(99, 0, h), sv[0].x, sv[0].x, T, h, s);
    // Encoder, post-LN (BERT / RoFormer).
    for (int l = 0; l < kLayers; ++l) {
      Saved& v = sv[l];
      const LayerParams& p = lp[l];
      LinearForward<bf16>(blas, v.x, W(p.wqkv), P(p.bqkv), v.qkv, T, kHidden, 3 * kHidden);
      RopeForward<bf16>(v.qkv, rope, batch, seq, kHeads, kHeadDim, 3 * h, s);
      RopeForward<bf16>(v.qkv + h, rope, batch, seq, kHeads, kHeadDim, 3 * h, s);
      ap.has_prev = l > 0;
      ap.dropout.stream = spec(l, 1, 0).stream;
      AttentionForward<bf16>(blas, ad, ap, v.qkv, v.qkv + h, v.qkv + 2 * h, mask, carry, v.probs,
                             v.ctx, attn_ws);
      blas.Gemm<bf16, bf16>(false, true, static_cast<int>(T), kHidden, kHidden, 1.0f, v.ctx,
                            static_cast<int>(3 * h), W(p.wo), kHidden, 0.0f, v.a, kHidden);
      BiasDropoutResidualForward<bf16>(spec(l, 2, h), v.a, P(p.bo), v.x, T, h, s);
      LayerNormForward<bf16>(v.a, P(p.ln1g), P(p.ln1b), v.h1, v.mean1, v.rstd1, T, kHidden, 1e-12f,
                             s);
      LinearForward<bf16>(blas, v.h1, W(p.w1), P(p.b1), v.f1, T, kHidden, kFfn);
      GeluForward<bf16>(v.f1, v.g, T * f, s);
      LinearForward<bf16>(blas, v.g, W(p.w2), nullptr, v.f2, T, kFfn, kHidden);
      BiasDropoutResidualForward<bf16>(spec(l, 3, h), v.f2, P(p.b2), v.h1, T, h, s);
      LayerNormForward<bf16>(v.f2, P(p.ln2g), P(p.ln2b), sv[l + 1].x, v.mean2, v.rstd2, T, kHidden,
                             1e-12f, s);
    }
    // MLM head on the masked rows only (anchors §9): dense + GELU + LN, tied decoder, fused CE.
    bf16* out = sv[kLayers].x;
    GatherRows<bf16>(out, mpos, mx, masked, kHidden, s);
    LinearForward<bf16>(blas, mx, W(mlm_w), P(mlm_b), mh, masked, kHidden, kHidden);
    GeluForward<bf16>(mh, mg, masked * h, s);
    LayerNormForward<bf16>(mg, P(mlm_lng), P(mlm_lnb), mln, mmean, mrstd, masked, kHidden, 1e-12f,
                           s);
    LinearForward<bf16>(blas, mln, W(word), P(dec_b), logits, masked, kHidden, kVocabPadded);
    SoftmaxCrossEntropy<bf16>(logits, mlabels, masked, kVocabPadded, kVocab, logits,
                              1.0f / static_cast<float>(masked), ce_stats, ce_ws, s);
    // Backward of the head: the decoder gradient lands in the word embedding's fp32 gradient.
    LinearBackward<bf16>(blas, logits, mln, W(word), dm1, G(word), G(dec_b), masked, kHidden,
                         kVocabPadded, false, col_ws);
    LayerNormBackward<bf16>(dm1, mg, mmean, mrstd, P(mlm_lng), dm2, G(mlm_lng), G(mlm_lnb), masked,
                            kHidden, false, ln_ws, s);
    GeluBackward<bf16>(dm2, mh, dm2, masked * h, s);
    LinearBackward<bf16>(blas, dm2, mx, W(mlm_w), dm1, G(mlm_w), G(mlm_b), masked, kHidden, kHidden,
                         false, col_ws);
    ROFORMER_CUDA_CHECK(cudaMemsetAsync(d_out, 0, T * h * 2, s));
    ScatterAddRows<bf16>(dm1, mpos, d_out, masked, kHidden, false, s);
    // Encoder backward.
    for (int l = kLayers - 1; l >= 0; --l) {
      Saved& v = sv[l];
      const LayerParams& p = lp[l];
      LayerNormBackward<bf16>(d_out, v.f2, v.mean2, v.rstd2, P(p.ln2g), d_a, G(p.ln2g), G(p.ln2b),
                              T, kHidden, false, ln_ws, s);
      // f2 = h1 + dropout(g W2^T + b2): d_a (= d f2) is h1's residual gradient as it stands.
      DropoutBackward<bf16>(spec(l, 3, h), d_a, d_out, T, h, s);  // d_out := d(pre-dropout)
      LinearBackward<bf16>(blas, d_out, v.g, W(p.w2), d_f, G(p.w2), G(p.b2), T, kFfn, kHidden,
                           false, col_ws);
      GeluBackward<bf16>(d_f, v.f1, d_f, T * f, s);
      LinearBackward<bf16>(blas, d_f, v.h1, W(p.w1), d_a, G(p.w1), G(p.b1), T, kHidden, kFfn, true,
                           col_ws);  // += onto the residual gradient
      LayerNormBackward<bf16>(d_a, v.a, v.mean1, v.rstd1, P(p.ln1g), d_out, G(p.ln1g), G(p.ln1b), T,
                              kHidden, false, ln_ws, s);
      DropoutBackward<bf16>(spec(l, 2, h), d_out, d_a, T, h, s);
      ColumnSumAccumulate<bf16>(d_a, G(p.bo), T, kHidden, col_ws, s);
      blas.Gemm<bf16, bf16>(false, false, static_cast<int>(T), kHidden, kHidden, 1.0f, d_a, kHidden,
                            W(p.wo), kHidden, 0.0f, d_ctx, static_cast<int>(3 * h));
      blas.Gemm<bf16, float>(true, false, kHidden, kHidden, static_cast<int>(T), 1.0f, d_a, kHidden,
                             v.ctx, static_cast<int>(3 * h), 1.0f, G(p.wo), kHidden);
      ap.has_prev = l > 0;
      ap.dropout.stream = spec(l, 1, 0).stream;
      AttentionBackward<bf16>(blas, ad, ap, d_ctx, v.qkv, v.qkv + h, v.qkv + 2 * h, mask, v.probs,
                              dcarry, l < kLayers - 1, d_qkv, d_qkv + h, d_qkv + 2 * h, attn_ws);
      RopeBackward<bf16>(d_qkv, rope, batch, seq, kHeads, kHeadDim, 3 * h, s);
      RopeBackward<bf16>(d_qkv + h, rope, batch, seq, kHeads, kHeadDim, 3 * h, s);
      LinearBackward<bf16>(blas, d_qkv, v.x, W(p.wqkv), d_out, G(p.wqkv), G(p.bqkv), T, kHidden,
                           3 * kHidden, true, col_ws);  // d_out = d(layer input): residual +=
    }
    DropoutBackward<bf16>(spec(99, 0, h), d_out, d_out, T, h, s);
    LayerNormBackward<bf16>(d_out, emb, emean, erstd, P(eln_g), d_a, G(eln_g), G(eln_b), T, kHidden,
                            false, ln_ws, s);
    EmbeddingBackward<bf16>(ids, d_a, G(word), T, kHidden, 0, kVocabPadded, 0, false, s);
    EmbeddingBackward<bf16>(types, d_a, G(type_emb), T, kHidden, 0, 2, -1, false, s);
    // Optimizer: global norm (fp64, deterministic) read back for the clip, then AdamW.
    GradSumSquares(grads, d_offsets, nseg, per_seg, norm2, first_bad, gn_ws, s);
    double n2 = 0;
    ROFORMER_CUDA_CHECK(cudaMemcpyAsync(&n2, norm2, 8, cudaMemcpyDeviceToHost, s));
    ROFORMER_CUDA_CHECK(cudaStreamSynchronize(s));
    const AdamWCoefficients c =
        MakeAdamWCoefficients(0.9, 0.999, 1e-6, 1e-4, step, 1.0, std::sqrt(n2));
    for (const auto& t : tensors) {
      AdamWUpdate(c, t.decay ? 1e-6f : 0.0f, master + t.offset, grads + t.offset, adam_m + t.offset,
                  adam_v + t.offset, t.numel, w16 + t.offset, s);
    }
  };
  const double ms = TimeMs(s, run_step, 2, 1, 5);
  CrossEntropyDeviceStats st{};
  ROFORMER_CUDA_CHECK(cudaMemcpy(&st, ce_stats, sizeof(st), cudaMemcpyDeviceToHost));
  FreeAll();
  const double n_nonemb = kLayers * (12.0 * h * h + 13.0 * h);
  const double flops_tok = 6.0 * n_nonemb + 12.0 * kLayers * seq * h +
                           6.0 * (double(h) * h + double(h) * kVocabPadded) * 0.15;
  const double tps = T / (ms * 1e-3);
  std::printf("  step b%d s%d realformer %s: %.2f ms, loss/token %.3f (%lld rows), %.0f tok/s\n",
              batch, seq, realformer ? "on" : "off", ms, st.count ? st.loss_sum / st.count : 0.0,
              st.count, tps);
  return {ms, tps, flops_tok * tps / kPeakBf16};
}

int Main(int argc, char** argv) {
  if (DeviceCount() == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n", DescribeDevices().c_str());
    return 77;
  }
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::printf("%s", DescribeDevices().c_str());
  cudaStream_t s;
  ROFORMER_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::printf("%-46s %-5s %12s %17s %6s\n", "what", "type", "time", "rate", "%peak");
  Ceilings(s);
  Gemms(s);
  MemoryOps(s);
  struct StepRow {
    int batch, seq;
    bool rf;
    StepResult r;
  };
  std::vector<StepRow> steps;
  for (auto [b, sq] : {std::pair{256, 128}, std::pair{64, 512}}) {
    for (bool rf : {false, true}) {
      if (quick && rf) continue;
      steps.push_back({b, sq, rf, ComposedStep(s, b, sq, rf)});
    }
  }
  std::printf("\n==== GPU benchmark summary ====\n");
  std::printf("ceilings: copy %.0f GB/s measured; bf16 GEMM peak 989 TFLOP/s (datasheet)\n",
              g_copy_gbs);
  std::printf("%-46s %-5s %10s %10s %7s\n", "kernel", "type", "ms", "rate", "%peak");
  for (const auto& r : g_rows)
    std::printf("%-46s %-5s %10.3f %7.1f %-7s %5.1f\n", r.what.c_str(), r.type.c_str(), r.ms,
                r.rate, r.unit.c_str(), r.pct);
  std::printf("\ncomposed BERT-base training step (bf16, fp32 master, 32768 tokens/step):\n");
  std::printf("%6s %6s %10s %10s %12s %7s\n", "seq", "batch", "realformer", "ms/step", "tokens/s",
              "MFU");
  for (const auto& r : steps)
    std::printf("%6d %6d %10s %10.2f %12.0f %6.1f%%\n", r.seq, r.batch, r.rf ? "on" : "off", r.r.ms,
                r.r.tokens_per_s, 100.0 * r.r.mfu);
  cudaStreamDestroy(s);
  return 0;
}

}  // namespace
}  // namespace roformer::cuda

int main(int argc, char** argv) { return roformer::cuda::Main(argc, argv); }
