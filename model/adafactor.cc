#include "model/adafactor.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>

namespace roformer {

AdaFactor::AdaFactor(const ParamStore& store, const AdaFactorOptions& opt,
                     std::function<bool(const ParamInfo&)> include)
    : opt_(opt) {
  const auto& infos = store.infos();
  for (size_t i = 0; i < infos.size(); ++i) {
    const ParamInfo& info = infos[i];
    if (include && !include(info)) continue;
    TensorState s;
    s.info = i;
    const auto& shape = info.local_shape;
    s.cols = shape.empty() ? 1 : shape.back();
    s.rows = s.cols > 0 ? info.numel / s.cols : 0;
    s.factored = shape.size() >= 2 && std::min(s.rows, s.cols) >= opt.min_dim_size_to_factor;
    if (opt.beta1 > 0) s.m.assign(info.numel, 0.0f);
    if (s.factored) {
      s.r.assign(s.rows, 0.0f);
      s.c.assign(s.cols, 0.0f);
      s.cacc.assign(s.cols, 0.0);
    } else {
      s.v.assign(info.numel, 0.0f);
    }
    state_.push_back(std::move(s));
    names_.push_back(info.name);
  }
}

bool AdaFactor::IsFactored(const std::string& name) const {
  for (size_t i = 0; i < names_.size(); ++i)
    if (names_[i] == name) return state_[i].factored;
  return false;
}

int64_t AdaFactor::StateFloats() const {
  int64_t n = 0;
  for (const TensorState& s : state_) n += s.m.size() + s.v.size() + s.r.size() + s.c.size();
  return n;
}

void AdaFactor::Step(ParamStore* store, double lr) {
  ++t_;
  const double beta2 = 1.0 - std::pow(static_cast<double>(t_), -opt_.decay_rate);
  const auto& infos = store->infos();
  // Three passes per tensor (second moment; RMS of u and of p; update) so a step allocates
  // nothing: u is recomputed from g and the second moment instead of being stored.
#pragma omp parallel for schedule(dynamic)
  for (size_t k = 0; k < state_.size(); ++k) {
    TensorState& s = state_[k];
    const ParamInfo& info = infos[s.info];
    float* p = store->params().data() + info.offset;
    const float* g = store->grads().data() + info.offset;
    const int64_t n = info.numel, R = s.rows, C = s.cols;
    if (n == 0) continue;
    double rbar = 0;
    if (s.factored) {
      std::fill(s.cacc.begin(), s.cacc.end(), 0.0);
      for (int64_t i = 0; i < R; ++i) {
        double row = 0;
        for (int64_t j = 0; j < C; ++j) {
          const double G = static_cast<double>(g[i * C + j]) * g[i * C + j] + opt_.eps1;
          row += G;
          s.cacc[j] += G;
        }
        s.r[i] = static_cast<float>(beta2 * s.r[i] + (1 - beta2) * row / C);
        rbar += s.r[i];
      }
      rbar /= R;
      for (int64_t j = 0; j < C; ++j)
        s.c[j] = static_cast<float>(beta2 * s.c[j] + (1 - beta2) * s.cacc[j] / R);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const double G = static_cast<double>(g[i]) * g[i] + opt_.eps1;
        s.v[i] = static_cast<float>(beta2 * s.v[i] + (1 - beta2) * G);
      }
    }
    auto raw_u = [&](int64_t i) {
      const double v = s.factored ? static_cast<double>(s.r[i / C]) * s.c[i % C] / rbar
                                  : static_cast<double>(s.v[i]);
      return g[i] / std::sqrt(v);
    };
    double uu = 0, pp = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double u = raw_u(i);
      uu += u * u;
      pp += static_cast<double>(p[i]) * p[i];
    }
    const double div = opt_.clipping_threshold > 0
                           ? std::max(1.0, std::sqrt(uu / n) / opt_.clipping_threshold)
                           : 1.0;
    const double scale =
        lr * (opt_.multiply_by_parameter_scale ? std::max(std::sqrt(pp / n), opt_.eps2) : 1.0);
    for (int64_t i = 0; i < n; ++i) {
      double u = raw_u(i) / div;
      if (opt_.beta1 > 0) {
        s.m[i] = static_cast<float>(opt_.beta1 * s.m[i] + (1 - opt_.beta1) * u);
        u = s.m[i];
      }
      p[i] = static_cast<float>(p[i] - scale * u);
    }
  }
}

}  // namespace roformer
