// LayerNorm over the last dimension (kernels/cpu/layernorm.h), forward and backward side by side.
// One block per row; statistics in fp32 with the mean subtracted before squaring (the CPU uses
// fp64 sums: both are far inside the 1e-5 parity tolerance for rows of a few thousand). dgamma and
// dbeta go through fixed row chunks and an in-order sum, so they are bit-reproducible.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace roformer::cuda {
namespace {

constexpr int kRowBlock = 256;
constexpr int kParamChunks = 128;  // row chunks of the dgamma/dbeta reduction

template <typename T>
__global__ void LayerNormForwardKernel(const T* x, const float* gamma, const float* beta, T* y,
                                       float* mean, float* rstd, int dim, float eps) {
  __shared__ float scratch[kWarp];
  const int64_t r = blockIdx.x;
  const T* xr = x + r * dim;
  float s = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) s += ToFloat(xr[i]);
  const float mu = BlockSum(s, scratch) / dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float d = ToFloat(xr[i]) - mu;
    ss += d * d;
  }
  const float var = BlockSum(ss, scratch) / dim;
  const float rs = rsqrtf(var + eps);
  if (threadIdx.x == 0) {
    mean[r] = mu;
    rstd[r] = rs;
  }
  // The CPU kernel's form (torch's): (x * rstd + (-mean * rstd)) * gamma + beta.
  const float shift = -mu * rs;
  T* yr = y + r * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    yr[i] = FromFloat<T>((ToFloat(xr[i]) * rs + shift) * gamma[i] + beta[i]);
}

template <typename T>
__global__ void LayerNormBackwardDxKernel(const T* dy, const T* x, const float* mean,
                                          const float* rstd, const float* gamma, T* dx, int dim,
                                          bool accumulate) {
  __shared__ float scratch[kWarp];
  const int64_t r = blockIdx.x;
  const T* xr = x + r * dim;
  const T* dyr = dy + r * dim;
  const float m = mean[r], rs = rstd[r];
  float sg = 0.0f, sgx = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float g = ToFloat(dyr[i]) * gamma[i];
    sg += g;
    sgx += g * ((ToFloat(xr[i]) - m) * rs);
  }
  const float mg = BlockSum(sg, scratch) / dim;
  const float mgx = BlockSum(sgx, scratch) / dim;
  T* dxr = dx + r * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float g = ToFloat(dyr[i]) * gamma[i];
    const float v = rs * (g - mg - (ToFloat(xr[i]) - m) * rs * mgx);
    dxr[i] = FromFloat<T>(accumulate ? ToFloat(dxr[i]) + v : v);
  }
}

// partial[chunk][c] = sums over the rows of one chunk (thread per column: coalesced rows).
template <typename T>
__global__ void LayerNormParamPartialKernel(const T* dy, const T* x, const float* mean,
                                            const float* rstd, float* pg, float* pb, int64_t rows,
                                            int dim) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  const int chunk = blockIdx.y;
  const int64_t r0 = rows * chunk / kParamChunks, r1 = rows * (chunk + 1) / kParamChunks;
  float ag = 0.0f, ab = 0.0f;
  for (int64_t r = r0; r < r1; ++r) {
    const float d = ToFloat(dy[r * dim + c]);
    ag += d * ((ToFloat(x[r * dim + c]) - mean[r]) * rstd[r]);
    ab += d;
  }
  pg[static_cast<int64_t>(chunk) * dim + c] = ag;
  pb[static_cast<int64_t>(chunk) * dim + c] = ab;
}

__global__ void LayerNormParamFinishKernel(const float* pg, const float* pb, float* dgamma,
                                           float* dbeta, int dim) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  float ag = 0.0f, ab = 0.0f;
  for (int i = 0; i < kParamChunks; ++i) {
    ag += pg[static_cast<int64_t>(i) * dim + c];
    ab += pb[static_cast<int64_t>(i) * dim + c];
  }
  if (dgamma) dgamma[c] += ag;
  if (dbeta) dbeta[c] += ab;
}

}  // namespace

size_t LayerNormBackwardWorkspaceBytes(int dim) {
  return 2 * sizeof(float) * static_cast<size_t>(kParamChunks) * dim;
}

template <typename T>
void LayerNormForward(const T* x, const float* gamma, const float* beta, T* y, float* mean,
                      float* rstd, int64_t rows, int dim, float eps, cudaStream_t stream) {
  if (rows <= 0) return;
  LayerNormForwardKernel<T><<<static_cast<unsigned>(rows), kRowBlock, 0, stream>>>(
      x, gamma, beta, y, mean, rstd, dim, eps);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

template <typename T>
void LayerNormBackward(const T* dy, const T* x, const float* mean, const float* rstd,
                       const float* gamma, T* dx, float* dgamma, float* dbeta, int64_t rows,
                       int dim, bool accumulate_dx, void* workspace, cudaStream_t stream) {
  if (rows <= 0) return;
  if (dx) {
    LayerNormBackwardDxKernel<T><<<static_cast<unsigned>(rows), kRowBlock, 0, stream>>>(
        dy, x, mean, rstd, gamma, dx, dim, accumulate_dx);
    ROFORMER_CUDA_LAUNCH_CHECK();
  }
  if (dgamma || dbeta) {
    float* pg = static_cast<float*>(workspace);
    float* pb = pg + static_cast<int64_t>(kParamChunks) * dim;
    const dim3 grid((dim + 255) / 256, kParamChunks);
    LayerNormParamPartialKernel<T><<<grid, 256, 0, stream>>>(dy, x, mean, rstd, pg, pb, rows, dim);
    ROFORMER_CUDA_LAUNCH_CHECK();
    LayerNormParamFinishKernel<<<(dim + 255) / 256, 256, 0, stream>>>(pg, pb, dgamma, dbeta, dim);
    ROFORMER_CUDA_LAUNCH_CHECK();
  }
}

#define ROFORMER_INSTANTIATE(T)                                                                    \
  template void LayerNormForward<T>(const T*, const float*, const float*, T*, float*, float*,      \
                                    int64_t, int, float, cudaStream_t);                            \
  template void LayerNormBackward<T>(const T*, const T*, const float*, const float*, const float*, \
                                     T*, float*, float*, int64_t, int, bool, void*, cudaStream_t);
ROFORMER_INSTANTIATE(float)
ROFORMER_INSTANTIATE(bf16)
#undef ROFORMER_INSTANTIATE

}  // namespace roformer::cuda
