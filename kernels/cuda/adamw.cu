// AdamW on fp32 master weights (model/optimizer.h's AdamWStepRange): decoupled weight decay in
// torch.optim.AdamW's order (shrink the weight, then take the Adam step), bias corrections from
// the same fp32 betas as the moments, global-norm clipping folded into the gradient scale.
#include <algorithm>
#include <cmath>

#include "kernels/cuda/adamw_element.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace roformer::cuda {
namespace {

__global__ void AdamWKernel(AdamWCoefficients c, float decay, float* w, const float* g, float* m,
                            float* v, int64_t n, bf16* w16) {
  ROFORMER_GRID_STRIDE(i, n) {
    float wi = w[i], mi = m[i], vi = v[i];
    AdamWElement(c, decay, g[i], &wi, &mi, &vi);
    w[i] = wi;
    m[i] = mi;
    v[i] = vi;
    if (w16) w16[i] = __float2bfloat16_rn(wi);
  }
}

}  // namespace

AdamWCoefficients MakeAdamWCoefficients(double beta1, double beta2, double eps, double lr,
                                        int64_t step, double grad_clip, double grad_norm) {
  // Same arithmetic as AdamWStepRange (model/optimizer.cc), line for line.
  double clip = 1.0;
  if (grad_clip > 0) clip = std::min(1.0, grad_clip / (grad_norm + 1e-6));
  const float b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2);
  const double bc1 = 1.0 - std::pow(static_cast<double>(b1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(b2), static_cast<double>(step));
  AdamWCoefficients c;
  c.b1 = b1;
  c.b2 = b2;
  c.step_size = static_cast<float>(lr / bc1);
  c.inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  c.eps = static_cast<float>(eps);
  c.clip = static_cast<float>(clip);
  return c;
}

void AdamWUpdate(const AdamWCoefficients& c, float decay, float* w, const float* g, float* m,
                 float* v, int64_t n, bf16* weights_bf16, cudaStream_t stream) {
  if (n <= 0) return;
  AdamWKernel<<<GridFor(n, 256), 256, 0, stream>>>(c, decay, w, g, m, v, n, weights_bf16);
  ROFORMER_CUDA_LAUNCH_CHECK();
}

}  // namespace roformer::cuda
