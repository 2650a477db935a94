#include "model/growth/growth_width.h"

#include "model/growth/growth_head_dim.h"
#include "runtime/error.h"

namespace roformer {

namespace {

int EmbeddingWidth(const config::ModelConfig& c) {
  return c.embedding_size() > 0 ? c.embedding_size() : c.hidden_size();
}

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Strips "roformer.encoder.layer.<n>." so every layer shares one table.
std::string LayerSuffix(const std::string& name) {
  const std::string p = "roformer.encoder.layer.";
  if (name.rfind(p, 0) != 0) return "";
  const size_t dot = name.find('.', p.size());
  return dot == std::string::npos ? "" : name.substr(dot + 1);
}

TensorRecipe Vec(const AxisMap& m, bool out) {
  TensorRecipe r;
  r.rows = m;
  r.cols = AxisMap::Identity(1);
  r.out_axis = out ? 0 : -1;
  return r;
}

// Linear [out, in]: copy on out (rows), split on in (cols).
TensorRecipe Linear(const AxisMap& out, const AxisMap& in, bool out_duplicated = true) {
  TensorRecipe r;
  r.rows = out;
  r.cols = in;
  r.split_axis = 1;
  r.out_axis = out_duplicated ? 0 : -1;
  return r;
}

}  // namespace

WidthPlan PlanWidthGrowth(const config::ModelConfig& from, const config::ModelConfig& to,
                          int64_t vocab_padded_from, int tp_to) {
  const int h = from.hidden_size(), H = from.num_attention_heads();
  const int h2 = to.hidden_size(), H2 = to.num_attention_heads();
  if (h <= 0 || H <= 0 || h % H != 0) Fail("growth: source model hidden/heads ", h, "/", H);
  if (h2 <= 0 || H2 <= 0 || h2 % H2 != 0) {
    Fail("growth: target model.hidden_size = ", h2,
         " is not divisible by num_attention_heads = ", H2);
  }
  if (h2 < h || h2 % h != 0) {
    Fail("growth: target model.hidden_size = ", h2, " is not an integer multiple of the source's ",
         h,
         ": a Post-LN LayerNorm is exact only for integer width factors (anchors-growth.md §3.9); "
         "plan integer ladders, e.g. ",
         h, " -> ", 2 * h, " -> ", 4 * h);
  }
  if (H2 < H || H2 % H != 0) {
    Fail("growth: target model.num_attention_heads = ", H2,
         " is not an integer multiple of the source's ", H,
         " (heads are copied with the global map e -> e mod ", H, ")");
  }
  const int d = h / H, d2 = h2 / H2;
  if (d2 % d != 0) {
    Fail("growth: target head_dim ", d2, " (hidden ", h2, " / heads ", H2,
         ") is not an integer multiple of the source head_dim ", d,
         ": only integer head_dim ratios keep the RoPE frequencies (anchors-growth.md §3.5); "
         "prefer growing the head count");
  }
  auto same = [&](const char* field, auto a, auto b) {
    if (a != b) Fail("growth: model.", field, " differs (", a, " -> ", b, "); growth keeps it");
  };
  same("realformer", from.realformer(), to.realformer());
  if (from.realformer()) {
    same("realformer_running_mean", from.realformer_running_mean(), to.realformer_running_mean());
  }
  same("pre_ln", from.pre_ln(), to.pre_ln());
  same("attention_scale", from.attention_scale(), to.attention_scale());
  same("layer_norm_eps", from.layer_norm_eps(), to.layer_norm_eps());
  same("type_vocab_size", from.type_vocab_size(), to.type_vocab_size());
  same("vocab_size", from.vocab_size(), to.vocab_size());
  if (to.intermediate_size() < from.intermediate_size()) {
    Fail("growth: target model.intermediate_size = ", to.intermediate_size(),
         " is smaller than the source's ", from.intermediate_size());
  }
  const int E = EmbeddingWidth(from), E2 = EmbeddingWidth(to);
  WidthPlan p;
  p.factorised = E != h;
  if (p.factorised != (E2 != h2) || (p.factorised && E != E2)) {
    Fail("growth: embedding_size ", E, " (hidden ", h, ") -> ", E2, " (hidden ", h2,
         "): supported are unfactorised -> unfactorised (embedding grows with hidden) and "
         "factorised -> factorised with the same embedding_size");
  }
  if (tp_to < 1) Fail("growth: target tp ", tp_to, " < 1");
  p.k = h2 / h;
  p.k_heads = H2 / H;
  p.k_head_dim = d2 / d;
  p.vocab = from.vocab_size();
  p.vocab_padded_from = vocab_padded_from;
  p.vocab_padded_to = RoundUp(std::max<int64_t>(p.vocab, 1), 128 * static_cast<int64_t>(tp_to));
  if (vocab_padded_from < p.vocab) {
    Fail("growth: the checkpoint's word embeddings have ", vocab_padded_from,
         " rows for a vocab of ", p.vocab);
  }
  p.hidden = AxisMap::Tile(h, h2);
  p.qkv = HeadChannelMap(H, d, p.k_heads, p.k_head_dim);
  p.ffn = AxisMap::Tile(from.intermediate_size(), to.intermediate_size());
  p.embed = p.factorised ? AxisMap::Identity(E) : p.hidden;
  p.vocab_rows = AxisMap::Prefix(vocab_padded_from, p.vocab, p.vocab_padded_to);
  p.type_rows = AxisMap::Identity(from.type_vocab_size());
  return p;
}

TensorRecipe WidthRecipeFor(const std::string& name, const WidthPlan& p, double init_std) {
  const bool emb_dup = !p.factorised;  // the embedding axis is duplicated with the hidden axis
  const std::string s = LayerSuffix(name);
  if (!s.empty()) {
    if (s == "attention.self.query.weight" || s == "attention.self.value.weight") {
      TensorRecipe r = Linear(p.qkv, p.hidden);
      r.fill = NewFill::kNormal;  // new head_dim channels (their keys are 0 / W_O columns are 0)
      r.fill_std = init_std;
      return r;
    }
    if (s == "attention.self.key.weight") {
      TensorRecipe r = Linear(p.qkv, p.hidden);
      r.scale = KeyScaleForHeadDim(p.k_head_dim);
      return r;
    }
    if (s == "attention.self.query.bias" || s == "attention.self.value.bias") {
      return Vec(p.qkv, true);
    }
    if (s == "attention.self.key.bias") {
      TensorRecipe r = Vec(p.qkv, true);
      r.scale = KeyScaleForHeadDim(p.k_head_dim);
      return r;
    }
    if (s == "attention.output.dense.weight") return Linear(p.hidden, p.qkv);
    if (s == "intermediate.dense.weight") return Linear(p.ffn, p.hidden);
    if (s == "intermediate.dense.bias") return Vec(p.ffn, true);
    if (s == "output.dense.weight") return Linear(p.hidden, p.ffn);
    if (s == "attention.output.dense.bias" || s == "attention.output.LayerNorm.weight" ||
        s == "attention.output.LayerNorm.bias" || s == "output.dense.bias" ||
        s == "output.LayerNorm.weight" || s == "output.LayerNorm.bias") {
      return Vec(p.hidden, true);
    }
    Fail("growth: no width rule for tensor ", name);
  }
  if (name == "roformer.embeddings.word_embeddings.weight") {
    TensorRecipe r;
    r.rows = p.vocab_rows;
    r.cols = p.embed;
    r.out_axis = emb_dup ? 1 : -1;
    return r;
  }
  if (name == "roformer.embeddings.token_type_embeddings.weight") {
    TensorRecipe r;
    r.rows = p.type_rows;
    r.cols = p.embed;
    r.out_axis = emb_dup ? 1 : -1;
    return r;
  }
  if (name == "roformer.embeddings.LayerNorm.weight" ||
      name == "roformer.embeddings.LayerNorm.bias") {
    return Vec(p.embed, emb_dup);
  }
  if (name == "roformer.embeddings_project.weight") {
    TensorRecipe r;  // reads the (unchanged) embedding axis: copy on out only
    r.rows = p.hidden;
    r.cols = p.embed;
    r.out_axis = 0;
    return r;
  }
  if (name == "roformer.embeddings_project.bias") return Vec(p.hidden, true);
  if (name == "roformer.encoder.final_layer_norm.weight" ||
      name == "roformer.encoder.final_layer_norm.bias") {
    return Vec(p.hidden, true);
  }
  if (name == "cls.predictions.transform.dense.weight") return Linear(p.embed, p.hidden, emb_dup);
  if (name == "cls.predictions.transform.dense.bias") return Vec(p.embed, emb_dup);
  if (name == "cls.predictions.transform.LayerNorm.weight" ||
      name == "cls.predictions.transform.LayerNorm.bias") {
    TensorRecipe r = Vec(p.embed, emb_dup);
    // Tied decoder: logits = sum over the k copies of t~ E^T, so t~ = tile(t) / k. LN is
    // scale-equivariant in its affine only, hence the ÷k on γ and β (Staged Training's ÷2).
    if (emb_dup) r.scale = 1.0 / p.k;
    return r;
  }
  if (name == "cls.predictions.bias") {
    TensorRecipe r = Vec(p.vocab_rows, false);
    return r;
  }
  if (name == "sop.pooler.dense.weight") return Linear(p.hidden, p.hidden);
  if (name == "sop.pooler.dense.bias") return Vec(p.hidden, true);
  if (name == "sop.classifier.weight") return Linear(AxisMap::Identity(2), p.hidden, false);
  if (name == "sop.classifier.bias") return Vec(AxisMap::Identity(2), false);
  Fail("growth: no width rule for tensor ", name,
       " (only the pretraining model's tensors can be grown)");
}

GrowthTensors GrowWidth(const GrowthTensors& src, const WidthPlan& plan, uint64_t seed,
                        double noise_std, double init_std) {
  GrowthTensors out;
  for (const auto& [name, t] : src) {
    out[name] = ApplyRecipe(name, t, WidthRecipeFor(name, plan, init_std), seed, noise_std);
  }
  return out;
}

}  // namespace roformer
