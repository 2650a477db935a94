// Elementwise activations: exact-erf GELU (HF "gelu" = torch.nn.functional.gelu, NOT the tanh
// approximation of TF BERT) and tanh (the SOP pooler).
#pragma once

#include <cstdint>

namespace roformer {

// y = 0.5 * x * (1 + erf(x / sqrt(2))); y may alias x only if the caller keeps x elsewhere for
// the backward.
void GeluForward(const float* x, float* y, int64_t n);
// dx = dy * (Phi(x) + x * phi(x)); dx may alias dy.
void GeluBackward(const float* dy, const float* x, float* dx, int64_t n);

void TanhForward(const float* x, float* y, int64_t n);
// dx = dy * (1 - y^2) from the saved output y; dx may alias dy.
void TanhBackward(const float* dy, const float* y, float* dx, int64_t n);

}  // namespace roformer
