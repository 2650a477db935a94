#include "model/growth/stage_schedule.h"

#include <filesystem>
#include <sstream>

#include "model/growth/growth_width.h"
#include "model/roformer_model.h"
#include "runtime/config.h"
#include "runtime/error.h"

namespace roformer {
namespace {

int64_t RoundUpTo(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

std::string Quoted(const std::string& s) { return "\"" + s + "\""; }

// Re-throws an Error from `fn` with `where` in front, so messages from shared checks
// (ValidateConfig, PlanWidthGrowth, MakeModelDims) name the plan file and the stage.
template <typename Fn>
void WithContext(const std::string& where, Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    Fail(where, ": ", e.what());
  }
}

// Shape-free architecture fields a stage may not change (growth keeps them; without growth a
// change would silently turn the checkpoint into a different function).
void CheckSameArchitecture(const config::ModelConfig& a, const config::ModelConfig& b,
                           const std::string& where) {
  auto same = [&](const char* field, auto x, auto y) {
    if (x != y) {
      std::ostringstream os;
      os << where << ": model." << field << " = " << y << " differs from the previous stage's " << x
         << ": stages may grow the model or change dropout / max_position_embeddings, not "
         << "its architecture";
      Fail(os.str());
    }
  };
  same("realformer", a.realformer(), b.realformer());
  same("realformer_running_mean", a.realformer_running_mean(), b.realformer_running_mean());
  same("pre_ln", a.pre_ln(), b.pre_ln());
  same("attention_scale", a.attention_scale(), b.attention_scale());
  same("layer_norm_eps", a.layer_norm_eps(), b.layer_norm_eps());
  same("type_vocab_size", a.type_vocab_size(), b.type_vocab_size());
  same("vocab_size", a.vocab_size(), b.vocab_size());
  same("precision", a.precision(), b.precision());
}

void CheckNoShrink(const config::ModelConfig& a, const config::ModelConfig& b,
                   const std::string& where) {
  auto grow = [&](const char* field, int x, int y) {
    if (y < x) {
      Fail(where, ": model.", field, " = ", y, " is smaller than the previous stage's ", x,
           ": a stage cannot shrink the model (growth only)");
    }
  };
  grow("hidden_size", a.hidden_size(), b.hidden_size());
  grow("num_attention_heads", a.num_attention_heads(), b.num_attention_heads());
  grow("intermediate_size", a.intermediate_size(), b.intermediate_size());
  grow("num_hidden_layers", a.num_hidden_layers(), b.num_hidden_layers());
  const int ea = a.embedding_size() > 0 ? a.embedding_size() : a.hidden_size();
  const int eb = b.embedding_size() > 0 ? b.embedding_size() : b.hidden_size();
  grow("embedding_size", ea, eb);
}

// The checks GrowDepth makes on insert positions, without tensors.
void CheckInsertPositions(const config::ModelConfig& from, const config::ModelConfig& to,
                          const schedule::GrowthOptions& g, const std::string& where) {
  const int L = from.num_hidden_layers(), L2 = to.num_hidden_layers();
  if (g.insert_layers_size() == 0) return;  // default: append at the top
  if (g.insert_layers_size() != L2 - L) {
    Fail(where, ": growth.insert_layers has ", g.insert_layers_size(), " positions for ", L2 - L,
         " new layers (num_hidden_layers ", L, " -> ", L2, ")");
  }
  for (int p : g.insert_layers()) {
    if (p < 0 || p > L) {
      Fail(where, ": growth.insert_layers position ", p, " outside [0, ", L,
           "] (p = after the first p layers of the previous stage; ", L, " = at the top)");
    }
    if (from.realformer() && from.realformer_running_mean() && p != L) {
      Fail(where, ": growth.insert_layers position ", p,
           " is below the top: model.realformer_running_mean divides layer l's scores by l+1, so "
           "only appending at the top (",
           L, ") is exact");
    }
    const int E = from.embedding_size() > 0 ? from.embedding_size() : from.hidden_size();
    if (!from.pre_ln() && p == 0 && E != from.hidden_size()) {
      Fail(where,
           ": growth.insert_layers position 0 with a factorised embedding (Post-LN) is not "
           "supported; insert at a position >= 1");
    }
  }
}

}  // namespace

bool ModelShapeDiffers(const config::ModelConfig& a, const config::ModelConfig& b) {
  auto emb = [](const config::ModelConfig& m) {
    return m.embedding_size() > 0 ? m.embedding_size() : m.hidden_size();
  };
  return a.hidden_size() != b.hidden_size() || a.num_attention_heads() != b.num_attention_heads() ||
         a.intermediate_size() != b.intermediate_size() ||
         a.num_hidden_layers() != b.num_hidden_layers() || emb(a) != emb(b) ||
         a.vocab_size() != b.vocab_size() || a.type_vocab_size() != b.type_vocab_size();
}

StagePlan LoadStagePlan(const std::string& path, int vocab_size,
                        const std::vector<std::string>& base_overrides) {
  schedule::Plan plan;
  ParseTextProtoFile(path, &plan);
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return ResolveStagePlan(plan, path, dir.empty() ? "." : dir, vocab_size, base_overrides);
}

StagePlan ResolveStagePlan(const schedule::Plan& plan, const std::string& origin,
                           const std::string& base_dir, int vocab_size,
                           const std::vector<std::string>& base_overrides) {
  StagePlan out;
  out.path = origin;
  if (plan.stages_size() == 0) Fail(origin, ": the plan has no stages");
  config::Config cfg;
  if (plan.has_base_config()) {
    std::filesystem::path p(plan.base_config());
    if (p.is_relative()) p = std::filesystem::path(base_dir) / p;
    WithContext(origin + ": base_config", [&] { cfg = LoadConfigFile(p.string()); });
  }
  cfg.MergeFrom(plan.base());
  ApplyOverrides(&cfg, base_overrides);
  int64_t step = 0;
  for (int i = 0; i < plan.stages_size(); ++i) {
    const schedule::Stage& st = plan.stages(i);
    ResolvedStage r;
    r.index = i;
    r.name = st.has_name() ? st.name() : "stage" + std::to_string(i);
    r.where = origin + ": stage " + std::to_string(i) + " (" + Quoted(r.name) + ")";
    if (st.config().train().has_steps()) {
      Fail(r.where,
           ": config.train.steps is not allowed in a stage; set the stage length with "
           "`steps` or `tokens`");
    }
    const config::Config prev = cfg;
    cfg.MergeFrom(st.config());
    WithContext(r.where, [&] { ApplyOverrides(&cfg, {st.set().begin(), st.set().end()}); });
    if (cfg.train().has_steps() && i > 0 && prev.train().steps() != cfg.train().steps()) {
      Fail(r.where, ": set train.steps is not allowed in a stage; use `steps` or `tokens`");
    }
    if (vocab_size > 0 && cfg.model().vocab_size() == 0) {
      cfg.mutable_model()->set_vocab_size(vocab_size);
    }
    if (st.has_steps() == st.has_tokens()) {
      Fail(r.where, ": set exactly one of `steps` or `tokens` (the stage length)");
    }
    int64_t len = st.steps();
    if (st.has_tokens()) {
      const int64_t per_step =
          static_cast<int64_t>(cfg.train().global_batch()) * cfg.train().seq_len();
      if (st.tokens() <= 0) Fail(r.where, ": tokens = ", st.tokens(), ": must be > 0");
      len = (st.tokens() + per_step - 1) / std::max<int64_t>(1, per_step);
    }
    if (len <= 0) Fail(r.where, ": steps = ", len, ": must be > 0");
    r.first_step = step;
    r.end_step = step + len;
    step = r.end_step;
    cfg.mutable_train()->set_steps(r.end_step);
    WithContext(r.where, [&] { ValidateConfig(cfg, "config"); });
    const auto& par = cfg.parallel();
    const auto& t = cfg.train();
    if (t.global_batch() % (t.micro_batch() * par.dp()) != 0) {
      Fail(r.where, ": train.global_batch = ", t.global_batch(),
           " is not a multiple of train.micro_batch (", t.micro_batch(), ") x parallel.dp (",
           par.dp(), ")");
    }
    // The layout checks the model makes when it is built (whole heads, FFN and padded-vocab
    // slices per TP rank).
    WithContext(r.where, [&] { ValidateTpLayout(MakeModelDims(cfg.model(), par.tp(), 0)); });
    if (i > 0) {
      const auto& pm = prev.model();
      const auto& m = cfg.model();
      if (cfg.data().vocab() != prev.data().vocab()) {
        Fail(r.where, ": data.vocab changes (", Quoted(prev.data().vocab()), " -> ",
             Quoted(cfg.data().vocab()), "); every stage must use the same vocab");
      }
      if (t.seed() != prev.train().seed()) {
        Fail(r.where, ": train.seed changes (", prev.train().seed(), " -> ", t.seed(),
             "); it keys the data order and dropout of the whole run");
      }
      if (cfg.checkpoint().dir() != prev.checkpoint().dir()) {
        Fail(r.where, ": checkpoint.dir changes; every stage checkpoints into the same root");
      }
      CheckSameArchitecture(pm, m, r.where);
      CheckNoShrink(pm, m, r.where);
      r.grows = ModelShapeDiffers(pm, m);
      if (r.grows) {
        config::ModelConfig mid = m;
        mid.set_num_hidden_layers(pm.num_hidden_layers());
        const int64_t vocab = std::max(1, pm.vocab_size() > 0 ? pm.vocab_size() : 1);
        const int64_t padded_from = RoundUpTo(vocab, 128 * int64_t{prev.parallel().tp()});
        WithContext(r.where, [&] { PlanWidthGrowth(pm, mid, padded_from, par.tp()); });
        CheckInsertPositions(pm, m, st.growth(), r.where);
        r.growth = st.growth();
        if (r.growth.noise_scale() < 0) {
          Fail(r.where, ": growth.noise_scale = ", r.growth.noise_scale(), ": must be >= 0");
        }
      } else if (st.has_growth()) {
        Fail(r.where,
             ": has growth options but its model has the same shape as the previous "
             "stage's (nothing to grow)");
      }
    } else if (st.has_growth()) {
      Fail(r.where, ": growth options on the first stage (growth happens when entering a stage)");
    }
    r.cfg = cfg;
    out.stages.push_back(std::move(r));
  }
  return out;
}

GrowthOptions StageGrowthOptions(const ResolvedStage& stage, uint64_t train_seed, int64_t step) {
  GrowthOptions o;
  // Same default as `roformer grow`: a function of the run seed and the step.
  o.seed = stage.growth.seed() != 0 ? stage.growth.seed()
                                    : train_seed * 1000003ull + static_cast<uint64_t>(step);
  o.noise_scale = stage.growth.noise_scale();
  o.insert_positions.assign(stage.growth.insert_layers().begin(),
                            stage.growth.insert_layers().end());
  o.tp = stage.cfg.parallel().tp();
  return o;
}

PlanPosition LocateInPlan(const StagePlan& plan, int growth_stage, int64_t step,
                          const config::ModelConfig& ckpt_model, const std::string& ckpt_dir) {
  const int n = static_cast<int>(plan.stages.size());
  if (growth_stage < 0 || growth_stage >= n) {
    Fail(ckpt_dir, ": checkpoint of stage ", growth_stage, " but ", plan.path, " has ", n,
         " stage(s): this run directory belongs to another plan (use another --run-dir)");
  }
  const ResolvedStage& s = plan.stages[growth_stage];
  if (step < s.first_step || step > s.end_step) {
    Fail(ckpt_dir, ": checkpoint at step ", step, " of stage ", growth_stage, ", but ", s.where,
         " covers steps [", s.first_step, ", ", s.end_step,
         "): the plan's stage lengths changed since this run started");
  }
  if (ModelShapeDiffers(ckpt_model, s.cfg.model())) {
    const auto& m = ckpt_model;
    const auto& p = s.cfg.model();
    Fail(ckpt_dir, ": checkpoint model (hidden ", m.hidden_size(), ", layers ",
         m.num_hidden_layers(), ", heads ", m.num_attention_heads(), ", FFN ",
         m.intermediate_size(), ") differs from ", s.where, " (hidden ", p.hidden_size(),
         ", layers ", p.num_hidden_layers(), ", heads ", p.num_attention_heads(), ", FFN ",
         p.intermediate_size(), "): the plan changed since this run started");
  }
  return {growth_stage, step == s.end_step};
}

}  // namespace roformer
