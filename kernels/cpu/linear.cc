#include "kernels/cpu/linear.h"

#include <algorithm>

#include "kernels/cpu/gemm.h"

namespace roformer {

void AddBias(float* y, const float* b, int64_t rows, int cols) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * cols;
    for (int c = 0; c < cols; ++c) yr[c] += b[c];
  }
}

void LinearForward(const float* x, const float* w, const float* b, float* y, int64_t rows, int in,
                   int out) {
  // Like torch.addmm the bias is added to the finished dot products (fl(acc + b)).
  Sgemm(false, true, static_cast<int>(rows), out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  if (b) AddBias(y, b, rows, out);
}

void ColumnSumAccumulate(const float* dy, float* db, int64_t rows, int cols) {
  constexpr int kBlock = 64;
  const int blocks = (cols + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = blk * kBlock, c1 = std::min(cols, c0 + kBlock);
    float acc[kBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float* d = dy + r * cols;
      for (int c = c0; c < c1; ++c) acc[c - c0] += d[c];
    }
    for (int c = c0; c < c1; ++c) db[c] += acc[c - c0];
  }
}

void LinearBackward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                    float* db, int64_t rows, int in, int out, bool accumulate_dx) {
  const int m = static_cast<int>(rows);
  if (dx)
    Sgemm(false, false, m, in, out, 1.0f, dy, out, w, in, accumulate_dx ? 1.0f : 0.0f, dx, in);
  if (dw) Sgemm(true, false, out, in, m, 1.0f, dy, out, x, in, 1.0f, dw, in);
  if (db) ColumnSumAccumulate(dy, db, rows, out);
}

}  // namespace roformer
