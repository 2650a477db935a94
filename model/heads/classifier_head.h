// Sentence / sentence-pair classification head (CLUE AFQMC, TNEWS, IFLYTEK, CMNLI, OCNLI, WSC,
// CSL), as the bert4keras CLUE baseline (seeds.md §5.2): the [CLS] vector of the last layer ->
// dropout -> Dense(H -> C); softmax cross-entropy. (HF's RoFormerClassificationHead adds a
// dense+GELU layer before the output projection; the baseline does not, neither do we.)
//
// Parameters (in a head ParamStore, see head_params.h): <prefix>.weight [C, H], <prefix>.bias [C].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/dropout.h"
#include "runtime/param_store.h"

namespace roformer {

class ClassifierHead {
 public:
  ClassifierHead(int hidden, int num_labels, std::string prefix = "heads.classifier");

  void Declare(ParamStore* store) const;
  int num_labels() const { return c_; }

  // seq: encoder sequence output [B*L, H]; the pooled vector of sequence b is row b*L ([CLS]).
  // Fills logits() [B, C]. Keeps what Backward needs (valid until the next Forward).
  void Forward(const ParamStore& store, const float* seq, int batch, int seq_len,
               const DropoutSpec& drop);
  const std::vector<float>& logits() const { return logits_; }

  // Softmax cross-entropy of the last Forward against labels [B] (< 0: ignored). With d_seq
  // non-null it backpropagates loss * grad_scale: parameter grads ACCUMULATE into store->grads(),
  // d_seq [B*L, H] is OVERWRITTEN (zero except the [CLS] rows). Returns the unscaled loss sum.
  CrossEntropyStats Backward(ParamStore* store, const int32_t* labels, float grad_scale,
                             float* d_seq);

 private:
  int h_, c_;
  std::string w_, b_;
  int batch_ = 0, seq_len_ = 0;
  DropoutSpec drop_;
  std::vector<int64_t> rows_;
  std::vector<float> pooled_, dropped_, logits_, dlogits_, dpooled_;
};

}  // namespace roformer
