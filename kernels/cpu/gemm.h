// Row-major single-precision GEMM wrappers over OpenBLAS cblas_sgemm.
//
// Activations are row-major [rows, features]; weights use HF's Linear layout [out, in]. Per-head
// attention GEMMs work on strided views: Q/K/V stay in [B, L, heads, d] (= [B*L, H]) so a head's
// matrix is [L, d] with leading dimension H and no transpose copies are needed.
#pragma once

#include <cstdint>

namespace roformer {

// C[m, n] = alpha * op(A) * op(B) + beta * C, row-major; op(A) is [m, k], op(B) is [k, n].
// lda/ldb/ldc are the row strides of A, B, C as stored. Threads: OpenMP splits C into slabs, each a
// single-threaded BLAS call (one thread pool for GEMMs and elementwise kernels); called inside an
// OpenMP parallel region it runs on the calling thread.
void Sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc);

// Strided batch over (batch b, head h): X_bh = X + b * x_batch_stride + h * x_head_stride for
// X in {A, B, C}; each C_bh = alpha * op(A_bh) op(B_bh) + beta * C_bh. Parallel over (b, h) with
// OpenMP, each GEMM single-threaded inside BLAS.
struct HeadStrides {
  int64_t batch = 0, head = 0;
};
void BatchedHeadSgemm(int batch, int heads, bool trans_a, bool trans_b, int m, int n, int k,
                      float alpha, const float* a, int lda, HeadStrides as, const float* b, int ldb,
                      HeadStrides bs, float beta, float* c, int ldc, HeadStrides cs);

// Holds OpenBLAS at one thread while OpenMP threads issue independent GEMMs (OpenBLAS's
// pthread pool would otherwise oversubscribe or serialise concurrent callers); restores on exit.
class ScopedSingleThreadBlas {
 public:
  ScopedSingleThreadBlas();
  ~ScopedSingleThreadBlas();
  ScopedSingleThreadBlas(const ScopedSingleThreadBlas&) = delete;
  ScopedSingleThreadBlas& operator=(const ScopedSingleThreadBlas&) = delete;

 private:
  int saved_;
};

}  // namespace roformer
