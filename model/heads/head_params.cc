#include "model/heads/head_params.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "runtime/philox.h"

namespace roformer {

void InitHeadParams(ParamStore* store, uint64_t seed, float std) {
  const auto& infos = store->infos();
  for (size_t t = 0; t < infos.size(); ++t) {
    const ParamInfo& info = infos[t];
    float* p = store->params().data() + info.offset;
    const bool is_weight =
        info.name.size() >= 7 && info.name.compare(info.name.size() - 7, 7, ".weight") == 0;
    for (int64_t i = 0; i < info.numel; ++i) {
      if (!is_weight) {
        p[i] = 0.0f;
        continue;
      }
      const double u1 = std::max(Uniform01(seed, t + 1, 2 * static_cast<uint64_t>(i)), 1e-300);
      const double u2 = Uniform01(seed, t + 1, 2 * static_cast<uint64_t>(i) + 1);
      p[i] = static_cast<float>(std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * M_PI * u2));
    }
  }
}

DropoutSpec HeadDropoutSpec(float p, uint64_t seed, uint64_t stream, int64_t hidden) {
  DropoutSpec s;
  if (p <= 0.0f) return s;
  s.p = p;
  s.key = seed;
  s.stream = stream;
  s.cols_global = hidden;
  s.col_offset = 0;
  return s;
}

void GatherRows(const float* x, const int64_t* rows, int64_t n, int64_t hidden, float* y) {
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(y + i * hidden, x + rows[i] * hidden, sizeof(float) * hidden);
}

}  // namespace roformer
