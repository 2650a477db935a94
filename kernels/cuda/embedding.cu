// Embedding gather / scatter-add and row gather (kernels/cpu/embedding.h). Vocab-parallel ready:
// ids outside [row_start, row_start + local_rows) read zeros and write no gradient.
//
// Backward determinism: the CPU adds rows in order per column. With `deterministic` the GPU does
// the same (one thread owns a column and walks the rows in order: bit-reproducible, but only `dim`
// threads run, fine for the MLM/CLS scatters and slow for the token embedding of a large batch);
// otherwise fp32 atomics (fast, summation order varies between runs).
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace roformer::cuda {
namespace {

template <typename T>
__global__ void EmbeddingForwardKernel(const int32_t* ids, const T* table, T* out, int64_t n,
                                       int dim, int64_t row_start, int64_t local_rows,
                                       bool accumulate) {
  ROFORMER_GRID_STRIDE(i, n) {
    const int64_t r = i / dim;
    const int c = static_cast<int>(i % dim);
    const int64_t id = static_cast<int64_t>(ids[r]) - row_start;
    const bool in = id >= 0 && id < local_rows;
    if (accumulate) {
      if (in) out[i] = FromFloat<T>(ToFloat(out[i]) + ToFloat(table[id * dim + c]));
    } else {
      out[i] = in ? table[id * dim + c] : FromFloat<T>(0.0f);
    }
  }
}

template <typename T>
__global__ void EmbeddingBackwardOrderedKernel(const int32_t* ids, const T* dout, float* dtable,
                                               int64_t rows, int dim, int64_t row_start,
                                               int64_t local_rows, int32_t skip_id) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  for (int64_t r = 0; r < rows; ++r) {
    if (ids[r] == skip_id) continue;
    const int64_t id = static_cast<int64_t>(ids[r]) - row_start;
    if (id < 0 || id >= local_rows) continue;
    dtable[id * dim + c] += ToFloat(dout[r * dim + c]);
  }
}

template <typename T>
__global__ void EmbeddingBackwardAtomicKernel(const int32_t* ids, const T* dout, float* dtable,
                                              int64_t n, int dim, int64_t row_start,
                                              int64_t local_rows, int32_t skip_id) {
  ROFORMER_GRID_STRIDE(i, n) {
    const int64_t r = i / dim;
    if (ids[r] == skip_id) continue;
    const int64_t id = static_cast<int64_t>(ids[r]) - row_start;
    if (id < 0 || id >= local_rows) continue;
    atomicAdd(dtable + id * dim + i % dim, ToFloat(dout[i]));
  }
}

template <typename T>
__global__ void EmbeddingBackwardGroupedKernel(const int32_t* group_ids, const int32_t* starts,
                                               const int32_t* rows, const T* dout, float* dtable,
                                               int dim) {
  const int g = blockIdx.x;
  const int64_t id = group_ids[g];
  const int begin = starts[g], end = starts[g + 1];
  for (int c = threadIdx.x; c < dim; c += blockDim.x) {
    float acc = dtable[id * dim + c];
    for (int k = begin; k < end; ++k) acc += ToFloat(dout[static_cast<int64_t>(rows[k]) * dim + c]);
    dtable[id * dim + c] = acc;
  }
}

template <typename T>
__global__ void GatherRowsKernel(const T* x, const int32_t* index, T* out, int64_t n, int dim) {
  ROFORMER_GRID_STRIDE(i, n) { out[i] = x[static_cast<int64_t>(index[i / dim]) * dim + i % dim]; }
}

template <typename T>
__global__ void ScatterAddOrderedKernel(const T* dout, const int32_t* index, T* dx, int64_t n,
                                        int dim) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  for (int64_t i = 0; i < n; ++i) {
    T* o = dx + static_cast<int64_t>(index[i]) * dim + c;
    *o = FromFloat<T>(ToFloat(*o) + ToFloat(dout[i * dim + c]));
  }
}

template <typename T>
__global__ void ScatterAddAtomicKernel(const T* dout, const int32_t* index, T* dx, int64_t n,
                                       int dim) {
  ROFORMER_GRID_STRIDE(i, n) {
    atomicAdd(dx + static_cast<int64_t>(index[i / dim]) * dim + i % dim, dout[i]);
  }
}

}  // namespace

