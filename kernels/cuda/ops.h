// CUDA backend: one function per op of the CPU backend (kernels/cpu/*.h), same names, same
// layouts, same argument order, plus device pointers and a cudaStream_t. Compiled only when nvcc
// is found (CMake's ROFORMER_HAVE_CUDA); plain C++ may include this header.
//
// Precision: functions templated on T take T = float (parity with the CPU backend within 1e-5) or
// T = __nv_bfloat16 (activations in bf16). Whatever T, reductions, softmax, statistics and every
// accumulation run in fp32 (loss sums and norms in fp64); parameters the kernels only read
// (LayerNorm gamma/beta, biases, RoPE table) and all parameter gradients stay fp32, as do the
// AdamW master weights and moments (adamw.cu can refresh a bf16 copy of the weights for the
// GEMMs).
//
// Determinism: every kernel here is deterministic (fixed reduction trees, no float atomics)
// except the scatter-adds when `deterministic` is false (EmbeddingBackward, ScatterAddRows), which
// then use atomics for speed. GEMMs: gemm_cublas.h.
//
// Workspaces: a training step allocates nothing, so kernels that need scratch take it from the
// caller; each such function has a *WorkspaceBytes() companion.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/attention.h"  // AttentionDims, AttentionParams (plain structs)
#include "kernels/cpu/dropout.h"    // DropoutSpec (plain struct)

