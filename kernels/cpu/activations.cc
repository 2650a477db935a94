#include "kernels/cpu/activations.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/vec_math.h"

namespace roformer {

namespace {
constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
}  // namespace

// Exact-erf GELU in L1-sized chunks: erf and exp run 16 lanes at a time (vec_math.h); the chunk
// grid is fixed by the absolute index, so the result does not depend on the thread count.
constexpr int64_t kGeluChunk = 2048;

void GeluForward(const float* x, float* y, int64_t n) {
  const int64_t chunks = (n + kGeluChunk - 1) / kGeluChunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kGeluChunk, m = std::min(kGeluChunk, n - i0);
    alignas(64) float e[kGeluChunk];
    VecErf(x + i0, e, m, kInvSqrt2);
    const float* xc = x + i0;
    float* yc = y + i0;
    for (int64_t i = 0; i < m; ++i) yc[i] = xc[i] * 0.5f * (1.0f + e[i]);
  }
}

void GeluBackward(const float* dy, const float* x, float* dx, int64_t n) {
  const int64_t chunks = (n + kGeluChunk - 1) / kGeluChunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kGeluChunk, m = std::min(kGeluChunk, n - i0);
    alignas(64) float e[kGeluChunk], g[kGeluChunk];
    const float* xc = x + i0;
    VecErf(xc, e, m, kInvSqrt2);
    for (int64_t i = 0; i < m; ++i) g[i] = -0.5f * xc[i] * xc[i];
    VecExp(g, g, m);
    const float* dyc = dy + i0;
    float* dxc = dx + i0;
    for (int64_t i = 0; i < m; ++i) {
      const float v = xc[i];
      const float cdf = 0.5f * (1.0f + e[i]);
      const float pdf = kInvSqrt2Pi * g[i];
      dxc[i] = dyc[i] * (cdf + v * pdf);
    }
  }
}

void TanhForward(const float* x, float* y, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

void TanhBackward(const float* dy, const float* y, float* dx, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

}  // namespace roformer
