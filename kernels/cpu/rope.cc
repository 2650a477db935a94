#include "kernels/cpu/rope.h"

#include <cmath>

namespace roformer {

std::vector<float> RopeTable(int max_positions, int head_dim) {
  const int half = head_dim / 2;
  std::vector<float> t(static_cast<size_t>(max_positions) * head_dim);
  for (int p = 0; p < max_positions; ++p) {
    for (int i = 0; i < half; ++i) {
      // numpy: pos / np.power(10000, 2 * (j // 2) / dim), all float64.
      const double angle =
          static_cast<double>(p) / std::pow(10000.0, static_cast<double>(2 * i) / head_dim);
      t[static_cast<size_t>(p) * head_dim + i] = static_cast<float>(std::sin(angle));
      t[static_cast<size_t>(p) * head_dim + half + i] = static_cast<float>(std::cos(angle));
    }
  }
  return t;
}

namespace {
template <bool kInverse>
void Rotate(float* x, const float* table, int batch, int seq, int heads, int head_dim, int64_t ld) {
  const int half = head_dim / 2;
  const int64_t tokens = static_cast<int64_t>(batch) * seq;
#pragma omp parallel for schedule(static)
  for (int64_t tok = 0; tok < tokens; ++tok) {
    const int p = static_cast<int>(tok % seq);
    const float* sn = table + static_cast<int64_t>(p) * head_dim;
    const float* cs = sn + half;
    float* row = x + tok * ld;
    for (int h = 0; h < heads; ++h) {
      float* v = row + static_cast<int64_t>(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float x0 = v[2 * i], x1 = v[2 * i + 1], s = sn[i], c = cs[i];
        if (kInverse) {
          v[2 * i] = x0 * c + x1 * s;
          v[2 * i + 1] = x1 * c - x0 * s;
        } else {
          v[2 * i] = x0 * c - x1 * s;
          v[2 * i + 1] = x1 * c + x0 * s;
        }
      }
    }
  }
}
}  // namespace

void RopeForward(float* x, const float* table, int batch, int seq, int heads, int head_dim,
                 int64_t ld) {
  Rotate<false>(x, table, batch, seq, heads, head_dim, ld);
}

void RopeBackward(float* dx, const float* table, int batch, int seq, int heads, int head_dim,
                  int64_t ld) {
  Rotate<true>(dx, table, batch, seq, heads, head_dim, ld);
}

}  // namespace roformer
