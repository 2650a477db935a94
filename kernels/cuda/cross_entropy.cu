// Fused softmax cross-entropy (kernels/cpu/cross_entropy.h's SoftmaxCrossEntropy): one block per
// row makes one online pass for (max, first argmax, sum exp) and one pass that writes the gradient
// (softmax - onehot) * grad_scale over the logits (in place when dlogits == logits), so the
// normalised probabilities never exist in memory (llm.c's fused classifier, anchors §2.1). Padded
// vocabulary columns (>= valid_cols) are -inf: no probability mass and a zero gradient. Per-row
// losses then go through one fixed-order fp64 reduction (bit-reproducible loss).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace roformer::cuda {
namespace {

constexpr int kRowThreads = 256;
constexpr int kReduceThreads = 1024;

struct Online {
  float m;  // running max
  float s;  // sum of exp(x - m)
  int arg;  // first index of the max
};

__device__ __forceinline__ Online Merge(Online a, Online b) {
  if (b.arg < 0) return a;
  if (a.arg < 0) return b;
  Online r;
  r.m = fmaxf(a.m, b.m);
  r.s = a.s * expf(a.m - r.m) + b.s * expf(b.m - r.m);
  // Ties keep the lower index: argmax's "first maximum", as the CPU.
  r.arg = a.m > b.m ? a.arg : (b.m > a.m ? b.arg : min(a.arg, b.arg));
  return r;
}

__device__ __forceinline__ Online WarpMerge(Online v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) {
    Online u;
    u.m = __shfl_xor_sync(0xffffffffu, v.m, o);
    u.s = __shfl_xor_sync(0xffffffffu, v.s, o);
    u.arg = __shfl_xor_sync(0xffffffffu, v.arg, o);
    v = Merge(v, u);
  }
  return v;
}

// (max, first argmax, sum exp) of one row's x[0, n) in one online pass, merged over the block in
// a fixed tree (warps, then warp 0); every thread returns the block's result.
template <typename T>
__device__ Online BlockRowStats(const T* x, int n) {
  __shared__ Online part[kWarp];
  __shared__ Online total;
  Online o{-INFINITY, 0.0f, -1};
  for (int c = threadIdx.x; c < n; c += blockDim.x) {
    const float v = ToFloat(x[c]);
    if (o.arg < 0 || v > o.m) {
      o.s = (o.arg < 0 ? 0.0f : o.s * expf(o.m - v)) + 1.0f;
      o.m = v;
      o.arg = c;
    } else {
      o.s += expf(v - o.m);
    }
  }
  o = WarpMerge(o);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) part[warp] = o;
  __syncthreads();
  if (warp == 0) {
    Online w =
        lane < static_cast<int>(blockDim.x / kWarp) ? part[lane] : Online{-INFINITY, 0.0f, -1};
    w = WarpMerge(w);
    if (lane == 0) total = w;
  }
  __syncthreads();
  return total;
}

template <typename T>
__global__ void CrossEntropyRowKernel(const T* logits, const int32_t* labels, int cols,
                                      int valid_cols, T* dlogits, float grad_scale,
                                      double* row_loss, int* row_flags) {
  __shared__ float target;
  const int64_t r = blockIdx.x;
  const T* x = logits + r * cols;
  T* dx = dlogits ? dlogits + r * cols : nullptr;
  const int32_t label = labels[r];
  if (label < 0 || label >= valid_cols) {  // ignored row (ignore_index): no loss, zero gradient
    if (dx)
      for (int c = threadIdx.x; c < cols; c += blockDim.x) dx[c] = FromFloat<T>(0.0f);
    if (threadIdx.x == 0) {
      row_loss[r] = 0.0;
      row_flags[r] = 0;
    }
    return;
  }
  if (threadIdx.x == 0) target = ToFloat(x[label]);  // read before any thread overwrites it
  const Online total = BlockRowStats(x, valid_cols);
  const float mx = total.m, se = total.s;
  const float log_se = logf(se);
  if (threadIdx.x == 0) {
    // torch log_softmax: x - max - log(sum exp(x - max)), as the CPU (float, then fp64 sum).
    row_loss[r] = -static_cast<double>(target - mx - log_se);
    row_flags[r] = 1 | (total.arg == label ? 2 : 0);
  }
  if (dx) {
    const float inv = 1.0f / se;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      float g = 0.0f;
      if (c < valid_cols) {
        g = expf(ToFloat(x[c]) - mx) * inv * grad_scale;
        if (c == label) g -= grad_scale;
      }
      dx[c] = FromFloat<T>(g);
    }
  }
}

