#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "runtime/error.h"

namespace roformer {

namespace {
std::atomic<int> g_backend{-1};  // -1: not yet read from ROFORMER_GEMM

GemmBackend BackendFromEnvironment() {
  const char* env = std::getenv("ROFORMER_GEMM");
  const std::string v = env ? env : "";
  if (v.empty()) return OneDnnAvailable() ? GemmBackend::kOneDnn : GemmBackend::kOpenBlas;
  if (v == "openblas") return GemmBackend::kOpenBlas;
  if (v == "reference") return GemmBackend::kReference;
  if (v == "onednn") {
    if (!OneDnnAvailable())
      Fail("ROFORMER_GEMM=onednn: this build has no oneDNN (install libdnnl-dev, e.g. ",
           "launch/install-deps.sh, and re-run cmake)");
    return GemmBackend::kOneDnn;
  }
  Fail("ROFORMER_GEMM='", v,
       "': expected 'onednn', 'openblas' or 'reference' (or unset for the default)");
}

void ReferenceSgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                    int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int p = 0; p < k; ++p) {
        const float av =
            trans_a ? a[static_cast<int64_t>(p) * lda + i] : a[static_cast<int64_t>(i) * lda + p];
        const float bv =
            trans_b ? b[static_cast<int64_t>(j) * ldb + p] : b[static_cast<int64_t>(p) * ldb + j];
        acc += av * bv;
      }
      float& cv = c[static_cast<int64_t>(i) * ldc + j];
      cv = beta == 0.0f ? alpha * acc : alpha * acc + beta * cv;
    }
  }
}
}  // namespace

GemmBackend CurrentGemmBackend() {
  int b = g_backend.load(std::memory_order_relaxed);
  if (b < 0) {
    b = static_cast<int>(BackendFromEnvironment());
    g_backend.store(b, std::memory_order_relaxed);
  }
  return static_cast<GemmBackend>(b);
}

void SetGemmBackend(GemmBackend backend) {
  if (backend == GemmBackend::kOneDnn && !OneDnnAvailable())
    Fail("the oneDNN GEMM backend was requested but this build has no oneDNN");
  g_backend.store(static_cast<int>(backend), std::memory_order_relaxed);
}

const char* GemmBackendName(GemmBackend backend) {
  switch (backend) {
    case GemmBackend::kOneDnn:
      return "onednn";
    case GemmBackend::kReference:
      return "reference";
    default:
      return "openblas";
  }
}

void Sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    // BLAS would still scale C by beta; keep that contract explicitly.
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) c[static_cast<int64_t>(i) * ldc + j] *= beta;
    return;
  }
  if (CurrentGemmBackend() == GemmBackend::kReference) {
    ReferenceSgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  if (omp_in_parallel()) {  // a per-head GEMM inside the caller's parallel loop (always fp32)
    // oneDNN runs a primitive on the calling thread inside a parallel region, and its primitive
    // cache is per thread (gemm_onednn.cc), so the per-head GEMMs can use it too.
    if (CurrentGemmBackend() == GemmBackend::kOneDnn) {
      OneDnnSgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (CurrentGemmPrecision() == GemmPrecision::kBf16) {
    Bf16Gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const double flops = 2.0 * m * n * k;
  if (flops >= 4e6 && CurrentGemmBackend() == GemmBackend::kOneDnn) {
    OneDnnSgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // One thread pool for everything: OpenMP splits C into slabs and each slab is a single-threaded
  // BLAS call. Letting OpenBLAS's own pthread pool run the GEMMs while OpenMP runs the elementwise
  // kernels makes the two pools spin against each other (2x slower steps measured on 2 cores).
  const int threads = flops < 4e6 ? 1 : omp_get_max_threads();
  ScopedSingleThreadBlas single;
  if (threads <= 1) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const bool split_rows = m >= n;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    if (split_rows) {
      const int r0 = static_cast<int>(static_cast<int64_t>(m) * t / nt);
      const int r1 = static_cast<int>(static_cast<int64_t>(m) * (t + 1) / nt);
      if (r1 > r0) {
        // Rows r0.. of op(A): row offset when A is stored as is, column offset when transposed.
        const float* as = trans_a ? a + r0 : a + static_cast<int64_t>(r0) * lda;
        cblas_sgemm(CblasRowMajor, ta, tb, r1 - r0, n, k, alpha, as, lda, b, ldb, beta,
                    c + static_cast<int64_t>(r0) * ldc, ldc);
      }
    } else {
      const int c0 = static_cast<int>(static_cast<int64_t>(n) * t / nt);
      const int c1 = static_cast<int>(static_cast<int64_t>(n) * (t + 1) / nt);
      if (c1 > c0) {
        const float* bs = trans_b ? b + static_cast<int64_t>(c0) * ldb : b + c0;
        cblas_sgemm(CblasRowMajor, ta, tb, m, c1 - c0, k, alpha, a, lda, bs, ldb, beta, c + c0,
                    ldc);
      }
    }
  }
}

void BatchedHeadSgemm(int batch, int heads, bool trans_a, bool trans_b, int m, int n, int k,
                      float alpha, const float* a, int lda, HeadStrides as, const float* b, int ldb,
                      HeadStrides bs, float beta, float* c, int ldc, HeadStrides cs) {
  ScopedSingleThreadBlas single;
  const int total = batch * heads;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < total; ++i) {
    const int bi = i / heads, h = i % heads;
    Sgemm(trans_a, trans_b, m, n, k, alpha, a + bi * as.batch + h * as.head, lda,
          b + bi * bs.batch + h * bs.head, ldb, beta, c + bi * cs.batch + h * cs.head, ldc);
  }
}

ScopedSingleThreadBlas::ScopedSingleThreadBlas() : saved_(openblas_get_num_threads()) {
  if (saved_ != 1) openblas_set_num_threads(1);
}
ScopedSingleThreadBlas::~ScopedSingleThreadBlas() {
  if (saved_ != 1) openblas_set_num_threads(saved_);
}

}  // namespace roformer
