#include "model/optimizer.h"

#include <algorithm>
#include <cmath>

namespace roformer {

GradCheck CheckGradients(const ParamStore& store) {
  GradCheck out;
  double total = 0;
  const float* g = store.grads().data();
  for (const auto& info : store.infos()) {
    double s = 0;
    const float* p = g + info.offset;
    for (int64_t i = 0; i < info.numel; ++i) s += static_cast<double>(p[i]) * p[i];
    if (!std::isfinite(s) && out.finite) {
      out.finite = false;
      out.first_bad = info.name;
    }
    total += s;
  }
  out.norm = std::sqrt(total);
  return out;
}

void AdamWStep(ParamStore* store, const AdamWOptions& opt, double lr, int64_t step,
               double grad_norm) {
  AdamWStepRange(store, opt, lr, step, grad_norm, 0, store->size());
}

void AdamWStepRange(ParamStore* store, const AdamWOptions& opt, double lr, int64_t step,
                    double grad_norm, int64_t range_begin, int64_t range_end) {
  // Same coefficient as torch.nn.utils.clip_grad_norm_ and Megatron: max_norm / (norm + 1e-6).
  double clip = 1.0;
  if (opt.grad_clip > 0) clip = std::min(1.0, opt.grad_clip / (grad_norm + 1e-6));
  // The moments are updated with the fp32 betas, so the bias corrections use the same values
  // (0.9f != 0.9: mixing them biases every early step by ~2e-7 relative).
  const float b1 = static_cast<float>(opt.beta1), b2 = static_cast<float>(opt.beta2);
  const double bc1 = 1.0 - std::pow(static_cast<double>(b1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(b2), static_cast<double>(step));
  const float step_size = static_cast<float>(lr / bc1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float eps = static_cast<float>(opt.eps);
  const float fclip = static_cast<float>(clip);
  float* w = store->params().data();
  float* g = store->grads().data();
  float* m = store->adam_m().data();
  float* v = store->adam_v().data();
  for (const auto& info : store->infos()) {
    const float decay = info.weight_decay ? static_cast<float>(lr * opt.weight_decay) : 0.0f;
    const int64_t begin = std::max(info.offset, range_begin);
    const int64_t end = std::min(info.offset + info.numel, range_end);
    if (begin >= end) continue;
#pragma omp parallel for schedule(static)
    for (int64_t i = begin; i < end; ++i) {
      float gi = g[i] * fclip;
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      const float denom = std::sqrt(v[i]) * inv_sqrt_bc2 + eps;
      // Decoupled decay (Loshchilov & Hutter), in torch.optim.AdamW's order: shrink the weight
      // first, then take the Adam step (same rounding as the PyTorch reference).
      const float decayed = w[i] * (1.0f - decay);
      w[i] = decayed - step_size * (m[i] / denom);
    }
  }
}

}  // namespace roformer
