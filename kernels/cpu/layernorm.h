// LayerNorm over the last dimension (biased variance, eps inside the sqrt, as torch).
#pragma once

#include <cstdint>

namespace roformer {

// y = (x - mean) * rstd * gamma + beta per row; saves mean and rstd [rows] for the backward.
// y may alias x.
void LayerNormForward(const float* x, const float* gamma, const float* beta, float* y, float* mean,
                      float* rstd, int64_t rows, int dim, float eps);

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma, xhat = (x - mean) * rstd;
// dx overwritten (or added when accumulate_dx); dgamma/dbeta accumulate. dx must not alias dy
// when accumulate_dx is set.
void LayerNormBackward(const float* dy, const float* x, const float* mean, const float* rstd,
                       const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t rows,
                       int dim, bool accumulate_dx = false);

}  // namespace roformer