__global__ void CrossEntropyReduceKernel(const double* row_loss, const int* row_flags, int64_t rows,
                                         CrossEntropyDeviceStats* stats) {
  __shared__ double sd[kWarp];
  __shared__ long long sl[kWarp];
  double loss = 0.0;
  long long count = 0, correct = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    loss += row_loss[r];
    count += row_flags[r] & 1;
    correct += (row_flags[r] >> 1) & 1;
  }
  loss = BlockSum(loss, sd);
  count = BlockSum(count, sl);
  correct = BlockSum(correct, sl);
  if (threadIdx.x == 0) {
    stats->loss_sum = loss;
    stats->count = count;
    stats->correct = correct;
  }
}

// Pass 1 of the vocab-parallel loss: one row's shard summary (kernels/cpu VocabShardStats).
template <typename T>
__global__ void VocabShardStatsKernel(const T* logits, const int32_t* labels, int cols,
                                      int valid_cols, int64_t col_start, double* stats) {
  const int64_t r = blockIdx.x;
  const T* x = logits + r * cols;
  double* s = stats + r * 4;
  if (valid_cols <= 0) {  // a shard made of padding only: contributes nothing
    if (threadIdx.x == 0) {
      s[0] = -INFINITY;
      s[1] = 0;
      s[2] = 0;
      s[3] = -1;
    }
    return;
  }
  const Online w = BlockRowStats(x, valid_cols);
  if (threadIdx.x == 0) {
    const int64_t local_label = static_cast<int64_t>(labels[r]) - col_start;
    s[0] = w.m;
    s[1] = w.s;
    s[2] = local_label >= 0 && local_label < valid_cols ? ToFloat(x[local_label]) : 0.0;
    s[3] = static_cast<double>(col_start + w.arg);
  }
}

// Pass 2: thread 0 merges the shard summaries in rank order with the CPU's arithmetic (fp64 sum
// of rescaled partial sums, float max), then the block writes this shard's gradient.
template <typename T>
__global__ void VocabParallelRowKernel(const T* logits, const int32_t* labels, int cols,
                                       int valid_cols, int64_t col_start, int64_t num_classes,
                                       const double* all_stats, int shards, int64_t rows,
                                       T* dlogits, float grad_scale, double* row_loss,
                                       int* row_flags) {
  __shared__ float s_mx, s_inv;
  const int64_t r = blockIdx.x;
  const T* x = logits + r * cols;
  T* dx = dlogits ? dlogits + r * cols : nullptr;
  const int32_t label = labels[r];
  if (label < 0 || label >= num_classes) {
    if (dx)
      for (int c = threadIdx.x; c < cols; c += blockDim.x) dx[c] = FromFloat<T>(0.0f);
    if (threadIdx.x == 0) {
      row_loss[r] = 0.0;
      row_flags[r] = 0;
    }
    return;
  }
  if (threadIdx.x == 0) {
    const int64_t stride = rows * 4;
    const double* s0 = all_stats + r * 4;
    float mx = -INFINITY;
    int64_t arg = -1;
    for (int t = 0; t < shards; ++t) {
      const double* s = s0 + t * stride;
      if (s[3] < 0) continue;
      const float m = static_cast<float>(s[0]);
      if (arg < 0 || m > mx) {
        mx = m;
        arg = static_cast<int64_t>(s[3]);
      }
    }
    double se = 0;
    for (int t = 0; t < shards; ++t) {
      const double* s = s0 + t * stride;
      if (s[3] < 0) continue;
      se += s[1] * exp(static_cast<double>(static_cast<float>(s[0]) - mx));
    }
    const float target = static_cast<float>(s0[(label / cols) * stride + 2]);
    const float log_se = static_cast<float>(log(se));
    row_loss[r] = -static_cast<double>(target - mx - log_se);
    row_flags[r] = 1 | (arg == label ? 2 : 0);
    s_mx = mx;
    s_inv = static_cast<float>(1.0 / se);
  }
  __syncthreads();
  if (!dx) return;
  const float mx = s_mx, inv = s_inv;
  const int64_t local_label = static_cast<int64_t>(label) - col_start;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float g = 0.0f;
    if (c < valid_cols) {
      g = expf(ToFloat(x[c]) - mx) * inv * grad_scale;
      if (c == local_label) g -= grad_scale;
    }
    dx[c] = FromFloat<T>(g);
  }
}

}  // namespace

