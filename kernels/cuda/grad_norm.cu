// Per-tensor and global gradient sums of squares (model/optimizer.h's CheckGradients) in fp64
// through a fixed tree: kBlocks partial sums per segment (each block a fixed grid-stride slice and
// a fixed shuffle tree), summed in order per segment, then the segments in order. The result
// depends only on the data and the segment table, never on timing, so the clip factor and the
// skip decision are reproducible.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace roformer::cuda {
namespace {

constexpr int kBlocks = 64;
constexpr int kThreads = 256;

__global__ void PartialSumSquaresKernel(const float* g, const int64_t* offsets, double* partial) {
  __shared__ double scratch[kWarp];
  const int seg = blockIdx.y;
  const int64_t begin = offsets[seg], end = offsets[seg + 1];
  double s = 0.0;
  for (int64_t i = begin + blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < end;
       i += static_cast<int64_t>(kBlocks) * kThreads) {
    const double x = g[i];
    s += x * x;
  }
  s = BlockSum(s, scratch);
  if (threadIdx.x == 0) partial[static_cast<int64_t>(seg) * kBlocks + blockIdx.x] = s;
}

__global__ void FinishKernel(const double* partial, int num_segments, double* per_segment,
                             double* total, int* first_bad) {
  // One thread: a few hundred segments x 64 partials, in order.
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  double t = 0.0;
  int bad = -1;
  for (int s = 0; s < num_segments; ++s) {
    double v = 0.0;
    for (int b = 0; b < kBlocks; ++b) v += partial[static_cast<int64_t>(s) * kBlocks + b];
    per_segment[s] = v;
    if (bad < 0 && !isfinite(v)) bad = s;
    t += v;
  }
  *total = t;
  *first_bad = bad;
}

}  // namespace

size_t GradNormWorkspaceBytes(int num_segments) {
  return sizeof(double) * static_cast<size_t>(kBlocks) * num_segments;
}

void GradSumSquares(const float* g, const int64_t* offsets, int num_segments, double* per_segment,
                    double* total, int* first_bad, void* workspace, cudaStream_t stream) {
  double* partial = static_cast<double*>(workspace);
  if (num_segments > 0) {
    PartialSumSquaresKernel<<<dim3(kBlocks, num_segments), kThreads, 0, stream>>>(g, offsets,
                                                                                  partial);
    ROFORMER_CUDA_LAUNCH_CHECK();
  }
  FinishKernel<<<1, 1, 0, stream>>>(partial, num_segments, per_segment, total, first_bad);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

}  // namespace roformer::cuda
