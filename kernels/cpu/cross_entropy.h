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

}  // namespace roformer
