#include "model/heads/classifier_head.h"

#include <glog/logging.h>

#include <cstring>

#include "kernels/cpu/linear.h"
#include "model/heads/head_params.h"

namespace roformer {

ClassifierHead::ClassifierHead(int hidden, int num_labels, std::string prefix)
    : h_(hidden), c_(num_labels), w_(prefix + ".weight"), b_(prefix + ".bias") {
  CHECK_GT(hidden, 0);
  CHECK_GT(num_labels, 0);
}

void ClassifierHead::Declare(ParamStore* store) const {
  store->Declare(w_, {c_, h_}, Placement::kReplicated, /*weight_decay=*/true);
  store->Declare(b_, {c_}, Placement::kReplicated, /*weight_decay=*/false);
}

void ClassifierHead::Forward(const ParamStore& store, const float* seq, int batch, int seq_len,
                             const DropoutSpec& drop) {
  batch_ = batch;
  seq_len_ = seq_len;
  drop_ = drop;
  const size_t B = static_cast<size_t>(batch);
  rows_.resize(B);
  for (size_t b = 0; b < B; ++b) rows_[b] = static_cast<int64_t>(b) * seq_len;
  pooled_.resize(B * h_);
  dropped_.resize(B * h_);
  logits_.resize(B * c_);
  GatherRows(seq, rows_.data(), batch, h_, pooled_.data());
  DropoutForward(drop_, pooled_.data(), dropped_.data(), batch, h_);
  LinearForward(dropped_.data(), store.param(w_), store.param(b_), logits_.data(), batch, h_, c_);
}

CrossEntropyStats ClassifierHead::Backward(ParamStore* store, const int32_t* labels,
                                           float grad_scale, float* d_seq) {
  const size_t B = static_cast<size_t>(batch_);
  dlogits_.resize(B * c_);
  CrossEntropyStats st = SoftmaxCrossEntropy(logits_.data(), labels, batch_, c_, c_,
                                             d_seq ? dlogits_.data() : nullptr, grad_scale);
  if (!d_seq) return st;
  dpooled_.resize(B * h_);
  LinearBackward(dlogits_.data(), dropped_.data(), store->param(w_), dpooled_.data(),
                 store->grad(w_), store->grad(b_), batch_, h_, c_);
  DropoutBackward(drop_, dpooled_.data(), dpooled_.data(), batch_, h_);
  std::memset(d_seq, 0, sizeof(float) * B * seq_len_ * h_);
  for (size_t b = 0; b < B; ++b)
    std::memcpy(d_seq + rows_[b] * h_, dpooled_.data() + b * h_, sizeof(float) * h_);
  return st;
}

}  // namespace roformer
