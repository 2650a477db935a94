#include "kernels/cpu/embedding.h"

#include <algorithm>
#include <cstring>

namespace roformer {

void EmbeddingForward(const int32_t* ids, const float* table, float* out, int64_t rows, int dim,
                      int64_t row_start, int64_t local_rows, bool accumulate) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out + r * dim;
    const int64_t id = static_cast<int64_t>(ids[r]) - row_start;
    if (id < 0 || id >= local_rows) {
      if (!accumulate) std::fill(o, o + dim, 0.0f);
      continue;
    }
    const float* t = table + id * dim;
    if (accumulate) {
      for (int c = 0; c < dim; ++c) o[c] += t[c];
    } else {
      std::memcpy(o, t, sizeof(float) * dim);
    }
  }
}

void EmbeddingBackward(const int32_t* ids, const float* dout, float* dtable, int64_t rows, int dim,
                       int64_t row_start, int64_t local_rows, int32_t skip_id) {
  constexpr int kBlock = 64;
  const int blocks = (dim + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = blk * kBlock, c1 = std::min(dim, c0 + kBlock);
    for (int64_t r = 0; r < rows; ++r) {
      if (ids[r] == skip_id) continue;
      const int64_t id = static_cast<int64_t>(ids[r]) - row_start;
      if (id < 0 || id >= local_rows) continue;
      const float* d = dout + r * dim;
      float* t = dtable + id * dim;
      for (int c = c0; c < c1; ++c) t[c] += d[c];
    }
  }
}

void GatherRows(const float* x, const int32_t* index, float* out, int64_t n, int dim) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(out + i * dim, x + static_cast<int64_t>(index[i]) * dim, sizeof(float) * dim);
  }
}

void ScatterAddRows(const float* dout, const int32_t* index, float* dx, int64_t n, int dim) {
  for (int64_t i = 0; i < n; ++i) {
    const float* d = dout + i * dim;
    float* o = dx + static_cast<int64_t>(index[i]) * dim;
    for (int c = 0; c < dim; ++c) o[c] += d[c];
  }
}

}  // namespace roformer
