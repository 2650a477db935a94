// Exact-erf GELU and tanh (kernels/cpu/activations.h), forward and backward side by side.
// Elementwise and memory-bound: one read and one write per element (two reads for backward).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace roformer::cuda {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

template <typename T>
__global__ void GeluForwardKernel(const T* x, T* y, int64_t n) {
  ROFORMER_GRID_STRIDE(i, n) {
    const float v = ToFloat(x[i]);
    y[i] = FromFloat<T>(v * 0.5f * (1.0f + erff(v * kInvSqrt2)));
  }
}

template <typename T>
__global__ void GeluBackwardKernel(const T* dy, const T* x, T* dx, int64_t n) {
  ROFORMER_GRID_STRIDE(i, n) {
    const float v = ToFloat(x[i]);
    const float cdf = 0.5f * (1.0f + erff(v * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
    dx[i] = FromFloat<T>(ToFloat(dy[i]) * (cdf + v * pdf));
  }
}

template <typename T>
__global__ void TanhForwardKernel(const T* x, T* y, int64_t n) {
  ROFORMER_GRID_STRIDE(i, n) { y[i] = FromFloat<T>(tanhf(ToFloat(x[i]))); }
}

template <typename T>
__global__ void TanhBackwardKernel(const T* dy, const T* y, T* dx, int64_t n) {
  ROFORMER_GRID_STRIDE(i, n) {
    const float t = ToFloat(y[i]);
    dx[i] = FromFloat<T>(ToFloat(dy[i]) * (1.0f - t * t));
  }
}

template <typename T>
__global__ void AddInPlaceKernel(T* y, const T* x, int64_t n) {
  ROFORMER_GRID_STRIDE(i, n) { y[i] = FromFloat<T>(ToFloat(y[i]) + ToFloat(x[i])); }
}

__global__ void ConvertToBf16Kernel(const float* x, bf16* y, int64_t n) {
  ROFORMER_GRID_STRIDE(i, n) { y[i] = __float2bfloat16_rn(x[i]); }
}

constexpr int kBlock = 256;

}  // namespace

template <typename T>
void AddInPlace(T* y, const T* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  AddInPlaceKernel<T><<<GridFor(n, kBlock), kBlock, 0, stream>>>(y, x, n);
  ROFORMER_CUDA_LAUNCH_CHECK();
}
template void AddInPlace<float>(float*, const float*, int64_t, cudaStream_t);
template void AddInPlace<bf16>(bf16*, const bf16*, int64_t, cudaStream_t);

void ConvertToBf16(const float* x, bf16* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  ConvertToBf16Kernel<<<GridFor(n, kBlock), kBlock, 0, stream>>>(x, y, n);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

template <typename T>
void GeluForward(const T* x, T* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  GeluForwardKernel<T><<<GridFor(n, kBlock), kBlock, 0, stream>>>(x, y, n);
  ROFORMER_CUDA_LAUNCH_CHECK();
}
template <typename T>
void GeluBackward(const T* dy, const T* x, T* dx, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  GeluBackwardKernel<T><<<GridFor(n, kBlock), kBlock, 0, stream>>>(dy, x, dx, n);
  ROFORMER_CUDA_LAUNCH_CHECK();
}
template <typename T>
void TanhForward(const T* x, T* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  TanhForwardKernel<T><<<GridFor(n, kBlock), kBlock, 0, stream>>>(x, y, n);
  ROFORMER_CUDA_LAUNCH_CHECK();
}
template <typename T>
void TanhBackward(const T* dy, const T* y, T* dx, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  TanhBackwardKernel<T><<<GridFor(n, kBlock), kBlock, 0, stream>>>(dy, y, dx, n);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

#define ROFORMER_INSTANTIATE(T)                                                 \
  template void GeluForward<T>(const T*, T*, int64_t, cudaStream_t);            \
  template void GeluBackward<T>(const T*, const T*, T*, int64_t, cudaStream_t); \
  template void TanhForward<T>(const T*, T*, int64_t, cudaStream_t);            \
  template void TanhBackward<T>(const T*, const T*, T*, int64_t, cudaStream_t);
ROFORMER_INSTANTIATE(float)
ROFORMER_INSTANTIATE(bf16)
#undef ROFORMER_INSTANTIATE

}  // namespace roformer::cuda
