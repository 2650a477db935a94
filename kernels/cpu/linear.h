// Fully connected layer in HF's layout: y[rows, out] = x[rows, in] * W^T + b, W stored [out, in].
#pragma once

#include <cstdint>

namespace roformer {

// b may be null (row-parallel layers add their bias after the TP reduction: AddBias).
void LinearForward(const float* x, const float* w, const float* b, float* y, int64_t rows, int in,
                   int out);

// dx[rows, in] = dy W (overwritten, or added when accumulate_dx; skipped when dx is null);
// dW[out, in] += dy^T x; db[out] += column sums of dy (db may be null). Parameter gradients always
// accumulate, so micro-batches and tied weights sum into one buffer.
void LinearBackward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                    float* db, int64_t rows, int in, int out, bool accumulate_dx = false);

// y[r, :] += b for every row.
void AddBias(float* y, const float* b, int64_t rows, int cols);

// db[c] += sum_r dy[r, c]; deterministic (fixed order over rows), parallel over column blocks.
void ColumnSumAccumulate(const float* dy, float* db, int64_t rows, int cols);

}  // namespace roformer