namespace roformer::cuda {

using bf16 = __nv_bfloat16;

// Aborts with the CUDA error text and the call site unless err == cudaSuccess.
void CheckCuda(cudaError_t err, const char* what, const char* file, int line);
#define ROFORMER_CUDA_CHECK(expr) ::roformer::cuda::CheckCuda((expr), #expr, __FILE__, __LINE__)

// ---- activations (gelu.cu) ----
// Exact-erf GELU and tanh, as kernels/cpu/activations.h; dx may alias dy.
template <typename T>
void GeluForward(const T* x, T* y, int64_t n, cudaStream_t stream);
template <typename T>
void GeluBackward(const T* dy, const T* x, T* dx, int64_t n, cudaStream_t stream);
template <typename T>
void TanhForward(const T* x, T* y, int64_t n, cudaStream_t stream);
template <typename T>
void TanhBackward(const T* dy, const T* y, T* dx, int64_t n, cudaStream_t stream);

// y += x (the residual-gradient sums of the model), and fp32 -> bf16 (weight copies), in gelu.cu.
template <typename T>
void AddInPlace(T* y, const T* x, int64_t n, cudaStream_t stream);
void ConvertToBf16(const float* x, bf16* y, int64_t n, cudaStream_t stream);

// ---- layernorm.cu ----
// As kernels/cpu/layernorm.h; gamma, beta, mean, rstd, dgamma, dbeta are fp32.
template <typename T>
void LayerNormForward(const T* x, const float* gamma, const float* beta, T* y, float* mean,
                      float* rstd, int64_t rows, int dim, float eps, cudaStream_t stream);
// dgamma/dbeta accumulate (+=) through a fixed two-stage reduction (deterministic); `workspace`
// holds LayerNormBackwardWorkspaceBytes(dim) bytes (unused when both are null).
size_t LayerNormBackwardWorkspaceBytes(int dim);
template <typename T>
void LayerNormBackward(const T* dy, const T* x, const float* mean, const float* rstd,
                       const float* gamma, T* dx, float* dgamma, float* dbeta, int64_t rows,
                       int dim, bool accumulate_dx, void* workspace, cudaStream_t stream);

// ---- rope.cu ----
// In place on [batch, seq, heads, head_dim] with row stride ld; table from roformer::RopeTable
// (kernels/cpu/rope.h) copied to the device once, fp32 [max_positions, head_dim].
template <typename T>
void RopeForward(T* x, const float* table, int batch, int seq, int heads, int head_dim, int64_t ld,
                 cudaStream_t stream);
template <typename T>
void RopeBackward(T* dx, const float* table, int batch, int seq, int heads, int head_dim,
                  int64_t ld, cudaStream_t stream);

// ---- dropout.cu ----
// The keep bit of logical element (row, col_offset + col) is Philox(key, stream, row *
// cols_global + col_offset + col) >= p, bit-identical to kernels/cpu/dropout.h. p = 0: copy.
template <typename T>
void DropoutForward(const DropoutSpec& s, const T* x, T* y, int64_t rows, int64_t cols,
                    cudaStream_t stream);
template <typename T>
void DropoutBackward(const DropoutSpec& s, const T* dy, T* dx, int64_t rows, int64_t cols,
                     cudaStream_t stream);
// y = residual + dropout(y + bias), in place on y; bias (fp32) may be null.
template <typename T>
void BiasDropoutResidualForward(const DropoutSpec& s, T* y, const float* bias, const T* residual,
                                int64_t rows, int64_t cols, cudaStream_t stream);
// mask[r * cols + c] = keep bit (1/0) of the local element (r, c): for tests and debugging.
void DropoutKeepMask(const DropoutSpec& s, uint8_t* mask, int64_t rows, int64_t cols,
                     cudaStream_t stream);

// ---- embedding.cu ----
// As kernels/cpu/embedding.h (vocab-parallel ready: ids outside [row_start, row_start+local_rows)
// give zero rows and no gradient). Gradients are fp32.
template <typename T>
void EmbeddingForward(const int32_t* ids, const T* table, T* out, int64_t rows, int dim,
                      int64_t row_start, int64_t local_rows, bool accumulate, cudaStream_t stream);
// deterministic: rows are added in order per column (slow for many rows, bit-reproducible);
// otherwise fp32 atomics.
template <typename T>
void EmbeddingBackward(const int32_t* ids, const T* dout, float* dtable, int64_t rows, int dim,
                       int64_t row_start, int64_t local_rows, int32_t skip_id, bool deterministic,
                       cudaStream_t stream);
// The fast deterministic embedding backward, when the ids are on the host (they are: the batch
// comes from the data pipeline). BuildEmbeddingGroups lists, per distinct local id, its rows in
// increasing order (rows with skip_id or outside the shard dropped); EmbeddingBackwardGrouped
// then gives each id one block that adds its rows to the table row in that order: the CPU's
// summation order per element, so the result is bit-identical to kernels/cpu's and independent of
// timing, with one block per distinct id instead of one thread per column.
struct EmbeddingGroups {
  std::vector<int32_t> ids;     // distinct local row ids (id - row_start), ascending
  std::vector<int32_t> starts;  // [ids.size() + 1] offsets into rows
  std::vector<int32_t> rows;    // source rows, grouped by id, ascending within a group
};
void BuildEmbeddingGroups(const int32_t* ids, int64_t rows, int64_t row_start, int64_t local_rows,
                          int32_t skip_id, EmbeddingGroups* groups);
// group_ids/starts/rows: device copies of an EmbeddingGroups (num_groups = ids.size()).
template <typename T>
void EmbeddingBackwardGrouped(const int32_t* group_ids, const int32_t* starts, const int32_t* rows,
                              int num_groups, const T* dout, float* dtable, int dim,
                              cudaStream_t stream);
template <typename T>
void GatherRows(const T* x, const int32_t* index, T* out, int64_t n, int dim, cudaStream_t stream);
// dx[index[i], :] += dout[i, :]; with deterministic the rows are applied in order.
template <typename T>
void ScatterAddRows(const T* dout, const int32_t* index, T* dx, int64_t n, int dim,
                    bool deterministic, cudaStream_t stream);

// ---- attention_softmax.cu (with the GEMMs of gemm_cublas.h) ----
class Blas;
// Scratch for AttentionForward/Backward: fp32 scores [B, heads, L, L], plus a T copy of the
// dropped-out probabilities and (bf16) of dS for the GEMMs, and with p.recompute the T
// probabilities themselves (size it with the p the calls will use, recompute included).
template <typename T>
size_t AttentionWorkspaceBytes(const AttentionDims& dims, const AttentionParams& p);
// Same contract as kernels/cpu/attention.h: q, k, v, ctx [B, L, heads, d] with row stride ld;
// carry, dcarry fp32 [B, heads, L, L] (RealFormer only); probs T [B, heads, L, L] (softmax before
// dropout, saved for the backward); mask int32 [B, L] or null. Attention dropout uses the logical
// view [B, heads_global * L * L] of p.dropout (cols_global, col_offset) exactly as the CPU.
// p.recompute (as the CPU): probs is neither written nor read (may be null), the probabilities
// live in the workspace, and a RealFormer backward takes the forward's carry, rebuilt in place
// from cur_l to cur_{l-1} (one backward per forward).
template <typename T>
void AttentionForward(Blas& blas, const AttentionDims& dims, const AttentionParams& p, const T* q,
                      const T* k, const T* v, const int32_t* mask, float* carry, T* probs, T* ctx,
                      void* workspace);
template <typename T>
void AttentionBackward(Blas& blas, const AttentionDims& dims, const AttentionParams& p,
                       const T* dctx, const T* q, const T* k, const T* v, const int32_t* mask,
                       const T* probs, float* dcarry, bool has_dcarry_in, T* dq, T* dk, T* dv,
                       void* workspace, float* carry = nullptr);
// The softmax stages alone (the GEMM-free middle of the two functions above), exposed for tests:
// scores fp32 [B*heads*L, L] = q k^T (unscaled) on entry, overwritten with scratch.
template <typename T>
void AttentionSoftmaxForward(const AttentionDims& dims, const AttentionParams& p, float* scores,
                             const int32_t* mask, float* carry, T* probs, float* scale_ws,
                             cudaStream_t stream);
// dp fp32 [B*heads*L, L] = d(dropout(P)) on entry (dropout already undone by the caller); on exit
// dS written to dcarry (RealFormer, accumulated when has_dcarry_in) or in place into dp, plus a T
// copy into ds_out when non-null.
template <typename T>
void AttentionSoftmaxBackward(const AttentionDims& dims, const AttentionParams& p, float* dp,
                              const T* probs, const int32_t* mask, float* dcarry,
                              bool has_dcarry_in, T* ds_out, float* scale_ws, cudaStream_t stream);

// ---- linear (gemm_cublas.cu) ----
// y[rows, out] = x W^T (+ b); W is [out, in] (HF layout); b fp32 or null.
template <typename T>
void LinearForward(Blas& blas, const T* x, const T* w, const float* b, T* y, int64_t rows, int in,
                   int out);
// dx = dy W (or += with accumulate_dx; skipped when null); dW (fp32) += dy^T x; db (fp32) += column
// sums of dy (deterministic: `workspace` holds ColumnSumWorkspaceBytes(out) bytes).
size_t ColumnSumWorkspaceBytes(int cols);
template <typename T>
void LinearBackward(Blas& blas, const T* dy, const T* x, const T* w, T* dx, float* dw, float* db,
                    int64_t rows, int in, int out, bool accumulate_dx, void* workspace);
template <typename T>
void AddBias(T* y, const float* b, int64_t rows, int cols, cudaStream_t stream);
template <typename T>
void ColumnSumAccumulate(const T* dy, float* db, int64_t rows, int cols, void* workspace,
                         cudaStream_t stream);

// ---- cross_entropy.cu ----
// Fused softmax cross-entropy over padded class columns, as kernels/cpu/cross_entropy.h's
// SoftmaxCrossEntropy: columns >= valid_cols are -inf (no probability, zero gradient); labels
// outside [0, valid_cols) are ignored (zero gradient row). dlogits (may alias logits) receives
// (softmax - onehot) * grad_scale. The statistics land in *stats (device memory) after a fixed-
// order reduction, so the loss is bit-reproducible.
struct CrossEntropyDeviceStats {
  double loss_sum;
  long long count;
  long long correct;
};
size_t CrossEntropyWorkspaceBytes(int64_t rows);
template <typename T>
void SoftmaxCrossEntropy(const T* logits, const int32_t* labels, int64_t rows, int cols,
                         int valid_cols, T* dlogits, float grad_scale,
                         CrossEntropyDeviceStats* stats, void* workspace, cudaStream_t stream);

// Vocab-parallel variant (kernels/cpu/cross_entropy.h, same two passes): VocabShardStats writes
// [rows, kVocabShardStatsWidth] doubles (local max, sum exp, target logit, global argmax) for this
// shard; after the caller all-gathers them into all_stats [shards, rows, 4] (NCCL), the second
// pass merges the shards in rank order exactly as the CPU (so every rank gets the same loss) and
// writes this shard's gradient. Shard widths must be equal (cols).
template <typename T>
void VocabShardStats(const T* logits, const int32_t* labels, int64_t rows, int cols, int valid_cols,
                     int64_t col_start, double* stats, cudaStream_t stream);
template <typename T>
void VocabParallelCrossEntropy(const T* logits, const int32_t* labels, int64_t rows, int cols,
                               int valid_cols, int64_t col_start, int64_t num_classes,
                               const double* all_stats, int shards, T* dlogits, float grad_scale,
                               CrossEntropyDeviceStats* stats, void* workspace,
                               cudaStream_t stream);

// ---- adamw.cu ----
// model/optimizer.h's AdamW (torch order: decay, then the Adam step) on fp32 master weights. The
// coefficients are computed on the host exactly as AdamWStepRange does.
struct AdamWCoefficients {
  float b1, b2, step_size, inv_sqrt_bc2, eps, clip;
};
AdamWCoefficients MakeAdamWCoefficients(double beta1, double beta2, double eps, double lr,
                                        int64_t step, double grad_clip, double grad_norm);
// One contiguous range of one tensor (decay = lr * weight_decay, or 0 for no-decay tensors);
// weights_bf16, when non-null, receives the updated weights rounded to bf16 for the next
// forward's GEMMs.
void AdamWUpdate(const AdamWCoefficients& c, float decay, float* w, const float* g, float* m,
                 float* v, int64_t n, bf16* weights_bf16, cudaStream_t stream);

// ---- grad_norm.cu ----
// Sum of squares of each segment [offsets[i], offsets[i+1]) of g, in fp64 through a fixed tree
// (bit-reproducible), their in-order total, and the index of the first segment whose sum is not
// finite (-1 if none): model/optimizer.h's CheckGradients on the device. offsets is a device array
// of num_segments + 1 entries; all outputs are device pointers.
size_t GradNormWorkspaceBytes(int num_segments);
void GradSumSquares(const float* g, const int64_t* offsets, int num_segments, double* per_segment,
                    double* total, int* first_bad, void* workspace, cudaStream_t stream);

}  // namespace roformer::cuda
