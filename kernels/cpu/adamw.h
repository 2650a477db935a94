// AdamW (Loshchilov & Hutter) over a flat parameter buffer, in torch.optim.AdamW's arithmetic:
//   p -= lr * wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
// Segments carry per-tensor flags (decay off for LayerNorm weights and biases; an lr multiplier).
#pragma once

#include <cstdint>
#include <span>

namespace roformer {

struct AdamWSegment {
  int64_t offset = 0, numel = 0;
  bool decay = true;
  float lr_mult = 1.0f;
};

struct AdamWHyper {
  float lr = 1e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-6f, weight_decay = 0.01f;
  int64_t step = 1;         // 1-based update count (bias correction)
  float grad_scale = 1.0f;  // multiplies g first (clipping / loss-scale undo)
};

void AdamWUpdateFlat(float* params, const float* grads, float* m, float* v,
                     std::span<const AdamWSegment> segments, const AdamWHyper& h);

// Sum of squares in double over a fixed chunking (bit-reproducible for any thread count).
double SumSquaresFlat(const float* x, int64_t n);

}  // namespace roformer
