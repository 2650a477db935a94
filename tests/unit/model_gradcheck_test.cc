// Whole-model finite-difference checks of RoFormerModel::ForwardBackward on tiny configurations
// (Post-LN, Pre-LN, RealFormer sum / running mean, log_n, E != H, dropout with a fixed seed), plus
// dropout determinism, InitWeights determinism and Infer/ForwardBackward logit agreement.
// Debugging aids: GC_VERBOSE=1 prints the worst coordinates, GC_TENSOR=<name> checks every
// coordinate of one tensor, GC_EPS=<h> changes the step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "model/roformer_model.h"
#include "runtime/error.h"

namespace roformer {
namespace {

config::ModelConfig TinyConfig() {
  config::ModelConfig c;
  c.set_vocab_size(50);
  c.set_hidden_size(16);
  c.set_num_hidden_layers(2);
  c.set_num_attention_heads(2);
  c.set_intermediate_size(32);
  c.set_hidden_dropout_prob(0.0f);
  c.set_attention_probs_dropout_prob(0.0f);
  c.set_max_position_embeddings(32);
  c.set_type_vocab_size(2);
  c.set_layer_norm_eps(1e-12f);
  // Larger than BERT's 0.02 so every parameter has a gradient well above fp32 noise.
  c.set_initializer_range(0.3f);
  return c;
}

// B = 2; row 0 is full, row 1 is right-padded to `len1` real tokens.
Batch TinyBatch(int L = 8, int len1 = 5) {
  Batch b;
  b.batch = 2;
  b.seq_len = L;
  std::mt19937 gen(7);
  for (int r = 0; r < 2; ++r) {
    const int len = r == 0 ? L : len1;
    for (int t = 0; t < L; ++t) {
      const bool real = t < len;
      b.input_ids.push_back(real ? (t == 0 ? 2 : 5 + static_cast<int>(gen() % 44)) : 0);
      b.token_type_ids.push_back(real && t >= len / 2 ? 1 : 0);
      b.attention_mask.push_back(real ? 1 : 0);
    }
  }
  b.mlm_positions = {1, 3, L - 1, L + 2, L + len1 - 1};
  b.mlm_labels = {7, 11, 49, 3, 20};
  b.sop_labels = {0, 1};
  return b;
}

// Makes LayerNorm and bias parameters non-trivial (as the HF fixture does) so bugs show.
void Perturb(RoFormerModel* m, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> n(0.0f, 0.1f);
  auto& st = m->store();
  for (const auto& info : st.infos()) {
    const bool ln = info.name.find("LayerNorm") != std::string::npos ||
                    info.name.find("final_layer_norm") != std::string::npos;
    const bool bias = info.name.size() > 5 && info.name.substr(info.name.size() - 5) == ".bias";
    if (!ln && !bias) continue;
    float* p = st.param(info.name);
    for (int64_t i = 0; i < info.numel; ++i) {
      if (info.name == "cls.predictions.bias" && i >= m->dims().vocab) continue;  // padded: 0
      p[i] += n(gen);
    }
  }
}

struct Coord {
  std::string name;
  int64_t index;
};

std::vector<Coord> PickCoords(const RoFormerModel& m, const Batch& batch, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<Coord> out;
  const int V = m.dims().vocab, E = m.dims().embedding;
  for (const auto& info : m.store().infos()) {
    const int per = info.numel >= 64 ? 2 : 1;
    for (int k = 0; k < per; ++k)
      out.push_back({info.name, static_cast<int64_t>(gen() % info.numel)});
  }
  // Word embeddings: the pad row (decoder gradient only), an input row, a label-only row.
  const std::string w = "roformer.embeddings.word_embeddings.weight";
  out.push_back({w, 0 * E + 1});
  out.push_back({w, static_cast<int64_t>(batch.input_ids[1]) * E + 2});
  out.push_back({w, static_cast<int64_t>(49) * E + 3});
  out.push_back({w, static_cast<int64_t>(V - 2) * E});
  out.push_back({"cls.predictions.bias", 49});
  if (const char* t = std::getenv("GC_TENSOR")) {  // debugging aid: every coordinate of one tensor
    out.clear();
    for (int64_t i = 0; i < m.store().info(t).numel; ++i) out.push_back({t, i});
  }
  return out;
}

float EpsFromEnv() {
  const char* e = std::getenv("GC_EPS");
  return e ? std::strtof(e, nullptr) : 1e-2f;
}

struct GradCheckResult {
  double max_err = 0;
  int checked = 0;
};

// Analytic (ForwardBackward with backward) vs central differences of the returned loss.
GradCheckResult RunModelGradCheck(const config::ModelConfig& cfg, const Batch& batch,
                                  const DropoutContext& drop) {
  RoFormerModel m(cfg);
  m.InitWeights(42);
  Perturb(&m, 3);
  auto& st = m.store();
  st.ZeroGrads();
  m.ForwardBackward(batch, drop, true, 1.0f);
  const std::vector<float> grads = st.grads();
  GradCheckResult res;
  const float eps = EpsFromEnv();
  for (const Coord& c : PickCoords(m, batch, 11)) {
    const ParamInfo& info = st.info(c.name);
    float* p = st.params().data() + info.offset + c.index;
    const float saved = *p;
    auto central = [&](float h) {
      *p = saved + h;
      const double hp = static_cast<double>(*p) - saved;
      const double lp = m.ForwardBackward(batch, drop, false).loss;
      *p = saved - h;
      const double hm = saved - static_cast<double>(*p);
      const double lm = m.ForwardBackward(batch, drop, false).loss;
      *p = saved;
      return (lp - lm) / (hp + hm);
    };
    // Richardson extrapolation cancels the O(h^2) truncation term of the central difference
    // (parameters shared by many tokens, like token-type rows, have large third derivatives).
    const double num = (4.0 * central(eps / 2) - central(eps)) / 3.0;
    const double a = grads[info.offset + c.index];
    const double err = std::abs(a - num) / (std::abs(num) + std::abs(a) + 2e-3);
    res.max_err = std::max(res.max_err, err);
    if (std::getenv("GC_VERBOSE") && err > 5e-3) {
      printf("  %s[%lld] analytic %.6g numeric %.6g\n", c.name.c_str(),
             static_cast<long long>(c.index), a, num);
    }
    ++res.checked;
    EXPECT_NEAR(a, num, 2e-2 * std::max(std::abs(a), std::abs(num)) + 1e-4)
        << c.name << "[" << c.index << "]";
  }
  // The padded vocab rows and bias entries never receive gradient.
  const ParamInfo& w = st.info("roformer.embeddings.word_embeddings.weight");
  int64_t nonzero = 0;
  for (int64_t i = static_cast<int64_t>(m.dims().vocab) * m.dims().embedding; i < w.numel; ++i) {
    nonzero += grads[w.offset + i] != 0.0f;
  }
  EXPECT_EQ(nonzero, 0);
  if (std::getenv("GC_VERBOSE")) printf("checked %d max rel err %.3g\n", res.checked, res.max_err);
  return res;
}

TEST(ModelGradCheck, PostLnWithDropout) {
  auto cfg = TinyConfig();
  cfg.set_hidden_dropout_prob(0.1f);
  cfg.set_attention_probs_dropout_prob(0.1f);
  DropoutContext drop{true, 1234, 5, 1};
  auto r = RunModelGradCheck(cfg, TinyBatch(), drop);
  EXPECT_GE(r.checked, 30);
  RecordProperty("max_rel_err", std::to_string(r.max_err));
}

TEST(ModelGradCheck, PostLn) { RunModelGradCheck(TinyConfig(), TinyBatch(), {}); }

TEST(ModelGradCheck, PreLn) {
  auto cfg = TinyConfig();
  cfg.set_pre_ln(true);
  RunModelGradCheck(cfg, TinyBatch(), {});
}

TEST(ModelGradCheck, RealFormerSum) {
  auto cfg = TinyConfig();
  cfg.set_realformer(true);
  RunModelGradCheck(cfg, TinyBatch(), {});
}

TEST(ModelGradCheck, RealFormerRunningMeanWithDropout) {
  auto cfg = TinyConfig();
  cfg.set_realformer(true);
  cfg.set_realformer_running_mean(true);
  cfg.set_num_hidden_layers(3);
  cfg.set_attention_probs_dropout_prob(0.2f);
  RunModelGradCheck(cfg, TinyBatch(), DropoutContext{true, 9, 1, 0});
}

TEST(ModelGradCheck, LogNScale) {
  // L = 20 so n (20 and 17 unmasked keys) exceeds the clamp at 16.
  auto cfg = TinyConfig();
  cfg.set_attention_scale("log_n");
  RunModelGradCheck(cfg, TinyBatch(20, 17), {});
  cfg.set_realformer(true);
  cfg.set_realformer_running_mean(true);
  cfg.set_pre_ln(true);
  RunModelGradCheck(cfg, TinyBatch(20, 17), {});
}

TEST(ModelGradCheck, EmbeddingProjection) {
  auto cfg = TinyConfig();
  cfg.set_embedding_size(8);
  RunModelGradCheck(cfg, TinyBatch(), {});
}

TEST(Model, DeclaresHfNamesAndPlacements) {
  auto cfg = TinyConfig();
  cfg.set_embedding_size(8);
  cfg.set_pre_ln(true);
  RoFormerModel m(cfg);
  const auto& st = m.store();
  EXPECT_EQ(m.dims().vocab_padded, 128);
  EXPECT_EQ(st.info("roformer.embeddings.word_embeddings.weight").global_shape,
            (std::vector<int64_t>{128, 8}));
  EXPECT_EQ(st.info("roformer.embeddings_project.weight").global_shape,
            (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(st.info("cls.predictions.transform.dense.weight").global_shape,
            (std::vector<int64_t>{8, 16}));
  EXPECT_TRUE(st.has("roformer.encoder.final_layer_norm.weight"));
  EXPECT_EQ(st.info("roformer.encoder.layer.1.attention.self.query.weight").placement,
            Placement::kShardDim0);
  EXPECT_EQ(st.info("roformer.encoder.layer.1.intermediate.dense.bias").placement,
            Placement::kShardDim0);
  EXPECT_EQ(st.info("roformer.encoder.layer.0.output.dense.weight").placement,
            Placement::kShardDim1);
  EXPECT_EQ(st.info("roformer.encoder.layer.0.attention.output.dense.bias").placement,
            Placement::kReplicated);
  EXPECT_EQ(st.info("cls.predictions.bias").placement, Placement::kShardDim0);
  EXPECT_FALSE(st.info("roformer.encoder.layer.0.output.LayerNorm.weight").weight_decay);
  EXPECT_FALSE(st.info("sop.classifier.bias").weight_decay);
  EXPECT_TRUE(st.info("sop.pooler.dense.weight").weight_decay);
  RoFormerModel post(TinyConfig());
  EXPECT_FALSE(post.store().has("roformer.encoder.final_layer_norm.weight"));
  EXPECT_FALSE(post.store().has("roformer.embeddings_project.weight"));
}

TEST(Model, InitWeightsDeterministic) {
  auto cfg = TinyConfig();
  cfg.set_initializer_range(0.02f);
  RoFormerModel a(cfg), b(cfg), c(cfg);
  a.InitWeights(5);
  b.InitWeights(5);
  c.InitWeights(6);
  EXPECT_EQ(a.store().params(), b.store().params());
  EXPECT_NE(a.store().params(), c.store().params());
  const auto& st = a.store();
  const float* w = st.param("roformer.embeddings.word_embeddings.weight");
  const int E = a.dims().embedding;
  for (int i = 0; i < E; ++i) EXPECT_EQ(w[i], 0.0f);  // pad row
  for (int64_t i = static_cast<int64_t>(a.dims().vocab) * E; i < 128 * E; ++i) {
    ASSERT_EQ(w[i], 0.0f);  // padded vocab rows
  }
  const float* g = st.param("roformer.encoder.layer.0.output.LayerNorm.weight");
  const float* bias = st.param("roformer.encoder.layer.0.intermediate.dense.bias");
  for (int i = 0; i < 16; ++i) EXPECT_EQ(g[i], 1.0f);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(bias[i], 0.0f);
  const ParamInfo& f1 = st.info("roformer.encoder.layer.1.intermediate.dense.weight");
  const float* p = st.param(f1.name);
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < f1.numel; ++i) s += p[i], s2 += static_cast<double>(p[i]) * p[i];
  const double mean = s / f1.numel, sd = std::sqrt(s2 / f1.numel - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.004);
  EXPECT_NEAR(sd, 0.02, 0.003);
}

TEST(Model, DropoutDeterministicPerSeed) {
  auto cfg = TinyConfig();
  cfg.set_hidden_dropout_prob(0.1f);
  cfg.set_attention_probs_dropout_prob(0.1f);
  RoFormerModel m(cfg);
  m.InitWeights(1);
  const Batch b = TinyBatch();
  const double l1 = m.ForwardBackward(b, {true, 10, 3, 0}, false).loss;
  const double l2 = m.ForwardBackward(b, {true, 10, 3, 0}, false).loss;
  const double l3 = m.ForwardBackward(b, {true, 11, 3, 0}, false).loss;
  const double l4 = m.ForwardBackward(b, {true, 10, 4, 0}, false).loss;
  const double l5 = m.ForwardBackward(b, {true, 10, 3, 1}, false).loss;
  const double off = m.ForwardBackward(b, {}, false).loss;
  EXPECT_EQ(l1, l2);
  EXPECT_NE(l1, l3);
  EXPECT_NE(l1, l4);
  EXPECT_NE(l1, l5);
  EXPECT_NE(l1, off);
  // Dropout disabled equals dropout probabilities of 0.
  RoFormerModel z(TinyConfig());
  z.InitWeights(1);
  EXPECT_EQ(off, z.ForwardBackward(b, {true, 10, 3, 0}, false).loss);
}

TEST(Model, InferLogitsMatchHeadLogits) {
  for (bool pre : {false, true}) {
    auto cfg = TinyConfig();
    cfg.set_pre_ln(pre);
    cfg.set_realformer(true);
    cfg.set_embedding_size(8);
    RoFormerModel m(cfg);
    m.InitWeights(3);
    Perturb(&m, 4);
    const Batch b = TinyBatch();
    LossStats ls = m.ForwardBackward(b, {}, false);
    EXPECT_EQ(ls.mlm_count, 5);
    EXPECT_EQ(ls.sop_count, 2);
    EXPECT_NEAR(ls.loss, ls.mlm_loss + ls.sop_loss, 1e-12);
    const std::vector<float> head(m.LastMlmLogits().begin(), m.LastMlmLogits().end());
    std::vector<float> logits, seq;
    std::vector<std::vector<float>> hidden;
    m.Infer(b, &logits, &seq, &hidden);
    const int V = m.dims().vocab, Vp = m.dims().vocab_padded, H = m.dims().hidden;
    ASSERT_EQ(logits.size(), static_cast<size_t>(b.batch * b.seq_len * V));
    ASSERT_EQ(hidden.size(), 3u);
    ASSERT_EQ(seq.size(), static_cast<size_t>(b.batch * b.seq_len * H));
    if (!pre) {
      EXPECT_EQ(hidden.back(), seq);
    }
    // Recompute the mean MLM CE from the Infer logits.
    double ce = 0;
    for (size_t i = 0; i < b.mlm_positions.size(); ++i) {
      const float* row = logits.data() + static_cast<int64_t>(b.mlm_positions[i]) * V;
      for (int v = 0; v < V; ++v) EXPECT_NEAR(row[v], head[i * Vp + v], 1e-5);
      double mx = *std::max_element(row, row + V), se = 0;
      for (int v = 0; v < V; ++v) se += std::exp(row[v] - mx);
      ce += mx + std::log(se) - row[b.mlm_labels[i]];
    }
    EXPECT_NEAR(ce / b.mlm_positions.size(), ls.mlm_loss, 1e-5);
  }
}

TEST(Model, GradientsAccumulateAndScale) {
  RoFormerModel m(TinyConfig());
  m.InitWeights(2);
  const Batch b = TinyBatch();
  m.store().ZeroGrads();
  m.ForwardBackward(b, {}, true, 1.0f);
  const std::vector<float> g1 = m.store().grads();
  m.ForwardBackward(b, {}, true, 0.5f);
  const std::vector<float>& g2 = m.store().grads();
  for (size_t i = 0; i < g1.size(); ++i)
    ASSERT_NEAR(g2[i], 1.5f * g1[i], 1e-6 + 1e-5 * std::abs(g1[i]));
  // Nothing reaches the pad row through the embedding path: only the tied decoder writes it, and
  // that equals the decoder-only gradient of the pad logit column.
}

TEST(Model, EncoderBackwardMatchesFiniteDifferences) {
  auto cfg = TinyConfig();
  cfg.set_realformer(true);
  RoFormerModel m(cfg);
  m.InitWeights(8);
  Perturb(&m, 9);
  const Batch b = TinyBatch();
  const int64_t n = static_cast<int64_t>(b.batch) * b.seq_len * m.dims().hidden;
  std::mt19937 gen(1);
  std::normal_distribution<float> nd;
  std::vector<float> w(n);
  for (auto& x : w) x = nd(gen);
  auto loss = [&] {
    const float* y = m.EncoderForward(b, {});
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(w[i]) * y[i];
    return s;
  };
  m.store().ZeroGrads();
  loss();
  m.EncoderBackward(w.data(), 2.0f);
  const std::string name = "roformer.encoder.layer.0.attention.self.key.weight";
  const ParamInfo& info = m.store().info(name);
  for (int64_t i = 0; i < info.numel; i += 37) {
    float* p = m.store().params().data() + info.offset + i;
    const float s = *p;
    *p = s + 1e-2f;
    const double lp = loss();
    *p = s - 1e-2f;
    const double lm = loss();
    *p = s;
    const double num = 2.0 * (lp - lm) / 2e-2;
    const double a = m.store().grads()[info.offset + i];
    EXPECT_NEAR(a, num, 2e-2 * std::abs(num) + 2e-3) << i;
  }
}

TEST(Model, RejectsBadBatches) {
  RoFormerModel m(TinyConfig());
  m.InitWeights(1);
  Batch b = TinyBatch();
  b.input_ids[3] = 50;
  EXPECT_THROW(m.ForwardBackward(b, {}, false), Error);
  b = TinyBatch();
  b.mlm_positions[0] = 16;
  EXPECT_THROW(m.ForwardBackward(b, {}, false), Error);
  b = TinyBatch(40, 5);
  EXPECT_THROW(m.ForwardBackward(b, {}, false), Error);  // longer than max_position_embeddings
}

}  // namespace
}  // namespace roformer
