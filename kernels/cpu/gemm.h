// Row-major single-precision GEMM wrappers: oneDNN matmul (when the build has it) or OpenBLAS
// cblas_sgemm for the top-level GEMMs, OpenBLAS for the small per-head ones.
//
// Activations are row-major [rows, features]; weights use HF's Linear layout [out, in]. Per-head
// attention GEMMs work on strided views: Q/K/V stay in [B, L, heads, d] (= [B*L, H]) so a head's
// matrix is [L, d] with leading dimension H and no transpose copies are needed.
#pragma once

#include <cstdint>
#include <string>

namespace roformer {

// C[m, n] = alpha * op(A) * op(B) + beta * C, row-major; op(A) is [m, k], op(B) is [k, n].
// lda/ldb/ldc are the row strides of A, B, C as stored. Threads: OpenMP splits C into slabs, each a
// single-threaded BLAS call (one thread pool for GEMMs and elementwise kernels); called inside an
// OpenMP parallel region it runs on the calling thread.
void Sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc);

// ---- fp32 backend of the top-level GEMMs ----
// Process-wide. Initialised from the environment variable ROFORMER_GEMM ("onednn" | "openblas";
// unset = oneDNN when this build has it, else OpenBLAS); an unknown value or "onednn" without
// oneDNN is an Error naming the variable. Top-level GEMMs under 4 MFLOP use single-threaded
// OpenBLAS. GEMMs issued inside an OpenMP parallel region (the per-head attention GEMMs) run on the
// calling thread with the chosen backend (oneDNN: a per-thread primitive cache; ~4 % faster small-
// shape steps than OpenBLAS there, docs/benchmarks.md); they are always fp32.
// kReference ("reference", for tests) computes every C element as the same sequential-k fp32 dot
// product, for ALL GEMMs: an output does not depend on where its row/column sits in the matrix
// (BLAS kernels round a column differently by its position in the register block), so identical
// input columns give bit-identical output columns. Slow; the growth symmetry test uses it.
enum class GemmBackend { kOpenBlas, kOneDnn, kReference };
GemmBackend CurrentGemmBackend();
void SetGemmBackend(GemmBackend backend);  // Error when oneDNN is requested but not built in
const char* GemmBackendName(GemmBackend backend);
bool OneDnnAvailable();
// The oneDNN fp32 matmul itself (Sgemm's contract, k > 0); LOG(FATAL)s without oneDNN.
void OneDnnSgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc);

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

// ---- bf16 GEMMs (model.precision = "bf16") ----
// Under kBf16, every top-level Sgemm (one issued outside an OpenMP parallel region: the linear
// layers, the MLM decoder, the heads) runs as a oneDNN matmul with A and B rounded to bf16
// (round-to-nearest-even) and fp32 accumulation into the fp32 C (alpha, beta as in Sgemm). The
// per-(batch, head) attention GEMMs, issued inside the attention kernels' parallel loops, stay
// fp32: they are ~3 % of the FLOPs at L=128 and too small for the bf16 kernels to pay for the
// operand conversion. The setting is process-wide (the OpenMP workers see it), so the model sets it
// for the duration of a forward/backward with ScopedGemmPrecision.
enum class GemmPrecision { kFp32, kBf16 };
GemmPrecision CurrentGemmPrecision();
class ScopedGemmPrecision {
 public:
  explicit ScopedGemmPrecision(GemmPrecision p);
  ~ScopedGemmPrecision();
  ScopedGemmPrecision(const ScopedGemmPrecision&) = delete;
  ScopedGemmPrecision& operator=(const ScopedGemmPrecision&) = delete;

 private:
  GemmPrecision saved_;
};

// "" when bf16 GEMMs can run in this process; otherwise why not (this build has no oneDNN, or the
// CPU has neither AVX512-BF16 nor AMX-BF16).
std::string Bf16GemmUnavailableReason();
// Short description of the bf16 hardware path in use ("AMX-BF16", "AVX512-BF16"), "" if none.
std::string Bf16GemmIsa();

// The bf16 GEMM itself (same contract as Sgemm); CHECK-fails when Bf16GemmUnavailableReason() is
// not empty. Tests call it directly; the model goes through Sgemm + ScopedGemmPrecision.
void Bf16Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
              const float* b, int ldb, float beta, float* c, int ldc);

// x rounded to the nearest bf16 (ties to even), returned as fp32: the operand a bf16 GEMM sees.
float RoundToBf16(float x);

}  // namespace roformer
