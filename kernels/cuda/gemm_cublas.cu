#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm_cublas.h"
#include "kernels/cuda/ops.h"

namespace roformer::cuda {
namespace {

void CheckCublas(cublasStatus_t st, const char* what, const char* file, int line) {
  if (st == CUBLAS_STATUS_SUCCESS) return;
  std::fprintf(stderr, "cuBLAS error at %s:%d: %s: %s\n", file, line, what,
               cublasGetStatusString(st));
  std::abort();
}
#define ROFORMER_CUBLAS_CHECK(expr) CheckCublas((expr), #expr, __FILE__, __LINE__)

template <typename T>
constexpr cudaDataType_t CudaType() {
  if constexpr (std::is_same_v<T, float>)
    return CUDA_R_32F;
  else
    return CUDA_R_16BF;
}

// Largest power of two <= 256 dividing every address: cuBLASLt's heuristic must be told the
// alignment the pointers really have, or it may pick a kernel that then refuses them.
int Alignment(const void* a, const void* b, const void* c) {
  const uintptr_t bits = reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b) |
                         reinterpret_cast<uintptr_t>(c) | uintptr_t{256};
  return static_cast<int>(bits & (~bits + 1));
}

}  // namespace

Blas::Blas(cudaStream_t stream, const BlasOptions& opt) : stream_(stream), opt_(opt) {
  ROFORMER_CUBLAS_CHECK(cublasCreate(&handle_));
  ROFORMER_CUBLAS_CHECK(cublasLtCreate(&lt_));
  ROFORMER_CUDA_CHECK(cudaMalloc(&workspace_, opt_.workspace_bytes));
  // One workspace for both handles: they only ever run on this Blas's single stream, in order.
  ROFORMER_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_, opt_.workspace_bytes));
  ROFORMER_CUBLAS_CHECK(cublasSetStream(handle_, stream_));
  ROFORMER_CUBLAS_CHECK(cublasSetAtomicsMode(
      handle_, opt_.deterministic ? CUBLAS_ATOMICS_NOT_ALLOWED : CUBLAS_ATOMICS_ALLOWED));
  ROFORMER_CUBLAS_CHECK(cublasSetMathMode(
      handle_, opt_.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

Blas::~Blas() {
  if (handle_) cublasDestroy(handle_);
  if (lt_) cublasLtDestroy(lt_);
  if (workspace_) cudaFree(workspace_);
}

void Blas::set_stream(cudaStream_t s) {
  stream_ = s;
  ROFORMER_CUBLAS_CHECK(cublasSetStream(handle_, s));
}

cublasComputeType_t Blas::Compute(cudaDataType_t type_a) const {
  if (type_a == CUDA_R_32F && opt_.allow_tf32) return CUBLAS_COMPUTE_32F_FAST_TF32;
  return CUBLAS_COMPUTE_32F;
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS sees B first.
void Blas::GemmImpl(bool ta, bool tb, int m, int n, int k, float alpha, const void* a, int lda,
                    const void* b, int ldb, float beta, void* c, int ldc, cudaDataType_t type_a,
                    cudaDataType_t type_c) {
  if (m <= 0 || n <= 0) return;
  const cublasComputeType_t compute = Compute(type_a);
  const cublasOperation_t op_first = tb ? CUBLAS_OP_T : CUBLAS_OP_N;   // row-major B
  const cublasOperation_t op_second = ta ? CUBLAS_OP_T : CUBLAS_OP_N;  // row-major A
  const AlgoKey key{ta,
                    tb,
                    m,
                    n,
                    k,
                    lda,
                    ldb,
                    ldc,
                    static_cast<int>(type_a),
                    static_cast<int>(type_c),
                    Alignment(a, b, c)};

  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  ROFORMER_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, compute, CUDA_R_32F));
  ROFORMER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                                       sizeof(op_first)));
  ROFORMER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                       &op_second, sizeof(op_second)));
  // Column-major shapes as stored: row-major B [k, n] (or [n, k] when tb) is column-major
  // [n, k] (or [k, n]) with the same leading dimension.
  ROFORMER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, type_a, tb ? k : n, tb ? n : k, ldb));
  ROFORMER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, type_a, ta ? m : k, ta ? k : m, lda));
  ROFORMER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, type_c, n, m, ldc));

  auto it = algos_.find(key);
  if (it == algos_.end()) {
    Algo found;
    cublasLtMatmulPreference_t pref = nullptr;
    ROFORMER_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = opt_.workspace_bytes;
    ROFORMER_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    const uint32_t align = static_cast<uint32_t>(key.align);
    for (auto attr :
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
      ROFORMER_CUBLAS_CHECK(
          cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align)));
    }
    if (opt_.deterministic) {
      const uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_NONE;
      ROFORMER_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
          pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &scheme, sizeof(scheme)));
    }
    cublasLtMatmulHeuristicResult_t result{};
    int count = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(lt_, desc, la, lb, lc, lc, pref, 1, &result, &count);
    if (st == CUBLAS_STATUS_SUCCESS && count > 0) {
      found.ok = true;
      found.algo = result.algo;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    it = algos_.emplace(key, found).first;
  }

  bool done = false;
  if (it->second.ok) {
    const cublasStatus_t st =
        cublasLtMatmul(lt_, desc, &alpha, b, la, a, lb, &beta, c, lc, c, lc, &it->second.algo,
                       workspace_, opt_.workspace_bytes, stream_);
    if (st == CUBLAS_STATUS_SUCCESS) {
      done = true;
    } else if (st != CUBLAS_STATUS_NOT_SUPPORTED) {
      ROFORMER_CUBLAS_CHECK(st);
    } else {
      it->second.ok = false;  // never try this shape through cuBLASLt again
    }
  }
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(desc);
  if (done) return;
  // Fallback for shapes cuBLASLt has no kernel for (odd leading dimensions, k = 0, ...).
  ROFORMER_CUBLAS_CHECK(cublasGemmEx(handle_, op_first, op_second, n, m, k, &alpha, b, type_a, ldb,
                                     a, type_a, lda, &beta, c, type_c, ldc, compute,
                                     CUBLAS_GEMM_DEFAULT));
}

