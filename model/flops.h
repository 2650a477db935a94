// Model FLOPs of a training step (forward + backward = 3x forward; no recomputation counted),
// the numerator of MFU. Counts matmuls only (elementwise ops are noise at these shapes).
#pragma once

#include "model/roformer_model.h"

namespace roformer {

// Forward FLOPs for one sequence of length L with `masked` MLM positions.
inline double ForwardFlopsPerSequence(const ModelDims& d, int L, double masked, bool sop) {
  const double H = d.hidden, E = d.embedding, I = d.intermediate, V = d.vocab_padded;
  double per_token_layer = 2.0 * (4.0 * H * H + 2.0 * H * I);       // Q,K,V,O + FFN1,FFN2
  double attention_layer = 2.0 * 2.0 * static_cast<double>(L) * H;  // QK^T and PV per token
  double encoder = static_cast<double>(L) * d.layers * (per_token_layer + attention_layer);
  if (E != H) encoder += 2.0 * L * E * H;       // embeddings_project
  double mlm = masked * 2.0 * (H * E + E * V);  // transform + tied decoder
  double sop_flops = sop ? 2.0 * (H * H + 2.0 * H) : 0.0;
  return encoder + mlm + sop_flops;
}

inline double TrainFlopsPerSequence(const ModelDims& d, int L, double masked, bool sop) {
  return 3.0 * ForwardFlopsPerSequence(d, L, masked, sop);
}

}  // namespace roformer
