#include "model/growth/growth_head_dim.h"

#include <cmath>

namespace roformer {

int64_t StrideSourceChannel(int64_t t, int head_dim, int k_d) {
  const int64_t pair = t / 2;
  if (pair % k_d != 0) return -1;
  const int64_t old_pair = pair / k_d;
  if (old_pair >= head_dim / 2) return -1;
  return old_pair * 2 + (t % 2);
}

AxisMap HeadChannelMap(int heads, int head_dim, int k_heads, int k_d) {
  const int64_t d_new = static_cast<int64_t>(head_dim) * k_d;
  const int64_t heads_new = static_cast<int64_t>(heads) * k_heads;
  AxisMap m;
  m.src.resize(heads_new * d_new);
  for (int64_t e = 0; e < heads_new; ++e) {
    for (int64_t t = 0; t < d_new; ++t) {
      const int64_t s = StrideSourceChannel(t, head_dim, k_d);
      m.src[e * d_new + t] = s < 0 ? -1 : (e % heads) * head_dim + s;
    }
  }
  m.Recount(static_cast<int64_t>(heads) * head_dim);
  return m;
}

double KeyScaleForHeadDim(int k_d) { return std::sqrt(static_cast<double>(k_d)); }

}  // namespace roformer
