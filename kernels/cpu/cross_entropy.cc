#include "kernels/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace roformer {

namespace {

// Max (first one on ties: torch's argmax), its index, and Σ exp(x - max) in double over the
// row's first `valid_cols` logits; the single-process and the vocab-parallel losses share it so
// their per-shard statistics are computed identically.
inline double RowMaxSumExp(const float* x, int valid_cols, float* max, int* argmax) {
  float mx = x[0];
  int arg = 0;
  for (int c = 1; c < valid_cols; ++c) {
    if (x[c] > mx) {
      mx = x[c];
      arg = c;
    }
  }
  double se = 0;
  for (int c = 0; c < valid_cols; ++c) se += std::exp(static_cast<double>(x[c] - mx));
  *max = mx;
  *argmax = arg;
  return se;
}

void RowCrossEntropy(const float* logits, const int32_t* labels, int64_t r, int cols,
                     int valid_cols, float* dlogits, float grad_scale, double* loss_sum,
                     int64_t* count, int64_t* correct) {
  const float* x = logits + r * cols;
  float* dx = dlogits ? dlogits + r * cols : nullptr;
  const int32_t label = labels[r];
  if (label < 0 || label >= valid_cols) {
    if (dx)
      for (int c = 0; c < cols; ++c) dx[c] = 0.0f;
    return;
  }
  float mx;
  int arg;
  const double se = RowMaxSumExp(x, valid_cols, &mx, &arg);
  const float log_se = static_cast<float>(std::log(se));
  // torch log_softmax: x - max - log(sum exp(x - max)).
  *loss_sum += -static_cast<double>(x[label] - mx - log_se);
  ++*count;
  if (arg == label) ++*correct;
  if (dx) {
    const float inv = static_cast<float>(1.0 / se);
    for (int c = 0; c < valid_cols; ++c) dx[c] = std::exp(x[c] - mx) * inv * grad_scale;
    for (int c = valid_cols; c < cols; ++c) dx[c] = 0.0f;
    dx[label] -= grad_scale;
  }
}

}  // namespace

CrossEntropyStats SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int64_t rows,
                                      int cols, int valid_cols, float* dlogits, float grad_scale) {
  // Fixed chunking (independent of the thread count) and an in-order final sum keep the loss
  // bit-reproducible, which the resume test relies on.
  constexpr int kChunks = 64;
  double chunk_loss[kChunks] = {};
  int64_t chunk_count[kChunks] = {}, chunk_correct[kChunks] = {};
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < kChunks; ++ch) {
    const int64_t r0 = rows * ch / kChunks, r1 = rows * (ch + 1) / kChunks;
    for (int64_t r = r0; r < r1; ++r) {
      RowCrossEntropy(logits, labels, r, cols, valid_cols, dlogits, grad_scale, &chunk_loss[ch],
                      &chunk_count[ch], &chunk_correct[ch]);
    }
  }
  CrossEntropyStats st;
  for (int ch = 0; ch < kChunks; ++ch) {
    st.loss_sum += chunk_loss[ch];
    st.count += chunk_count[ch];
    st.correct += chunk_correct[ch];
  }
  return st;
}

}  // namespace roformer

namespace roformer {

void VocabShardStats(const float* logits, const int32_t* labels, int64_t rows, int cols,
                     int valid_cols, int64_t col_start, double* stats) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * cols;
    double* s = stats + r * kVocabShardStatsWidth;
    if (valid_cols <= 0) {  // a shard made of padding only: contributes nothing
      s[0] = -std::numeric_limits<double>::infinity();
      s[1] = 0;
      s[2] = 0;
      s[3] = -1;
      continue;
    }
    float mx;
    int arg;
    const double se = RowMaxSumExp(x, valid_cols, &mx, &arg);
    const int64_t local_label = static_cast<int64_t>(labels[r]) - col_start;
    s[0] = mx;
    s[1] = se;
    s[2] = local_label >= 0 && local_label < valid_cols ? x[local_label] : 0.0;
    s[3] = static_cast<double>(col_start + arg);
  }
}

CrossEntropyStats VocabParallelCrossEntropy(const float* logits, const int32_t* labels,
                                            int64_t rows, int cols, int valid_cols,
                                            int64_t col_start, int64_t num_classes,
                                            const double* all_stats, int shards, float* dlogits,
                                            float grad_scale) {
  constexpr int kChunks = 64;  // as SoftmaxCrossEntropy: fixed chunking, in-order final sum
  double chunk_loss[kChunks] = {};
  int64_t chunk_count[kChunks] = {}, chunk_correct[kChunks] = {};
  const int64_t shard_stride = rows * kVocabShardStatsWidth;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < kChunks; ++ch) {
    const int64_t r0 = rows * ch / kChunks, r1 = rows * (ch + 1) / kChunks;
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = logits + r * cols;
      float* dx = dlogits ? dlogits + r * cols : nullptr;
      const int32_t label = labels[r];
      if (label < 0 || label >= num_classes) {
        if (dx)
          for (int c = 0; c < cols; ++c) dx[c] = 0.0f;
        continue;
      }
      // Merge the shard summaries in rank order (identical on every rank).
      const double* s0 = all_stats + r * kVocabShardStatsWidth;
      float mx = -std::numeric_limits<float>::infinity();
      int64_t arg = -1;
      for (int t = 0; t < shards; ++t) {
        const double* s = s0 + t * shard_stride;
        if (s[3] < 0) continue;  // padding-only shard
        const float m = static_cast<float>(s[0]);
        if (arg < 0 || m > mx) {  // strict: the first (lowest-class) maximum wins, as in argmax
          mx = m;
          arg = static_cast<int64_t>(s[3]);
        }
      }
      double se = 0;
      for (int t = 0; t < shards; ++t) {
        const double* s = s0 + t * shard_stride;
        if (s[3] < 0) continue;
        se += s[1] * std::exp(static_cast<double>(static_cast<float>(s[0]) - mx));
      }
      const float target = static_cast<float>(s0[(label / cols) * shard_stride + 2]);
      const float log_se = static_cast<float>(std::log(se));
      chunk_loss[ch] += -static_cast<double>(target - mx - log_se);
      ++chunk_count[ch];
      if (arg == label) ++chunk_correct[ch];
      if (dx) {
        const float inv = static_cast<float>(1.0 / se);
        for (int c = 0; c < valid_cols; ++c) dx[c] = std::exp(x[c] - mx) * inv * grad_scale;
        for (int c = std::max(valid_cols, 0); c < cols; ++c) dx[c] = 0.0f;
        const int64_t local_label = static_cast<int64_t>(label) - col_start;
        if (local_label >= 0 && local_label < valid_cols) dx[local_label] -= grad_scale;
      }
    }
  }
  CrossEntropyStats st;
  for (int ch = 0; ch < kChunks; ++ch) {
    st.loss_sum += chunk_loss[ch];
    st.count += chunk_count[ch];
    st.correct += chunk_correct[ch];
  }
  return st;
}

}  // namespace roformer
