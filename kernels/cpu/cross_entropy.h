// Fused softmax cross-entropy over (possibly padded) class columns.
#pragma once

#include <cstdint>

namespace roformer {

struct CrossEntropyStats {
  double loss_sum = 0;  // sum over counted rows of -log softmax(logits)[label]
  int64_t count = 0;    // rows with a label >= 0 (negative labels are ignored, as ignore_index)
  int64_t correct = 0;  // counted rows whose argmax (first maximum) equals the label
};

// logits [rows, cols] with row stride cols; columns >= valid_cols are padding and are treated as
// -inf (zero probability, zero gradient). When dlogits is non-null it receives
// (softmax - onehot(label)) * grad_scale for counted rows and 0 for ignored rows / padded columns;
// dlogits may alias logits (the fused backward overwrites the logits in place).
CrossEntropyStats SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int64_t rows,
                                      int cols, int valid_cols, float* dlogits, float grad_scale);

// ---- Vocab-parallel variant (Megatron's vocab_parallel_cross_entropy, anchors §1.2) ----
// The class columns are split across TP ranks; logits are never gathered. Instead of Megatron's
// max all-reduce followed by sum all-reduces, each rank summarises its shard per row as
// (local max, sum exp(x - local max), target logit if the label is in the shard, first local
// argmax) and ONE all-gather of these summaries lets every rank merge them (online-softmax
// rescaling: S = sum_t s_t * exp(m_t - max_t m_t)) in the same fixed rank order, so the loss and
// the softmax normaliser are bit-identical on every TP rank.
constexpr int kVocabShardStatsWidth = 4;  // doubles per row: max, sumexp, target, argmax

// Pass 1 (local). logits [rows, cols] of this shard, whose column c is global class
// col_start + c; columns >= valid_cols are padding. stats: [rows, kVocabShardStatsWidth].
void VocabShardStats(const float* logits, const int32_t* labels, int64_t rows, int cols,
                     int valid_cols, int64_t col_start, double* stats);

// Pass 2 (local, after all-gathering the stats of `shards` equal-width shards into
// all_stats [shards, rows, kVocabShardStatsWidth], shard t holding classes [t*cols, (t+1)*cols)).
// Rows with a label outside [0, num_classes) are ignored. Returns the same (global) statistics on
// every shard; dlogits (may alias logits) receives this shard's columns of
// (softmax - onehot(label)) * grad_scale, 0 on padding and ignored rows.
CrossEntropyStats VocabParallelCrossEntropy(const float* logits, const int32_t* labels,
                                            int64_t rows, int cols, int valid_cols,
                                            int64_t col_start, int64_t num_classes,
                                            const double* all_stats, int shards, float* dlogits,
                                            float grad_scale);

}  // namespace roformer
