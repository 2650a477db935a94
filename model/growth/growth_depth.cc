#include "model/growth/growth_depth.h"

#include <algorithm>
#include <optional>

#include "model/growth/growth_optimizer_state.h"
#include "runtime/error.h"

namespace roformer {

namespace {

const char* const kLayerPrefix = "roformer.encoder.layer.";

std::string LayerName(int l, const std::string& suffix) {
  return kLayerPrefix + std::to_string(l) + "." + suffix;
}

GrowthTensor Filled(std::vector<int64_t> shape, float value, bool with_moments) {
  GrowthTensor t;
  t.shape = std::move(shape);
  t.param.assign(static_cast<size_t>(t.numel()), value);
  ZeroAdamMoments(&t, with_moments);
  return t;
}

GrowthTensor Random(std::vector<int64_t> shape, const std::string& name, uint64_t seed, double std,
                    bool with_moments) {
  GrowthTensor t = Filled(std::move(shape), 0.0f, with_moments);
  for (int64_t i = 0; i < t.numel(); ++i) {
    t.param[i] = static_cast<float>(GrowthNormal(seed, name, GrowthDraw::kNewLayer, i) * std);
  }
  return t;
}

}  // namespace

GrowthTensors GrowDepth(const GrowthTensors& src, const config::ModelConfig& cfg,
                        std::vector<int> positions, uint64_t seed, double init_std) {
  const int L = cfg.num_hidden_layers();
  std::sort(positions.begin(), positions.end());
  for (int p : positions) {
    if (p < 0 || p > L) {
      Fail("growth: layer insertion position ", p, " outside [0, ", L,
           "] (p = insert after the first p layers; ", L, " = append at the top)");
    }
  }
  if (positions.empty()) return src;
  const bool real = cfg.realformer(), pre = cfg.pre_ln();
  if (real && cfg.realformer_running_mean() && positions.front() != L) {
    Fail(
        "growth: model.realformer_running_mean divides layer l's summed scores by l+1, so a layer "
        "inserted at position ",
        positions.front(), " (below the top, ", L,
        ") changes every later layer: not exact. Append at the top (--insert-layers ", L,
        ") or grow a running-sum RealFormer");
  }
  const int64_t H = cfg.hidden_size(), I = cfg.intermediate_size();
  const int E = cfg.embedding_size() > 0 ? cfg.embedding_size() : cfg.hidden_size();
  if (!pre && positions.front() == 0 && E != H) {
    Fail(
        "growth: Post-LN insertion at position 0 moves the embedding LayerNorm affine onto the "
        "new layer, which needs embedding_size == hidden_size (here embeddings_project sits in "
        "between); insert at a position >= 1");
  }

  // Split the tensors into the per-layer tables and the rest.
  GrowthTensors out;
  std::vector<std::map<std::string, GrowthTensor>> layers(L);
  bool with_moments = false;
  for (const auto& [name, t] : src) {
    with_moments = with_moments || t.has_moments();
    if (name.rfind(kLayerPrefix, 0) == 0) {
      const size_t at = std::char_traits<char>::length(kLayerPrefix);
      const size_t dot = name.find('.', at);
      const int l = std::stoi(name.substr(at, dot - at));
      if (l < 0 || l >= L) Fail("growth: tensor ", name, " beyond num_hidden_layers ", L);
      layers[l][name.substr(dot + 1)] = t;
    } else {
      out[name] = t;
    }
  }

  // Final order: nullopt = a new layer.
  std::vector<std::optional<int>> order;
  size_t next = 0;
  for (int l = 0; l <= L; ++l) {
    while (next < positions.size() && positions[next] == l) {
      order.push_back(std::nullopt);
      ++next;
    }
    if (l < L) order.push_back(l);
  }

  std::vector<std::map<std::string, GrowthTensor>> grown(order.size());
  for (size_t f = 0; f < order.size(); ++f) {
    if (order[f]) {
      grown[f] = std::move(layers[*order[f]]);
      continue;
    }
    auto& n = grown[f];
    auto name = [&](const std::string& s) { return LayerName(static_cast<int>(f), s); };
    n["attention.self.query.weight"] =
        real ? Filled({H, H}, 0.0f, with_moments)
             : Random({H, H}, name("attention.self.query.weight"), seed, init_std, with_moments);
    n["attention.self.key.weight"] =
        Random({H, H}, name("attention.self.key.weight"), seed, init_std, with_moments);
    n["attention.self.value.weight"] =
        Random({H, H}, name("attention.self.value.weight"), seed, init_std, with_moments);
    for (const char* b :
         {"attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias",
          "attention.output.dense.bias", "attention.output.LayerNorm.bias", "output.dense.bias",
          "output.LayerNorm.bias"}) {
      n[b] = Filled({H}, 0.0f, with_moments);
    }
    n["attention.output.dense.weight"] = Filled({H, H}, 0.0f, with_moments);
    n["attention.output.LayerNorm.weight"] = Filled({H}, 1.0f, with_moments);
    n["intermediate.dense.weight"] =
        Random({I, H}, name("intermediate.dense.weight"), seed, init_std, with_moments);
    n["intermediate.dense.bias"] = Filled({I}, 0.0f, with_moments);
    n["output.dense.weight"] = Filled({H, I}, 0.0f, with_moments);
    n["output.LayerNorm.weight"] = Filled({H}, 1.0f, with_moments);
    if (!pre) {
      // LEMON's Post-LN shift: the affine of the LN right below moves up onto this layer.
      GrowthTensor *below_g, *below_b;
      if (f == 0) {
        below_g = &out.at("roformer.embeddings.LayerNorm.weight");
        below_b = &out.at("roformer.embeddings.LayerNorm.bias");
      } else {
        below_g = &grown[f - 1].at("output.LayerNorm.weight");
        below_b = &grown[f - 1].at("output.LayerNorm.bias");
      }
      if (below_g->numel() != H) Fail("growth: LayerNorm below the new layer is not of size ", H);
      n["output.LayerNorm.weight"] = *below_g;
      n["output.LayerNorm.bias"] = *below_b;
      *below_g = Filled({H}, 1.0f, with_moments);
      *below_b = Filled({H}, 0.0f, with_moments);
    }
  }
  for (size_t f = 0; f < grown.size(); ++f) {
    for (auto& [suffix, t] : grown[f]) out[LayerName(static_cast<int>(f), suffix)] = std::move(t);
  }
  return out;
}

}  // namespace roformer
