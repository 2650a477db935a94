// Extractive span head (CMRC2018): Dense(H -> 2) on every position gives start and end logits;
// the loss is the mean of the start and the end softmax cross-entropies over the positions a span
// may use (BERT's SQuAD head). The bert4keras baseline uses a GlobalPointer over all (start, end)
// pairs instead (seeds.md §5.2); the start/end head is the cheaper classic and what HF's
// RoFormerForQuestionAnswering does. Windows of a long context that do not contain the answer are
// labelled (0, 0), the [CLS] position, which therefore stays an allowed position in training.
//
// Decoding (BestSpan): the best start <= end pair with at most max_answer_tokens tokens among the
// allowed positions, [CLS] excluded (the baseline sets the [CLS] logits to -inf at prediction);
// per question the best-scoring window wins (model/finetune.cc), and the token span is mapped back
// to code-point offsets of the context.
//
// Parameters: <prefix>.weight [2, H], <prefix>.bias [2] (row 0 = start, row 1 = end).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "runtime/param_store.h"

namespace roformer {

struct SpanLossStats {
  double loss_sum = 0;  // sum over sequences of (CE_start + CE_end) / 2
  int64_t count = 0;
  int64_t start_correct = 0, end_correct = 0;
};

class SpanHead {
 public:
  explicit SpanHead(int hidden, std::string prefix = "heads.span");

  void Declare(ParamStore* store) const;

  // seq: [B*L, H]. allowed: [B*L], 1 where a span may start/end (null: everywhere); the others
  // get kMaskedLogit in start_logits()/end_logits() ([B, L] each).
  void Forward(const ParamStore& store, const float* seq, int batch, int seq_len,
               const uint8_t* allowed);
  const std::vector<float>& start_logits() const { return start_; }
  const std::vector<float>& end_logits() const { return end_; }

  // Labels [B] are positions in [0, L) and must be allowed. `seq` of the last Forward must still
  // be valid (the weight gradient reads it). With d_seq non-null: param grads
  // accumulate (loss scaled by grad_scale), d_seq [B*L, H] is overwritten.
  SpanLossStats Backward(ParamStore* store, const int32_t* start_labels, const int32_t* end_labels,
                         float grad_scale, float* d_seq);

 private:
  int h_;
  std::string w_, b_;
  int batch_ = 0, seq_len_ = 0;
  const float* seq_ = nullptr;
  std::vector<float> raw_, start_, end_, dstart_, dend_, draw_;
};

struct SpanChoice {
  int start = -1, end = -1;  // token positions (inclusive); -1 when no position is allowed
  float score = -std::numeric_limits<float>::infinity();  // start_logit + end_logit
};

// Best span of one sequence: start <= end, end - start + 1 <= max_answer_tokens, both allowed
// (allowed[t] != 0) and both > 0 (never [CLS]).
SpanChoice BestSpan(const float* start_logits, const float* end_logits, const uint8_t* allowed,
                    int seq_len, int max_answer_tokens);

}  // namespace roformer
