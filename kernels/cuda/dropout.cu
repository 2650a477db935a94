// Inverted dropout with the CPU backend's counter-based masks (kernels/cpu/dropout.h): the keep
// bit of logical element (row, col_offset + col) is word (i % 4) of Philox block i / 4 of the
// stream, i = row * cols_global + col_offset + col. Each thread draws one Philox block and serves
// the (up to) four local elements it covers, so no word is drawn twice; the forward and the
// backward regenerate the same bits, nothing is stored.
#include <cstring>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/philox_device.cuh"

namespace roformer::cuda {
namespace {

enum Mode { kScale = 0, kBiasResidual = 1, kMask = 2 };

struct DropoutArgs {
  uint64_t key, stream;
  float p, scale;
  int64_t cols_global, col_offset;
};

template <Mode kMode, typename T>
__global__ void DropoutKernel(DropoutArgs a, const T* x, T* y, const float* bias, const T* residual,
                              uint8_t* mask, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const DropoutRowBlocks rb = RowBlocks(r, cols, a.cols_global, a.col_offset);
    T* yr = y ? y + r * cols : nullptr;
    for (uint64_t j = rb.first + blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
         j <= rb.last; j += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
      ForBlockElements(a.key, a.stream, a.p, rb.base, cols, j, [&](int64_t c, bool keep) {
        // The CPU multiplies by a float mask (keep / (1 - p)), as torch's fused dropout.
        const float m = keep ? a.scale : 0.0f;
        if constexpr (kMode == kScale) {
          yr[c] = FromFloat<T>(ToFloat(x[r * cols + c]) * m);
        } else if constexpr (kMode == kBiasResidual) {
          const float v = bias ? ToFloat(yr[c]) + bias[c] : ToFloat(yr[c]);
          yr[c] = FromFloat<T>(ToFloat(residual[r * cols + c]) + v * m);
        } else {
          mask[r * cols + c] = keep ? 1 : 0;
        }
      });
    }
  }
}

template <typename T>
__global__ void BiasResidualKernel(T* y, const float* bias, const T* residual, int64_t n,
                                   int64_t cols) {
  ROFORMER_GRID_STRIDE(i, n) {
    const float v = bias ? ToFloat(y[i]) + bias[i % cols] : ToFloat(y[i]);
    y[i] = FromFloat<T>(ToFloat(residual[i]) + v);
  }
}

template <Mode kMode, typename T>
void Launch(const DropoutSpec& s, const T* x, T* y, const float* bias, const T* residual,
            uint8_t* mask, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const DropoutArgs a{s.key, s.stream, s.p, 1.0f / (1.0f - s.p), s.cols_global, s.col_offset};
  constexpr int kBlock = 256;
  const int64_t blocks_per_row = cols / 4 + 2;  // a row range may straddle one extra block
  int64_t gx = (blocks_per_row + kBlock - 1) / kBlock;
  if (gx > 65535) gx = 65535;
  const int64_t gy = rows < 65535 ? rows : 65535;
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
  DropoutKernel<kMode, T><<<grid, kBlock, 0, stream>>>(a, x, y, bias, residual, mask, rows, cols);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

}  // namespace

template <typename T>
void DropoutForward(const DropoutSpec& s, const T* x, T* y, int64_t rows, int64_t cols,
                    cudaStream_t stream) {
  if (s.p <= 0.0f) {
    if (x != y && rows * cols > 0)
      ROFORMER_CUDA_CHECK(
          cudaMemcpyAsync(y, x, sizeof(T) * rows * cols, cudaMemcpyDeviceToDevice, stream));
    return;
  }
  Launch<kScale, T>(s, x, y, nullptr, nullptr, nullptr, rows, cols, stream);
}

template <typename T>
void DropoutBackward(const DropoutSpec& s, const T* dy, T* dx, int64_t rows, int64_t cols,
                     cudaStream_t stream) {
  DropoutForward(s, dy, dx, rows, cols, stream);
}

template <typename T>
void BiasDropoutResidualForward(const DropoutSpec& s, T* y, const float* bias, const T* residual,
                                int64_t rows, int64_t cols, cudaStream_t stream) {
  if (s.p <= 0.0f) {
    const int64_t n = rows * cols;
    if (n <= 0) return;
    BiasResidualKernel<T><<<GridFor(n, 256), 256, 0, stream>>>(y, bias, residual, n, cols);
    ROFORMER_CUDA_LAUNCH_CHECK();
    return;
  }
  Launch<kBiasResidual, T>(s, nullptr, y, bias, residual, nullptr, rows, cols, stream);
}

void DropoutKeepMask(const DropoutSpec& s, uint8_t* mask, int64_t rows, int64_t cols,
                     cudaStream_t stream) {
  Launch<kMask, float>(s, nullptr, nullptr, nullptr, nullptr, mask, rows, cols, stream);
}

#define ROFORMER_INSTANTIATE(T)                                                               \
  template void DropoutForward<T>(const DropoutSpec&, const T*, T*, int64_t, int64_t,         \
                                  cudaStream_t);                                              \
  template void DropoutBackward<T>(const DropoutSpec&, const T*, T*, int64_t, int64_t,        \
                                   cudaStream_t);                                             \
  template void BiasDropoutResidualForward<T>(const DropoutSpec&, T*, const float*, const T*, \
                                              int64_t, int64_t, cudaStream_t);
ROFORMER_INSTANTIATE(float)
ROFORMER_INSTANTIATE(bf16)
#undef ROFORMER_INSTANTIATE

}  // namespace roformer::cuda