template <typename TA, typename TC>
void Blas::Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const TA* a, int lda,
                const TA* b, int ldb, float beta, TC* c, int ldc) {
  static_assert(std::is_same_v<TA, TC> || std::is_same_v<TC, float>, "unsupported GEMM types");
  GemmImpl(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, CudaType<TA>(),
           CudaType<TC>());
}

template <typename TA, typename TC>
void Blas::BatchedHeadGemm(int batch, int heads, bool trans_a, bool trans_b, int m, int n, int k,
                           float alpha, const TA* a, int lda, HeadStrides as, const TA* b, int ldb,
                           HeadStrides bs, float beta, TC* c, int ldc, HeadStrides cs) {
  static_assert(std::is_same_v<TA, TC> || std::is_same_v<TC, float>, "unsupported GEMM types");
  if (m <= 0 || n <= 0 || batch <= 0 || heads <= 0) return;
  const cudaDataType_t ta_type = CudaType<TA>(), tc_type = CudaType<TC>();
  const cublasComputeType_t compute = Compute(ta_type);
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  auto call = [&](int64_t off_a, int64_t off_b, int64_t off_c, int64_t sa, int64_t sb, int64_t sc,
                  int count) {
    ROFORMER_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle_, op_first, op_second, n, m, k, &alpha, b + off_b, ta_type, ldb, sb, a + off_a,
        ta_type, lda, sa, &beta, c + off_c, tc_type, ldc, sc, count, compute, CUBLAS_GEMM_DEFAULT));
  };
  const int64_t hh = heads;
  if (as.batch == hh * as.head && bs.batch == hh * bs.head && cs.batch == hh * cs.head) {
    call(0, 0, 0, as.head, bs.head, cs.head, batch * heads);
  } else if (batch <= heads) {
    for (int i = 0; i < batch; ++i)
      call(i * as.batch, i * bs.batch, i * cs.batch, as.head, bs.head, cs.head, heads);
  } else {
    for (int h = 0; h < heads; ++h)
      call(h * as.head, h * bs.head, h * cs.head, as.batch, bs.batch, cs.batch, batch);
  }
}

template void Blas::Gemm<float, float>(bool, bool, int, int, int, float, const float*, int,
                                       const float*, int, float, float*, int);
template void Blas::Gemm<bf16, bf16>(bool, bool, int, int, int, float, const bf16*, int,
                                     const bf16*, int, float, bf16*, int);
template void Blas::Gemm<bf16, float>(bool, bool, int, int, int, float, const bf16*, int,
                                      const bf16*, int, float, float*, int);
template void Blas::BatchedHeadGemm<float, float>(int, int, bool, bool, int, int, int, float,
                                                  const float*, int, HeadStrides, const float*, int,
                                                  HeadStrides, float, float*, int, HeadStrides);
