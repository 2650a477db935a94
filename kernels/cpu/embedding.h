// Embedding lookup (gather) and its backward (scatter-add), vocab-parallel ready: a rank holds
// table rows [row_start, row_start + local_rows); ids outside that range give zero rows (summed
// across ranks by the TP reduction) and no gradient.
#pragma once

#include <cstdint>

namespace roformer {

// out[r, :] (=, or += when accumulate) table[ids[r] - row_start, :].
void EmbeddingForward(const int32_t* ids, const float* table, float* out, int64_t rows, int dim,
                      int64_t row_start, int64_t local_rows, bool accumulate);

// dtable[ids[r] - row_start, :] += dout[r, :], skipping rows whose id == skip_id (HF padding_idx:
// torch never writes a gradient to the padding row; -1 = skip nothing). Deterministic: parallel
// over column blocks, rows in order.
void EmbeddingBackward(const int32_t* ids, const float* dout, float* dtable, int64_t rows, int dim,
                       int64_t row_start, int64_t local_rows, int32_t skip_id);

// Gathers rows: out[i, :] = x[index[i], :] (MLM masked positions, [CLS] rows).
void GatherRows(const float* x, const int32_t* index, float* out, int64_t n, int dim);
// dx[index[i], :] += dout[i, :] (indices may repeat; applied in order).
void ScatterAddRows(const float* dout, const int32_t* index, float* dx, int64_t n, int dim);

}  // namespace roformer
