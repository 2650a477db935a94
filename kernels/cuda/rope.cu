// Rotary position embedding in HF RoFormer's INTERLEAVED-pair convention (kernels/cpu/rope.h):
// pair (2i, 2i+1) of every head of token t rotates by position p = t % seq with the table's
// sin/cos [p, i] and [p, half + i]. The backward applies the inverse rotation. One thread per
// pair, in place.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace roformer::cuda {
namespace {

template <bool kInverse, typename T>
__global__ void RotateKernel(T* x, const float* table, int seq, int heads, int head_dim, int64_t ld,
                             int64_t pairs) {
  const int half = head_dim / 2;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < pairs;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(idx % half);
    const int64_t th = idx / half;  // token * heads + head
    const int h = static_cast<int>(th % heads);
    const int64_t tok = th / heads;
    const int p = static_cast<int>(tok % seq);
    const float s = table[static_cast<int64_t>(p) * head_dim + i];
    const float c = table[static_cast<int64_t>(p) * head_dim + half + i];
    T* v = x + tok * ld + static_cast<int64_t>(h) * head_dim + 2 * i;
    const float x0 = ToFloat(v[0]), x1 = ToFloat(v[1]);
    if (kInverse) {
      v[0] = FromFloat<T>(x0 * c + x1 * s);
      v[1] = FromFloat<T>(x1 * c - x0 * s);
    } else {
      v[0] = FromFloat<T>(x0 * c - x1 * s);
      v[1] = FromFloat<T>(x1 * c + x0 * s);
    }
  }
}

template <bool kInverse, typename T>
void Rotate(T* x, const float* table, int batch, int seq, int heads, int head_dim, int64_t ld,
            cudaStream_t stream) {
  const int64_t pairs = static_cast<int64_t>(batch) * seq * heads * (head_dim / 2);
  if (pairs <= 0) return;
  RotateKernel<kInverse, T>
      <<<GridFor(pairs, 256), 256, 0, stream>>>(x, table, seq, heads, head_dim, ld, pairs);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

}  // namespace

template <typename T>
void RopeForward(T* x, const float* table, int batch, int seq, int heads, int head_dim, int64_t ld,
                 cudaStream_t stream) {
  Rotate<false>(x, table, batch, seq, heads, head_dim, ld, stream);
}
template <typename T>
void RopeBackward(T* dx, const float* table, int batch, int seq, int heads, int head_dim,
                  int64_t ld, cudaStream_t stream) {
  Rotate<true>(dx, table, batch, seq, heads, head_dim, ld, stream);
}

#define ROFORMER_INSTANTIATE(T)                                                              \
  template void RopeForward<T>(T*, const float*, int, int, int, int, int64_t, cudaStream_t); \
  template void RopeBackward<T>(T*, const float*, int, int, int, int, int64_t, cudaStream_t);
ROFORMER_INSTANTIATE(float)
ROFORMER_INSTANTIATE(bf16)
#undef ROFORMER_INSTANTIATE

}  // namespace roformer::cuda
