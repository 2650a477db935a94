#include "kernels/cpu/layernorm.h"

#include <algorithm>
#include <cmath>

namespace roformer {

void LayerNormForward(const float* x, const float* gamma, const float* beta, float* y, float* mean,
                      float* rstd, int64_t rows, int dim, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double s = 0;
    for (int i = 0; i < dim; ++i) s += xr[i];
    const double mu = s / dim;
    double ss = 0;
    for (int i = 0; i < dim; ++i) {
      const double d = xr[i] - mu;
      ss += d * d;
    }
    const float m = static_cast<float>(mu);
    const float rs = static_cast<float>(1.0 / std::sqrt(ss / dim + static_cast<double>(eps)));
    mean[r] = m;
    rstd[r] = rs;
    // torch's CPU kernel form: (x * rstd + (-mean * rstd)) * gamma + beta.
    const float shift = -m * rs;
    float* yr = y + r * dim;
    for (int i = 0; i < dim; ++i) yr[i] = (xr[i] * rs + shift) * gamma[i] + beta[i];
  }
}

void LayerNormBackward(const float* dy, const float* x, const float* mean, const float* rstd,
                       const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t rows,
                       int dim, bool accumulate_dx) {
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      const float m = mean[r], rs = rstd[r];
      double sg = 0, sgx = 0;
      for (int i = 0; i < dim; ++i) {
        const float g = dyr[i] * gamma[i];
        sg += g;
        sgx += static_cast<double>(g) * ((xr[i] - m) * rs);
      }
      const float mg = static_cast<float>(sg / dim), mgx = static_cast<float>(sgx / dim);
      float* dxr = dx + r * dim;
      for (int i = 0; i < dim; ++i) {
        const float g = dyr[i] * gamma[i];
        const float v = rs * (g - mg - (xr[i] - m) * rs * mgx);
        dxr[i] = accumulate_dx ? dxr[i] + v : v;
      }
    }
  }
  if (dgamma || dbeta) {
    // Column blocks in parallel, rows in a fixed order: deterministic and race-free.
    constexpr int kBlock = 64;
    const int blocks = (dim + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < blocks; ++blk) {
      const int c0 = blk * kBlock, c1 = std::min(dim, c0 + kBlock);
      float ag[kBlock] = {}, ab[kBlock] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * dim;
        const float* dyr = dy + r * dim;
        const float m = mean[r], rs = rstd[r];
        for (int c = c0; c < c1; ++c) {
          ag[c - c0] += dyr[c] * ((xr[c] - m) * rs);
          ab[c - c0] += dyr[c];
        }
      }
      for (int c = c0; c < c1; ++c) {
        if (dgamma) dgamma[c] += ag[c - c0];
        if (dbeta) dbeta[c] += ab[c - c0];
      }
    }
  }
}

}  // namespace roformer
