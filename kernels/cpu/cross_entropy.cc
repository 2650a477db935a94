#include "kernels/cpu/cross_entropy.h"

#include <cmath>

namespace roformer {

namespace {

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
