// GEMMs of the CUDA backend through cuBLASLt (single GEMMs) and cuBLAS (strided-batched
// attention GEMMs), with kernels/cpu/gemm.h's row-major contract: C[m, n] = alpha op(A) op(B) +
// beta C, lda/ldb/ldc the row strides as stored.
//
// Types (A and B always share one): fp32 x fp32 -> fp32 (full fp32 unless allow_tf32), bf16 x bf16
// -> bf16, and bf16 x bf16 -> fp32 (Megatron's wgrad into an fp32 main_grad with beta = 1). Every
// product accumulates in fp32 (CUBLAS_COMPUTE_32F).
//
// Deterministic mode: cuBLAS atomics are disallowed and cuBLASLt is restricted to algorithms
// without split-K reduction (CUBLASLT_REDUCTION_SCHEME_NONE), so a GEMM gives bit-identical
// results run to run on the same GPU model and library version (NVIDIA documents reproducibility
// only under those conditions, and only with one stream per handle/workspace: a Blas serves one
// stream at a time).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>

#include "kernels/cpu/gemm.h"  // HeadStrides

namespace roformer::cuda {

struct BlasOptions {
  bool deterministic = false;
  bool allow_tf32 = false;                    // fp32 GEMMs on the tensor cores (~1e-3 rel.)
  size_t workspace_bytes = size_t{32} << 20;  // cuBLASLt workspace (32 MiB is what Hopper wants)
};

class Blas {
 public:
  explicit Blas(cudaStream_t stream, const BlasOptions& opt = {});
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  cudaStream_t stream() const { return stream_; }
  void set_stream(cudaStream_t s);
  const BlasOptions& options() const { return opt_; }

  // TA in {float, __nv_bfloat16}; TC in {TA, float}.
  template <typename TA, typename TC>
  void Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const TA* a, int lda,
            const TA* b, int ldb, float beta, TC* c, int ldc);

  // kernels/cpu/gemm.h's BatchedHeadSgemm: X_bh = X + b * xs.batch + h * xs.head (elements).
  // Runs as few cuBLAS strided-batched calls as the strides allow (one when batch strides equal
  // heads * head strides for all three, else a loop over the smaller of batch and heads).
  template <typename TA, typename TC>
  void BatchedHeadGemm(int batch, int heads, bool trans_a, bool trans_b, int m, int n, int k,
                       float alpha, const TA* a, int lda, HeadStrides as, const TA* b, int ldb,
                       HeadStrides bs, float beta, TC* c, int ldc, HeadStrides cs);

 private:
  struct AlgoKey {
    int ta, tb, m, n, k, lda, ldb, ldc, type_a, type_c, align;
    bool operator<(const AlgoKey& o) const {
      return std::tie(ta, tb, m, n, k, lda, ldb, ldc, type_a, type_c, align) <
             std::tie(o.ta, o.tb, o.m, o.n, o.k, o.lda, o.ldb, o.ldc, o.type_a, o.type_c, o.align);
    }
  };
  struct Algo {
    bool ok = false;
    cublasLtMatmulAlgo_t algo;
  };
  void GemmImpl(bool ta, bool tb, int m, int n, int k, float alpha, const void* a, int lda,
                const void* b, int ldb, float beta, void* c, int ldc, cudaDataType_t type_a,
                cudaDataType_t type_c);
  cublasComputeType_t Compute(cudaDataType_t type_a) const;

  cudaStream_t stream_;
  BlasOptions opt_;
  cublasHandle_t handle_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  std::map<AlgoKey, Algo> algos_;
};

}  // namespace roformer::cuda