template <typename T>
void VocabShardStats(const T* logits, const int32_t* labels, int64_t rows, int cols, int valid_cols,
                     int64_t col_start, double* stats, cudaStream_t stream) {
  if (rows <= 0) return;
  VocabShardStatsKernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(
      logits, labels, cols, valid_cols, col_start, stats);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

template <typename T>
void VocabParallelCrossEntropy(const T* logits, const int32_t* labels, int64_t rows, int cols,
                               int valid_cols, int64_t col_start, int64_t num_classes,
                               const double* all_stats, int shards, T* dlogits, float grad_scale,
                               CrossEntropyDeviceStats* stats, void* workspace,
                               cudaStream_t stream) {
  double* row_loss = static_cast<double*>(workspace);
  int* row_flags = reinterpret_cast<int*>(row_loss + rows);
  if (rows > 0) {
    VocabParallelRowKernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(
        logits, labels, cols, valid_cols, col_start, num_classes, all_stats, shards, rows, dlogits,
        grad_scale, row_loss, row_flags);
    ROFORMER_CUDA_LAUNCH_CHECK();
  }
  CrossEntropyReduceKernel<<<1, kReduceThreads, 0, stream>>>(row_loss, row_flags, rows, stats);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

size_t CrossEntropyWorkspaceBytes(int64_t rows) {
  return static_cast<size_t>(rows) * (sizeof(double) + sizeof(int)) + 256;
}

template <typename T>
void SoftmaxCrossEntropy(const T* logits, const int32_t* labels, int64_t rows, int cols,
                         int valid_cols, T* dlogits, float grad_scale,
                         CrossEntropyDeviceStats* stats, void* workspace, cudaStream_t stream) {
  double* row_loss = static_cast<double*>(workspace);
  int* row_flags = reinterpret_cast<int*>(row_loss + rows);
  if (rows > 0) {
    CrossEntropyRowKernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(
        logits, labels, cols, valid_cols, dlogits, grad_scale, row_loss, row_flags);
    ROFORMER_CUDA_LAUNCH_CHECK();
  }
  CrossEntropyReduceKernel<<<1, kReduceThreads, 0, stream>>>(row_loss, row_flags, rows, stats);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

template void SoftmaxCrossEntropy<float>(const float*, const int32_t*, int64_t, int, int, float*,
                                         float, CrossEntropyDeviceStats*, void*, cudaStream_t);
template void SoftmaxCrossEntropy<bf16>(const bf16*, const int32_t*, int64_t, int, int, bf16*,
                                        float, CrossEntropyDeviceStats*, void*, cudaStream_t);
#define ROFORMER_INSTANTIATE(T)                                                                    \
  template void VocabShardStats<T>(const T*, const int32_t*, int64_t, int, int, int64_t, double*,  \
                                   cudaStream_t);                                                  \
  template void VocabParallelCrossEntropy<T>(const T*, const int32_t*, int64_t, int, int, int64_t, \
                                             int64_t, const double*, int, T*, float,               \
                                             CrossEntropyDeviceStats*, void*, cudaStream_t);
ROFORMER_INSTANTIATE(float)
ROFORMER_INSTANTIATE(bf16)
#undef ROFORMER_INSTANTIATE

}  // namespace roformer::cuda
