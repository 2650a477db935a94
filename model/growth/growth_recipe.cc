#include "model/growth/growth_recipe.h"

#include <cmath>

#include "model/growth/growth_optimizer_state.h"
#include "runtime/error.h"
#include "runtime/fnv1a.h"
#include "runtime/philox.h"

namespace roformer {

namespace {

std::string ShapeString(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

int64_t GrowthTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

AxisMap AxisMap::Identity(int64_t n) { return Prefix(n, n, n); }

AxisMap AxisMap::Tile(int64_t from, int64_t to) {
  AxisMap m;
  m.src.resize(to);
  for (int64_t j = 0; j < to; ++j) m.src[j] = j % from;
  m.Recount(from);
  return m;
}

AxisMap AxisMap::Prefix(int64_t from, int64_t valid, int64_t to) {
  AxisMap m;
  m.src.resize(to);
  for (int64_t j = 0; j < to; ++j) m.src[j] = j < valid && j < from ? j : -1;
  m.Recount(from);
  return m;
}

void AxisMap::Recount(int64_t from) {
  count.assign(from, 0);
  for (int64_t s : src) {
    if (s >= 0) ++count[s];
  }
}

double GrowthNormal(uint64_t seed, const std::string& name, GrowthDraw purpose, uint64_t index) {
  const uint64_t stream = MixStream(Fnv1a64(name), static_cast<uint64_t>(purpose));
  const auto w = Philox4x32(stream, index, seed);
  const double u1 = (static_cast<double>(w[0]) + 1.0) * 0x1.0p-32;  // (0, 1]
  const double u2 = static_cast<double>(w[1]) * 0x1.0p-32;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

GrowthTensor ApplyRecipe(const std::string& name, const GrowthTensor& src, const TensorRecipe& r,
                         uint64_t seed, double noise_std) {
  const bool one_d = src.shape.size() == 1;
  if (src.shape.empty() || src.shape.size() > 2) {
    Fail("growth: tensor ", name, " has shape ", ShapeString(src.shape), "; expected 1-D or 2-D");
  }
  const int64_t R0 = src.shape[0], C0 = one_d ? 1 : src.shape[1];
  if (static_cast<int64_t>(r.rows.count.size()) != R0 ||
      static_cast<int64_t>(r.cols.count.size()) != C0) {
    Fail("growth: tensor ", name, " has shape ", ShapeString(src.shape),
         " but the growth plan expects a source of [", r.rows.count.size(), ", ",
         r.cols.count.size(), "] (checkpoint and model config disagree?)");
  }
  const int64_t R = r.rows.size(), C = r.cols.size();
  GrowthTensor out;
  out.shape = one_d ? std::vector<int64_t>{R} : std::vector<int64_t>{R, C};
  out.param.assign(static_cast<size_t>(R * C), 0.0f);
  const bool noisy = r.split_axis >= 0 && noise_std > 0.0;
#pragma omp parallel
  {
    std::vector<double> z, sums;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < R; ++i) {
      const int64_t si = r.rows.src[i];
      // Zero-sum noise when the split runs along the columns (the usual in-dim of [out, in]):
      // Δ[i, j] = z[i, j] - mean of z over the copies j' of the same source column.
      if (noisy && r.split_axis == 1 && si >= 0) {
        z.assign(C, 0.0);
        sums.assign(C0, 0.0);
        for (int64_t j = 0; j < C; ++j) {
          const int64_t sj = r.cols.src[j];
          if (sj < 0 || r.cols.count[sj] < 2) continue;
          z[j] = GrowthNormal(seed, name, GrowthDraw::kSplitNoise, i * C + j) * noise_std;
          sums[sj] += z[j];
        }
      }
      for (int64_t j = 0; j < C; ++j) {
        const int64_t sj = r.cols.src[j];
        const int64_t at = i * C + j;
        if (si < 0 || sj < 0) {
          switch (r.fill) {
            case NewFill::kZero:
              break;
            case NewFill::kOne:
              out.param[at] = 1.0f;
              break;
            case NewFill::kNormal:
              out.param[at] = static_cast<float>(
                  GrowthNormal(seed, name, GrowthDraw::kNewUnit, at) * r.fill_std);
              break;
          }
          continue;
        }
        double v = r.scale * static_cast<double>(src.param[si * C0 + sj]);
        if (r.split_axis == 0) v /= static_cast<double>(r.rows.count[si]);
        if (r.split_axis == 1) {
          v /= static_cast<double>(r.cols.count[sj]);
          if (noisy && r.cols.count[sj] >= 2) v += z[j] - sums[sj] / r.cols.count[sj];
        }
        out.param[at] = static_cast<float>(v);
      }
    }
  }
  if (noisy && r.split_axis == 0) {
    // Split along the rows (not used by the width table today, kept general): per column.
    for (int64_t j = 0; j < C; ++j) {
      if (r.cols.src[j] < 0) continue;
      std::vector<double> zz(R, 0.0), ss(R0, 0.0);
      for (int64_t i = 0; i < R; ++i) {
        const int64_t si = r.rows.src[i];
        if (si < 0 || r.rows.count[si] < 2) continue;
        zz[i] = GrowthNormal(seed, name, GrowthDraw::kSplitNoise, i * C + j) * noise_std;
        ss[si] += zz[i];
      }
      for (int64_t i = 0; i < R; ++i) {
        const int64_t si = r.rows.src[i];
        if (si < 0 || r.rows.count[si] < 2) continue;
        out.param[i * C + j] = static_cast<float>(static_cast<double>(out.param[i * C + j]) +
                                                  zz[i] - ss[si] / r.rows.count[si]);
      }
    }
  }
  if (src.has_moments()) MapAdamMoments(src, r, &out);
  return out;
}

}  // namespace roformer
