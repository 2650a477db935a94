// The per-element AdamW update shared by the CUDA kernel (adamw.cu) and the host-side test
// (tests/gpu/cuda_host_test.cc, which checks it against model/optimizer.cc without a GPU).
#pragma once

#include <cmath>

#include "kernels/cuda/ops.h"
#include "kernels/cuda/philox_device.cuh"  // ROFORMER_HD

namespace roformer::cuda {

// model/optimizer.cc's loop body: moments with the fp32 betas, then decoupled decay applied to the
// weight before the Adam step (torch.optim.AdamW's order).
ROFORMER_HD void AdamWElement(const AdamWCoefficients& c, float decay, float g, float* w, float* m,
                              float* v) {
  const float gi = g * c.clip;
  *m = c.b1 * *m + (1.0f - c.b1) * gi;
  *v = c.b2 * *v + (1.0f - c.b2) * gi * gi;
  const float denom = sqrtf(*v) * c.inv_sqrt_bc2 + c.eps;
  const float decayed = *w * (1.0f - decay);
  *w = decayed - c.step_size * (*m / denom);
}

}  // namespace roformer::cuda
