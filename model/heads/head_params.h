// Shared pieces of the fine-tuning heads (classifier_head, multiple_choice_head, span_head).
//
// Head parameters live in their own ParamStore, separate from the encoder's (RoFormerModel::store):
// the encoder store keeps exactly the pretraining checkpoint's tensors (so a fine-tuned encoder is
// still readable by `roformer infer`, `convert --to-hf` and as another --init), and the head store
// holds the task's few tensors under "heads.<head>.*" names. model/finetune.cc saves them as two
// checkpoint roots (best/encoder, best/head).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/dropout.h"
#include "runtime/param_store.h"

namespace roformer {

// Initialises every tensor of `store` whose name ends in ".weight" from N(0, std) (Box-Muller over
// a Philox counter keyed by (seed, tensor index, element)), everything else to 0. The bert4keras
// baseline uses Keras' default glorot-uniform for its Dense heads; a small normal keeps the
// initial logits near zero (uniform predictions), as HF's classification heads do.
void InitHeadParams(ParamStore* store, uint64_t seed, float std);

// The dropout applied to the pooled vector of a head: a DropoutSpec over the logical [rows, H]
// tensor (p = 0: identity). `stream` should be unique per (step, micro-batch).
DropoutSpec HeadDropoutSpec(float p, uint64_t seed, uint64_t stream, int64_t hidden);

// Gathers rows `rows[i]` of x [*, H] into y [n, H].
void GatherRows(const float* x, const int64_t* rows, int64_t n, int64_t hidden, float* y);

// Large negative logit used for masked choices / positions: exp(kMaskedLogit - max) underflows to
// exactly 0 in float, so a masked entry gets zero probability and zero gradient, while staying
// finite (no inf - inf = NaN anywhere).
inline constexpr float kMaskedLogit = -1e30f;

}  // namespace roformer
