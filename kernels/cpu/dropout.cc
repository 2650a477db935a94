#include "kernels/cpu/dropout.h"

#include <array>

#include "runtime/philox.h"

namespace roformer {

uint64_t DropoutStreamId(uint64_t step, uint32_t micro, uint32_t layer, uint32_t op) {
  uint64_t h = MixStream(0x64726F706F7574ull /* "dropout" */, step);
  h = MixStream(h, micro);
  h = MixStream(h, layer);
  return MixStream(h, op);
}

bool DropoutKeep(const DropoutSpec& s, int64_t row, int64_t col) {
  const uint64_t idx = static_cast<uint64_t>(row * s.cols_global + s.col_offset + col);
  return UniformFromCounter(s.key, s.stream, idx) >= s.p;
}

namespace {

// Applies f(i, scale_or_zero) to each local element of one row, drawing one Philox block per four
// consecutive logical indices.
template <typename F>
inline void ForEachMaskedRow(const DropoutSpec& s, int64_t row, int64_t cols, float scale, F&& f) {
  const uint64_t base = static_cast<uint64_t>(row * s.cols_global + s.col_offset);
  uint64_t cached = ~uint64_t{0};
  std::array<uint32_t, 4> block{};
  for (int64_t c = 0; c < cols; ++c) {
    const uint64_t idx = base + static_cast<uint64_t>(c);
    if ((idx >> 2) != cached) {
      cached = idx >> 2;
      block = Philox4x32(s.stream, cached, s.key);
    }
    const bool keep = U32ToUniform01f(block[idx & 3]) >= s.p;
    f(c, keep ? scale : 0.0f);
  }
}

}  // namespace

void DropoutForward(const DropoutSpec& s, const float* x, float* y, int64_t rows, int64_t cols) {
  if (s.p <= 0.0f) {
    if (x != y) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < rows * cols; ++i) y[i] = x[i];
    }
    return;
  }
  // torch's fused dropout multiplies by a float mask/(1-p).
  const float scale = 1.0f / (1.0f - s.p);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    ForEachMaskedRow(s, r, cols, scale, [&](int64_t c, float m) { yr[c] = xr[c] * m; });
  }
}

void DropoutBackward(const DropoutSpec& s, const float* dy, float* dx, int64_t rows, int64_t cols) {
  DropoutForward(s, dy, dx, rows, cols);
}

void BiasDropoutResidualForward(const DropoutSpec& s, float* y, const float* bias,
                                const float* residual, int64_t rows, int64_t cols) {
  const float scale = s.p > 0.0f ? 1.0f / (1.0f - s.p) : 1.0f;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * cols;
    const float* res = residual + r * cols;
    if (s.p <= 0.0f) {
      for (int64_t c = 0; c < cols; ++c) yr[c] = res[c] + (bias ? yr[c] + bias[c] : yr[c]);
    } else {
      ForEachMaskedRow(s, r, cols, scale, [&](int64_t c, float m) {
        yr[c] = res[c] + (bias ? yr[c] + bias[c] : yr[c]) * m;
      });
    }
  }
}

}  // namespace roformer
