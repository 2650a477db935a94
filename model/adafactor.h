// AdaFactor (Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory
// Cost", arXiv 1804.04235), in the variant of bert4keras' AdaFactor that the CLUE baseline uses
// (seeds.md §5.1), for one step t = 1, 2, ... on gradient g of parameter p:
//   beta2_t = 1 - t^(-decay_rate)                      (decay_rate 0.8; so v_1 = g^2 exactly)
//   G = g^2 + eps1                                     (eps1 = 1e-30)
//   unfactored: v = beta2_t v + (1 - beta2_t) G
//   factored (2-D [R, C] with min(R, C) >= min_dim_size_to_factor): keep only
//     r_i = beta2_t r_i + (1 - beta2_t) mean_j G_ij,   c_j = beta2_t c_j + (1 - beta2_t) mean_i
//     G_ij and use v_ij = r_i c_j / mean_i r_i              (rank-1 reconstruction of the second
//     moment)
//   u = g / sqrt(v)
//   u = u / max(1, RMS(u) / clipping_threshold)        (update clipping, threshold 1)
//   m = beta1 m + (1 - beta1) u; u = m                 (momentum on the clipped update, beta1 0.9)
//   u = u * max(RMS(p), eps2)                          (multiply_by_parameter_scale, eps2 = 1e-3)
//   p = p - lr u
// RMS is over the whole tensor. No weight decay and no schedule in the baseline (lr 5e-4). The
// baseline sets min_dim_size_to_factor = 1e6, so nothing is factored there; our default is
// bert4keras' class default, 128, which factors every H x H and H x I matrix.
// Tensors of more than two dims are factored as [numel / last, last].
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/param_store.h"

namespace roformer {

struct AdaFactorOptions {
  double beta1 = 0.9;  // 0 = no momentum (and no first-moment memory)
  double decay_rate = 0.8;
  double eps1 = 1e-30;
  double eps2 = 1e-3;
  double clipping_threshold = 1.0;  // 0 = no update clipping
  bool multiply_by_parameter_scale = true;
  int64_t min_dim_size_to_factor = 128;
};

class AdaFactor {
 public:
  // Sizes the state for the tensors of `store` for which include(info) is true (all when empty);
  // the others are never updated.
  AdaFactor(const ParamStore& store, const AdaFactorOptions& opt,
            std::function<bool(const ParamInfo&)> include = {});

  // One update of every included tensor from store->grads() (gradients are not modified).
  void Step(ParamStore* store, double lr);

  int64_t step() const { return t_; }
  bool IsFactored(const std::string& name) const;
  // Bytes of optimizer state (for logs: factoring is the point of the method).
  int64_t StateFloats() const;

 private:
  struct TensorState {
    size_t info = 0;             // index into store.infos()
    int64_t rows = 0, cols = 0;  // 2-D view
    bool factored = false;
    std::vector<float> m, v, r, c;
    std::vector<double> cacc;  // scratch: column sums of G
  };
  AdaFactorOptions opt_;
  std::vector<TensorState> state_;
  std::vector<std::string> names_;
  int64_t t_ = 0;
};

}  // namespace roformer
