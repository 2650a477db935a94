#include "model/growth/growth_optimizer_state.h"

namespace roformer {

double GrowthGradientRatio(const TensorRecipe& r, int64_t src_row, int64_t src_col) {
  double c_out = 1.0;
  if (r.out_axis == 0) c_out = static_cast<double>(r.rows.count[src_row]);
  if (r.out_axis == 1) c_out = static_cast<double>(r.cols.count[src_col]);
  return 1.0 / (r.scale * c_out);
}

void MapAdamMoments(const GrowthTensor& src, const TensorRecipe& r, GrowthTensor* dst) {
  const int64_t C0 = src.shape.size() == 1 ? 1 : src.shape[1];
  const int64_t R = r.rows.size(), C = r.cols.size();
  dst->m.assign(static_cast<size_t>(R * C), 0.0f);
  dst->v.assign(static_cast<size_t>(R * C), 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < R; ++i) {
    const int64_t si = r.rows.src[i];
    if (si < 0) continue;
    for (int64_t j = 0; j < C; ++j) {
      const int64_t sj = r.cols.src[j];
      if (sj < 0) continue;
      const double ratio = GrowthGradientRatio(r, si, sj);
      const int64_t from = si * C0 + sj;
      dst->m[i * C + j] = static_cast<float>(static_cast<double>(src.m[from]) * ratio);
      dst->v[i * C + j] = static_cast<float>(static_cast<double>(src.v[from]) * ratio * ratio);
    }
  }
}

void ZeroAdamMoments(GrowthTensor* t, bool with_moments) {
  if (with_moments) {
    t->m.assign(t->param.size(), 0.0f);
    t->v.assign(t->param.size(), 0.0f);
  } else {
    t->m.clear();
    t->v.clear();
  }
}

}  // namespace roformer
