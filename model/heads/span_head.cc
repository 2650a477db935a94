#include "model/heads/span_head.h"

#include <glog/logging.h>

#include <algorithm>

#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/linear.h"
#include "model/heads/head_params.h"

namespace roformer {

SpanHead::SpanHead(int hidden, std::string prefix)
    : h_(hidden), w_(prefix + ".weight"), b_(prefix + ".bias") {
  CHECK_GT(hidden, 0);
}

void SpanHead::Declare(ParamStore* store) const {
  store->Declare(w_, {2, h_}, Placement::kReplicated, /*weight_decay=*/true);
  store->Declare(b_, {2}, Placement::kReplicated, /*weight_decay=*/false);
}

void SpanHead::Forward(const ParamStore& store, const float* seq, int batch, int seq_len,
                       const uint8_t* allowed) {
  batch_ = batch;
  seq_len_ = seq_len;
  seq_ = seq;
  const size_t BL = static_cast<size_t>(batch) * seq_len;
  raw_.resize(BL * 2);
  start_.resize(BL);
  end_.resize(BL);
  LinearForward(seq, store.param(w_), store.param(b_), raw_.data(), static_cast<int64_t>(BL), h_,
                2);
  for (size_t i = 0; i < BL; ++i) {
    const bool ok = allowed == nullptr || allowed[i] != 0;
    start_[i] = ok ? raw_[2 * i] : kMaskedLogit;
    end_[i] = ok ? raw_[2 * i + 1] : kMaskedLogit;
  }
}

SpanLossStats SpanHead::Backward(ParamStore* store, const int32_t* start_labels,
                                 const int32_t* end_labels, float grad_scale, float* d_seq) {
  const size_t BL = static_cast<size_t>(batch_) * seq_len_;
  for (int b = 0; b < batch_; ++b) {
    CHECK(start_labels[b] >= 0 && start_labels[b] < seq_len_ && end_labels[b] >= 0 &&
          end_labels[b] < seq_len_)
        << "span label outside the sequence";
    CHECK(start_[static_cast<size_t>(b) * seq_len_ + start_labels[b]] != kMaskedLogit &&
          end_[static_cast<size_t>(b) * seq_len_ + end_labels[b]] != kMaskedLogit)
        << "span label at a masked position";
  }
  const bool bwd = d_seq != nullptr;
  dstart_.resize(BL);
  dend_.resize(BL);
  const float half = 0.5f * grad_scale;
  const CrossEntropyStats s = SoftmaxCrossEntropy(start_.data(), start_labels, batch_, seq_len_,
                                                  seq_len_, bwd ? dstart_.data() : nullptr, half);
  const CrossEntropyStats e = SoftmaxCrossEntropy(end_.data(), end_labels, batch_, seq_len_,
                                                  seq_len_, bwd ? dend_.data() : nullptr, half);
  SpanLossStats st;
  st.loss_sum = 0.5 * (s.loss_sum + e.loss_sum);
  st.count = s.count;
  st.start_correct = s.correct;
  st.end_correct = e.correct;
  if (!bwd) return st;
  draw_.resize(BL * 2);
  for (size_t i = 0; i < BL; ++i) {
    draw_[2 * i] = dstart_[i];
    draw_[2 * i + 1] = dend_[i];
  }
  LinearBackward(draw_.data(), seq_, store->param(w_), d_seq, store->grad(w_), store->grad(b_),
                 static_cast<int64_t>(BL), h_, 2);
  return st;
}

SpanChoice BestSpan(const float* start_logits, const float* end_logits, const uint8_t* allowed,
                    int seq_len, int max_answer_tokens) {
  SpanChoice best;
  for (int s = 1; s < seq_len; ++s) {
    if (allowed && !allowed[s]) continue;
    const int last = std::min(seq_len - 1, s + max_answer_tokens - 1);
    for (int e = s; e <= last; ++e) {
      if (allowed && !allowed[e]) continue;
      const float score = start_logits[s] + end_logits[e];
      if (score > best.score) {
        best.score = score;
        best.start = s;
        best.end = e;
      }
    }
  }
  return best;
}

}  // namespace roformer
