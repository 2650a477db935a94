// Multiple-choice head (CLUE C3, ChID): every (question, choice) pair is its own sequence; the
// [CLS] vector of each -> dropout -> Dense(H -> 1) gives the choice's score, and a softmax over a
// question's choices gives the cross-entropy (bert4keras C3/CHID baselines, seeds.md §5.2;
// "scoring each choice separately is much better than a 4-way classification over concatenated
// choices").
//
// Questions may have different numbers of choices: sequences are packed, question q's choices
// being sequences [offsets[q], offsets[q+1]); the score matrix is [Q, K] with K = the largest
// choice count and the missing entries masked to kMaskedLogit (zero probability, zero gradient).
// (The baseline instead pads C3 to 4 choices with the text '无效答案' and lets the model score
// them; masking keeps predictions inside the real choices, which CLUE's scorer requires.)
//
// Parameters: <prefix>.weight [1, H], <prefix>.bias [1].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/dropout.h"
#include "runtime/param_store.h"

namespace roformer {

class MultipleChoiceHead {
 public:
  explicit MultipleChoiceHead(int hidden, std::string prefix = "heads.choice");

  void Declare(ParamStore* store) const;

  // seq: [N*L, H] for N = offsets.back() sequences; offsets: [Q+1], non-decreasing, offsets[0] = 0,
  // at least one choice per question. Fills scores() [Q, max_choices()].
  void Forward(const ParamStore& store, const float* seq, int seq_len,
               const std::vector<int32_t>& offsets, const DropoutSpec& drop);
  const std::vector<float>& scores() const { return scores_; }
  int max_choices() const { return k_; }
  int num_questions() const { return q_; }

  // Cross-entropy over each question's choices (labels [Q], < 0 ignored). With d_seq non-null:
  // param grads accumulate (scaled by grad_scale), d_seq [N*L, H] is overwritten.
  CrossEntropyStats Backward(ParamStore* store, const int32_t* labels, float grad_scale,
                             float* d_seq);

 private:
  int h_;
  std::string w_, b_;
  int q_ = 0, k_ = 0, n_ = 0, seq_len_ = 0;
  DropoutSpec drop_;
  std::vector<int32_t> offsets_;
  std::vector<int64_t> rows_;
  std::vector<float> pooled_, dropped_, raw_, scores_, dscores_, draw_, dpooled_;
};

}  // namespace roformer