template void Blas::BatchedHeadGemm<bf16, bf16>(int, int, bool, bool, int, int, int, float,
                                                const bf16*, int, HeadStrides, const bf16*, int,
                                                HeadStrides, float, bf16*, int, HeadStrides);
template void Blas::BatchedHeadGemm<bf16, float>(int, int, bool, bool, int, int, int, float,
                                                 const bf16*, int, HeadStrides, const bf16*, int,
                                                 HeadStrides, float, float*, int, HeadStrides);

// ---- linear layers ----
namespace {

// Fixed row split for the column sums: partials [kColChunks, cols], then an in-order sum per
// column. The split depends only on rows, so the result is bit-reproducible.
constexpr int kColChunks = 64;

template <typename T>
__global__ void AddBiasKernel(T* y, const float* b, int64_t n, int cols) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = FromFloat<T>(ToFloat(y[i]) + b[i % cols]);
  }
}

template <typename T>
__global__ void ColumnPartialKernel(const T* dy, float* partial, int64_t rows, int cols) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const int chunk = blockIdx.y;
  const int64_t r0 = rows * chunk / kColChunks, r1 = rows * (chunk + 1) / kColChunks;
  float acc = 0.0f;
  for (int64_t r = r0; r < r1; ++r) acc += ToFloat(dy[r * cols + c]);
  partial[static_cast<int64_t>(chunk) * cols + c] = acc;
}

__global__ void ColumnFinishKernel(const float* partial, float* db, int cols) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float acc = 0.0f;
  for (int i = 0; i < kColChunks; ++i) acc += partial[static_cast<int64_t>(i) * cols + c];
  db[c] += acc;
}

}  // namespace

size_t ColumnSumWorkspaceBytes(int cols) {
  return sizeof(float) * static_cast<size_t>(kColChunks) * cols;
}

template <typename T>
void AddBias(T* y, const float* b, int64_t rows, int cols, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n <= 0) return;
  AddBiasKernel<T><<<GridFor(n, 256), 256, 0, stream>>>(y, b, n, cols);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

template <typename T>
void ColumnSumAccumulate(const T* dy, float* db, int64_t rows, int cols, void* workspace,
                         cudaStream_t stream) {
  if (cols <= 0) return;
  float* partial = static_cast<float*>(workspace);
  const dim3 grid((cols + 255) / 256, kColChunks);
  ColumnPartialKernel<T><<<grid, 256, 0, stream>>>(dy, partial, rows, cols);
  ROFORMER_CUDA_LAUNCH_CHECK();
  ColumnFinishKernel<<<(cols + 255) / 256, 256, 0, stream>>>(partial, db, cols);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

template <typename T>
void LinearForward(Blas& blas, const T* x, const T* w, const float* b, T* y, int64_t rows, int in,
                   int out) {
  // As torch.addmm and the CPU backend: the bias is added to the finished dot products.
  blas.Gemm<T, T>(false, true, static_cast<int>(rows), out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  if (b) AddBias(y, b, rows, out, blas.stream());
}

template <typename T>
void LinearBackward(Blas& blas, const T* dy, const T* x, const T* w, T* dx, float* dw, float* db,
                    int64_t rows, int in, int out, bool accumulate_dx, void* workspace) {
  const int m = static_cast<int>(rows);
  if (dx)
    blas.Gemm<T, T>(false, false, m, in, out, 1.0f, dy, out, w, in, accumulate_dx ? 1.0f : 0.0f, dx,
                    in);
  // Megatron's gradient_accumulation_fusion: bf16 operands, fp32 C with beta = 1.
  if (dw) blas.Gemm<T, float>(true, false, out, in, m, 1.0f, dy, out, x, in, 1.0f, dw, in);
  if (db) ColumnSumAccumulate(dy, db, rows, out, workspace, blas.stream());
}

#define ROFORMER_INSTANTIATE_LINEAR(T)                                                            \
  template void AddBias<T>(T*, const float*, int64_t, int, cudaStream_t);                         \
  template void ColumnSumAccumulate<T>(const T*, float*, int64_t, int, void*, cudaStream_t);      \
  template void LinearForward<T>(Blas&, const T*, const T*, const float*, T*, int64_t, int, int); \
  template void LinearBackward<T>(Blas&, const T*, const T*, const T*, T*, float*, float*,        \
                                  int64_t, int, int, bool, void*);
ROFORMER_INSTANTIATE_LINEAR(float)
ROFORMER_INSTANTIATE_LINEAR(bf16)
#undef ROFORMER_INSTANTIATE_LINEAR

}  // namespace roformer::cuda
