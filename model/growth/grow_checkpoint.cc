#include "model/growth/grow_checkpoint.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <sstream>

#include "model/growth/growth_depth.h"
#include "model/growth/growth_width.h"
#include "model/roformer_model.h"
#include "runtime/crc32c.h"
#include "runtime/error.h"

namespace roformer {

namespace {

bool IsVocabRowsTensor(const std::string& name) {
  return name == "roformer.embeddings.word_embeddings.weight" || name == "cls.predictions.bias";
}

std::string ShapeString(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

GrowthTensors GrowthTensorsFromLoaded(const std::vector<LoadedTensor>& tensors) {
  GrowthTensors out;
  for (const LoadedTensor& t : tensors) {
    if (t.kind == ckpt::PARAM) {
      GrowthTensor& g = out[t.name];
      g.shape = t.shape;
      g.param = t.data;
    }
  }
  size_t with_m = 0, with_v = 0;
  for (const LoadedTensor& t : tensors) {
    if (t.kind != ckpt::ADAM_M && t.kind != ckpt::ADAM_V) continue;
    auto it = out.find(t.name);
    if (it == out.end()) Fail("growth: Adam state for ", t.name, " without its parameter");
    if (t.shape != it->second.shape) {
      Fail("growth: Adam state of ", t.name, " has shape ", ShapeString(t.shape),
           ", the parameter ", ShapeString(it->second.shape));
    }
    (t.kind == ckpt::ADAM_M ? it->second.m : it->second.v) = t.data;
    ++(t.kind == ckpt::ADAM_M ? with_m : with_v);
  }
  if ((with_m != 0 || with_v != 0) && (with_m != out.size() || with_v != out.size())) {
    Fail("growth: the checkpoint has Adam m for ", with_m, " and v for ", with_v, " of ",
         out.size(), " tensors; expected all or none");
  }
  return out;
}

std::vector<LoadedTensor> LoadedFromGrowthTensors(const GrowthTensors& tensors) {
  std::vector<LoadedTensor> out;
  for (const auto& [name, t] : tensors) {
    out.push_back({name, ckpt::PARAM, t.shape, t.param});
  }
  for (const auto& [name, t] : tensors) {
    if (!t.has_moments()) continue;
    out.push_back({name, ckpt::ADAM_M, t.shape, t.m});
    out.push_back({name, ckpt::ADAM_V, t.shape, t.v});
  }
  return out;
}

std::vector<LoadedTensor> LoadedFromStore(const ParamStore& store, bool with_optimizer) {
  std::vector<LoadedTensor> out;
  auto add = [&](const ParamInfo& info, ckpt::TensorKind kind, const std::vector<float>& buf) {
    CHECK(info.global_shape == info.local_shape) << "LoadedFromStore needs a tp = 1 store";
    out.push_back(
        {info.name, kind, info.global_shape,
         std::vector<float>(buf.begin() + info.offset, buf.begin() + info.offset + info.numel)});
  };
  for (const ParamInfo& info : store.infos()) add(info, ckpt::PARAM, store.params());
  if (with_optimizer) {
    for (const ParamInfo& info : store.infos()) add(info, ckpt::ADAM_M, store.adam_m());
    for (const ParamInfo& info : store.infos()) add(info, ckpt::ADAM_V, store.adam_v());
  }
  return out;
}

void LoadedIntoStore(const std::vector<LoadedTensor>& tensors, ParamStore* store,
                     bool with_optimizer) {
  std::map<std::pair<std::string, int>, const LoadedTensor*> by;
  for (const LoadedTensor& t : tensors) by[{t.name, static_cast<int>(t.kind)}] = &t;
  for (const LoadedTensor& t : tensors) {
    if (!store->has(t.name)) Fail("growth: tensor ", t.name, " is not part of the model");
  }
  for (const ParamInfo& info : store->infos()) {
    CHECK(info.global_shape == info.local_shape) << "LoadedIntoStore needs a tp = 1 store";
    for (int kind : {ckpt::PARAM, ckpt::ADAM_M, ckpt::ADAM_V}) {
      if (kind != ckpt::PARAM && !with_optimizer) continue;
      auto it = by.find({info.name, kind});
      if (it == by.end()) {
        Fail("growth: tensor ", info.name, (kind == ckpt::PARAM ? "" : " (Adam state)"),
             " missing");
      }
      const LoadedTensor& t = *it->second;
      std::vector<float>& buf = kind == ckpt::PARAM    ? store->params()
                                : kind == ckpt::ADAM_M ? store->adam_m()
                                                       : store->adam_v();
      float* dst = buf.data() + info.offset;
      const auto& gs = info.global_shape;
      const bool same_tail = t.shape.size() == gs.size() && !gs.empty() &&
                             std::equal(gs.begin() + 1, gs.end(), t.shape.begin() + 1);
      if (t.shape != gs && !(IsVocabRowsTensor(info.name) && same_tail)) {
        Fail("growth: tensor ", info.name, " has shape ", ShapeString(t.shape), ", the model ",
             ShapeString(gs));
      }
      const int64_t row = info.numel / gs[0];
      const int64_t rows = std::min(gs[0], t.shape[0]);
      std::memcpy(dst, t.data.data(), sizeof(float) * rows * row);
      std::fill(dst + rows * row, dst + info.numel, 0.0f);
      for (int64_t i = rows * row; i < static_cast<int64_t>(t.data.size()); ++i) {
        if (t.data[i] != 0.0f) {
          Fail("growth: tensor ", info.name, " has a nonzero entry in vocab padding row ", i / row,
               " beyond the model's ", gs[0], " rows");
        }
      }
    }
  }
}

GrowthResult GrowCheckpoint(const std::vector<LoadedTensor>& tensors,
                            const config::ModelConfig& from, const config::ModelConfig& to_in,
                            const GrowthOptions& opt) {
  config::ModelConfig to = to_in;
  if (to.vocab_size() == 0) to.set_vocab_size(from.vocab_size());
  if (from.vocab_size() <= 0) Fail("growth: the source model config has no vocab_size");
  if (opt.noise_scale < 0) Fail("growth: noise scale ", opt.noise_scale, " < 0");
  const int L = from.num_hidden_layers(), L2 = to.num_hidden_layers();
  if (L2 < L) Fail("growth: target num_hidden_layers ", L2, " < the source's ", L);
  std::vector<int> positions = opt.insert_positions;
  if (positions.empty()) positions.assign(L2 - L, L);
  if (static_cast<int>(positions.size()) != L2 - L) {
    Fail("growth: ", positions.size(), " insertion positions for ", L2 - L, " new layers (", L,
         " -> ", L2, ")");
  }
  GrowthTensors src = GrowthTensorsFromLoaded(tensors);
  auto word = src.find("roformer.embeddings.word_embeddings.weight");
  if (word == src.end() || word->second.shape.size() != 2) {
    Fail("growth: the checkpoint has no 2-D roformer.embeddings.word_embeddings.weight");
  }
  config::ModelConfig mid = to;  // target width at the source depth
  mid.set_num_hidden_layers(L);
  const WidthPlan plan = PlanWidthGrowth(from, mid, word->second.shape[0], opt.tp);
  const double init_std = to.initializer_range();
  const double noise_std = opt.noise_scale * init_std;

  GrowthResult res;
  std::ostringstream os;
  os << "width: hidden " << from.hidden_size() << " -> " << to.hidden_size() << " (x" << plan.k
     << "), heads " << from.num_attention_heads() << " -> " << to.num_attention_heads() << " (x"
     << plan.k_heads << "), head_dim x" << plan.k_head_dim << ", FFN " << from.intermediate_size()
     << " -> " << to.intermediate_size() << ", vocab rows " << plan.vocab_padded_from << " -> "
     << plan.vocab_padded_to << "; split noise std " << noise_std << " (seed " << opt.seed << ")";
  res.notes.push_back(os.str());
  GrowthTensors grown = GrowWidth(src, plan, opt.seed, noise_std, init_std);
  if (!positions.empty()) {
    std::ostringstream ds;
    ds << "depth: " << L << " -> " << L2 << " layers, new layers after source layers";
    for (int p : positions) ds << " " << p;
    ds << (to.pre_ln() ? " (Pre-LN: zero branches)" : " (Post-LN: zero branches + LN affine shift)")
       << (to.realformer() ? ", zero W_Q (RealFormer carry unchanged)" : "");
    res.notes.push_back(ds.str());
    grown = GrowDepth(grown, mid, positions, opt.seed, init_std);
  }
  res.tensors = LoadedFromGrowthTensors(grown);
  res.model = to;
  return res;
}

std::string SaveGrowthResult(const std::string& root, const GrowthResult& res,
                             const config::Config& cfg, const TrainState& st, SaveOptions so) {
  bool with_opt = false;
  std::map<std::string, const LoadedTensor*> params;
  for (const LoadedTensor& t : res.tensors) {
    if (t.kind == ckpt::PARAM) params[t.name] = &t;
    with_opt = with_opt || t.kind != ckpt::PARAM;
  }
  // The tensor set and placements of the target model; shapes from the grown tensors (their vocab
  // rows are padded for the target's tp, which RestoreInto re-pads for whatever layout resumes).
  ParamStore store;
  {
    // Only names, placements and shapes are needed: fp32, so a bf16 target (e.g. trained on a
    // GPU) does not demand bf16 GEMMs of this host.
    config::ModelConfig fp32 = res.model;
    fp32.set_precision("fp32");
    RoFormerModel layout(fp32, TpRegion(), /*with_optimizer_state=*/false);
    for (const ParamInfo& info : layout.store().infos()) {
      auto it = params.find(info.name);
      if (it == params.end()) Fail("growth: grown checkpoint lacks ", info.name);
      store.Declare(info.name, it->second->shape, info.placement, info.weight_decay);
    }
  }
  store.Allocate(with_opt);
  LoadedIntoStore(res.tensors, &store, with_opt);
  so.with_optimizer = with_opt;
  so.rank = 0;
  so.world = 1;
  so.tp = 1;
  so.zero_stage = 0;
  so.vocab.size = res.model.vocab_size();
  so.vocab.padded_size = params.at("roformer.embeddings.word_embeddings.weight")->shape[0];
  config::Config out = cfg;
  *out.mutable_model() = res.model;
  return SaveCheckpoint(root, store, out, st, so);
}

uint32_t GrowthResultHash(const GrowthResult& res) {
  uint32_t crc = 0;
  for (const LoadedTensor& t : res.tensors) {
    crc = Crc32cExtend(crc, t.name.data(), t.name.size());
    const int32_t kind = t.kind;
    crc = Crc32cExtend(crc, &kind, sizeof(kind));
    crc = Crc32cExtend(crc, t.shape.data(), t.shape.size() * sizeof(int64_t));
    crc = Crc32cExtend(crc, t.data.data(), t.data.size() * sizeof(float));
  }
  return crc;
}

}  // namespace roformer
