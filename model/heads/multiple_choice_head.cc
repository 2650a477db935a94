#include "model/heads/multiple_choice_head.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/linear.h"
#include "model/heads/head_params.h"

namespace roformer {

MultipleChoiceHead::MultipleChoiceHead(int hidden, std::string prefix)
    : h_(hidden), w_(prefix + ".weight"), b_(prefix + ".bias") {
  CHECK_GT(hidden, 0);
}

void MultipleChoiceHead::Declare(ParamStore* store) const {
  store->Declare(w_, {1, h_}, Placement::kReplicated, /*weight_decay=*/true);
  store->Declare(b_, {1}, Placement::kReplicated, /*weight_decay=*/false);
}

void MultipleChoiceHead::Forward(const ParamStore& store, const float* seq, int seq_len,
                                 const std::vector<int32_t>& offsets, const DropoutSpec& drop) {
  CHECK_GE(offsets.size(), 2u);
  CHECK_EQ(offsets[0], 0);
  offsets_ = offsets;
  q_ = static_cast<int>(offsets.size()) - 1;
  n_ = offsets.back();
  seq_len_ = seq_len;
  drop_ = drop;
  k_ = 0;
  for (int q = 0; q < q_; ++q) {
    CHECK_GT(offsets[q + 1], offsets[q]) << "question " << q << " has no choice";
    k_ = std::max(k_, offsets[q + 1] - offsets[q]);
  }
  const size_t N = static_cast<size_t>(n_);
  rows_.resize(N);
  for (size_t s = 0; s < N; ++s) rows_[s] = static_cast<int64_t>(s) * seq_len;
  pooled_.resize(N * h_);
  dropped_.resize(N * h_);
  raw_.resize(N);
  GatherRows(seq, rows_.data(), n_, h_, pooled_.data());
  DropoutForward(drop_, pooled_.data(), dropped_.data(), n_, h_);
  LinearForward(dropped_.data(), store.param(w_), store.param(b_), raw_.data(), n_, h_, 1);
  scores_.assign(static_cast<size_t>(q_) * k_, kMaskedLogit);
  for (int q = 0; q < q_; ++q)
    for (int s = offsets_[q]; s < offsets_[q + 1]; ++s)
      scores_[static_cast<size_t>(q) * k_ + (s - offsets_[q])] = raw_[s];
}

CrossEntropyStats MultipleChoiceHead::Backward(ParamStore* store, const int32_t* labels,
                                               float grad_scale, float* d_seq) {
  for (int q = 0; q < q_; ++q) {
    CHECK_LT(labels[q], offsets_[q + 1] - offsets_[q]) << "label beyond the question's choices";
  }
  dscores_.resize(static_cast<size_t>(q_) * k_);
  CrossEntropyStats st = SoftmaxCrossEntropy(scores_.data(), labels, q_, k_, k_,
                                             d_seq ? dscores_.data() : nullptr, grad_scale);
  if (!d_seq) return st;
  draw_.resize(n_);
  for (int q = 0; q < q_; ++q)
    for (int s = offsets_[q]; s < offsets_[q + 1]; ++s)
      draw_[s] = dscores_[static_cast<size_t>(q) * k_ + (s - offsets_[q])];
  dpooled_.resize(static_cast<size_t>(n_) * h_);
  LinearBackward(draw_.data(), dropped_.data(), store->param(w_), dpooled_.data(), store->grad(w_),
                 store->grad(b_), n_, h_, 1);
  DropoutBackward(drop_, dpooled_.data(), dpooled_.data(), n_, h_);
  std::memset(d_seq, 0, sizeof(float) * static_cast<size_t>(n_) * seq_len_ * h_);
  for (int s = 0; s < n_; ++s)
    std::memcpy(d_seq + rows_[s] * h_, dpooled_.data() + static_cast<size_t>(s) * h_,
                sizeof(float) * h_);
  return st;
}

}  // namespace roformer