template <typename T>
void EmbeddingForward(const int32_t* ids, const T* table, T* out, int64_t rows, int dim,
                      int64_t row_start, int64_t local_rows, bool accumulate, cudaStream_t stream) {
  const int64_t n = rows * dim;
  if (n <= 0) return;
  EmbeddingForwardKernel<T><<<GridFor(n, 256), 256, 0, stream>>>(ids, table, out, n, dim, row_start,
                                                                 local_rows, accumulate);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

template <typename T>
void EmbeddingBackward(const int32_t* ids, const T* dout, float* dtable, int64_t rows, int dim,
                       int64_t row_start, int64_t local_rows, int32_t skip_id, bool deterministic,
                       cudaStream_t stream) {
  const int64_t n = rows * dim;
  if (n <= 0) return;
  if (deterministic) {
    EmbeddingBackwardOrderedKernel<T><<<(dim + 127) / 128, 128, 0, stream>>>(
        ids, dout, dtable, rows, dim, row_start, local_rows, skip_id);
  } else {
    EmbeddingBackwardAtomicKernel<T><<<GridFor(n, 256), 256, 0, stream>>>(
        ids, dout, dtable, n, dim, row_start, local_rows, skip_id);
  }
  ROFORMER_CUDA_LAUNCH_CHECK();
}

void BuildEmbeddingGroups(const int32_t* ids, int64_t rows, int64_t row_start, int64_t local_rows,
                          int32_t skip_id, EmbeddingGroups* groups) {
  // Counting sort by local id: stable, so rows stay ascending within each id.
  std::vector<int32_t> count(static_cast<size_t>(local_rows) + 1, 0);
  for (int64_t r = 0; r < rows; ++r) {
    if (ids[r] == skip_id) continue;
    const int64_t id = static_cast<int64_t>(ids[r]) - row_start;
    if (id >= 0 && id < local_rows) ++count[id + 1];
  }
  groups->ids.clear();
  groups->starts.assign(1, 0);
  std::vector<int32_t> slot(static_cast<size_t>(local_rows), -1);
  for (int64_t id = 0; id < local_rows; ++id) {
    if (count[id + 1] == 0) continue;
    slot[id] = static_cast<int32_t>(groups->ids.size());
    groups->ids.push_back(static_cast<int32_t>(id));
    groups->starts.push_back(groups->starts.back() + count[id + 1]);
  }
  groups->rows.assign(static_cast<size_t>(groups->starts.back()), 0);
  std::vector<int32_t> fill(groups->starts.begin(), groups->starts.end() - 1);
  for (int64_t r = 0; r < rows; ++r) {
    if (ids[r] == skip_id) continue;
    const int64_t id = static_cast<int64_t>(ids[r]) - row_start;
    if (id >= 0 && id < local_rows) groups->rows[fill[slot[id]]++] = static_cast<int32_t>(r);
  }
}

template <typename T>
void EmbeddingBackwardGrouped(const int32_t* group_ids, const int32_t* starts, const int32_t* rows,
                              int num_groups, const T* dout, float* dtable, int dim,
                              cudaStream_t stream) {
  if (num_groups <= 0) return;
  EmbeddingBackwardGroupedKernel<T>
      <<<num_groups, 128, 0, stream>>>(group_ids, starts, rows, dout, dtable, dim);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

template <typename T>
void GatherRows(const T* x, const int32_t* index, T* out, int64_t n, int dim, cudaStream_t stream) {
  const int64_t total = n * dim;
  if (total <= 0) return;
  GatherRowsKernel<T><<<GridFor(total, 256), 256, 0, stream>>>(x, index, out, total, dim);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

template <typename T>
void ScatterAddRows(const T* dout, const int32_t* index, T* dx, int64_t n, int dim,
                    bool deterministic, cudaStream_t stream) {
  const int64_t total = n * dim;
  if (total <= 0) return;
  if (deterministic) {
    ScatterAddOrderedKernel<T><<<(dim + 127) / 128, 128, 0, stream>>>(dout, index, dx, n, dim);
  } else {
    ScatterAddAtomicKernel<T><<<GridFor(total, 256), 256, 0, stream>>>(dout, index, dx, total, dim);
  }
  ROFORMER_CUDA_LAUNCH_CHECK();
}

#define ROFORMER_INSTANTIATE(T)                                                                   \
  template void EmbeddingForward<T>(const int32_t*, const T*, T*, int64_t, int, int64_t, int64_t, \
                                    bool, cudaStream_t);                                          \
  template void EmbeddingBackward<T>(const int32_t*, const T*, float*, int64_t, int, int64_t,     \
                                     int64_t, int32_t, bool, cudaStream_t);                       \
  template void EmbeddingBackwardGrouped<T>(const int32_t*, const int32_t*, const int32_t*, int,  \
                                            const T*, float*, int, cudaStream_t);                 \
  template void GatherRows<T>(const T*, const int32_t*, T*, int64_t, int, cudaStream_t);          \
  template void ScatterAddRows<T>(const T*, const int32_t*, T*, int64_t, int, bool, cudaStream_t);
ROFORMER_INSTANTIATE(float)
ROFORMER_INSTANTIATE(bf16)
#undef ROFORMER_INSTANTIATE

}  // namespace roformer::cuda
