#include "kernels/cpu/adamw.h"

#include <cmath>

namespace roformer {

void AdamWUpdateFlat(float* params, const float* grads, float* m, float* v,
                     std::span<const AdamWSegment> segments, const AdamWHyper& h) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float b1 = h.beta1, b2 = h.beta2;
  for (const auto& seg : segments) {
    const float lr = h.lr * seg.lr_mult;
    const float step_size = static_cast<float>(lr / bc1);
    const float decay = seg.decay ? lr * h.weight_decay : 0.0f;
    float* p = params + seg.offset;
    const float* g = grads + seg.offset;
    float* mm = m + seg.offset;
    float* vv = v + seg.offset;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < seg.numel; ++i) {
      const float gi = g[i] * h.grad_scale;
      float pi = p[i] * (1.0f - decay);
      mm[i] = b1 * mm[i] + (1.0f - b1) * gi;
      vv[i] = b2 * vv[i] + (1.0f - b2) * gi * gi;
      const float denom = std::sqrt(vv[i]) * inv_sqrt_bc2 + h.eps;
      p[i] = pi - step_size * (mm[i] / denom);
    }
  }
}

double SumSquaresFlat(const float* x, int64_t n) {
  constexpr int kChunks = 256;
  double part[kChunks] = {};
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < kChunks; ++ch) {
    const int64_t i0 = n * ch / kChunks, i1 = n * (ch + 1) / kChunks;
    double s = 0;
    for (int64_t i = i0; i < i1; ++i) s += static_cast<double>(x[i]) * x[i];
    part[ch] = s;
  }
  double total = 0;
  for (int ch = 0; ch < kChunks; ++ch) total += part[ch];
  return total;
}

}  // namespace roformer
