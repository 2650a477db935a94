// Lossless progressive growth (model/growth/, anchors-growth.md §3, tests of §4): forward
// exactness in fp32 (RoFormerModel::Infer) and fp64 (a compact double-precision reference forward
// below that also exposes the RealFormer carried scores and the attention probabilities),
// hidden states == tile(small), carried scores of head e == small head e mod H, the gradient rule,
// the Adam-state mapping, and symmetry (Δ = 0 keeps copies bit-identical, random Δ breaks them).
//
// The small models get random LN affines and biases (not InitWeights' 1/0) and weights rounded to
// multiples of 3·2^-13, so the splits W/2, W/3, W/4 and the MLM-LN γ/k are exact in fp32: the
// fp64 comparisons then measure the construction, not the rounding of the stored fp32 weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

#include "kernels/cpu/gemm.h"
#include "model/growth/grow_checkpoint.h"
#include "model/growth/growth_head_dim.h"
#include "model/growth/growth_optimizer_state.h"
#include "model/growth/growth_width.h"
#include "model/optimizer.h"
#include "model/roformer_model.h"
#include "model/synthetic_batches.h"
#include "runtime/error.h"

namespace roformer {
namespace {

config::ModelConfig SmallConfig(bool pre_ln = false, bool realformer = true) {
  config::ModelConfig c;
  c.set_vocab_size(150);  // padded to 256: padding rows are exercised
  c.set_hidden_size(16);
  c.set_num_attention_heads(2);
  c.set_num_hidden_layers(2);
  c.set_intermediate_size(24);
  c.set_hidden_dropout_prob(0.0f);
  c.set_attention_probs_dropout_prob(0.0f);
  c.set_realformer(realformer);
  c.set_pre_ln(pre_ln);
  c.set_max_position_embeddings(32);
  c.set_layer_norm_eps(1e-12f);
  c.set_initializer_range(0.3f);
  return c;
}

config::ModelConfig Grown(config::ModelConfig c, int hidden, int heads, int ffn, int layers = -1) {
  c.set_hidden_size(hidden);
  c.set_num_attention_heads(heads);
  c.set_intermediate_size(ffn);
  if (layers > 0) c.set_num_hidden_layers(layers);
  c.set_initializer_range(0.2f);
  return c;
}

float Quantize(double x) {
  const double q = 3.0 / 8192.0;
  return static_cast<float>(std::round(x / q) * q);
}

std::unique_ptr<RoFormerModel> MakeSmall(const config::ModelConfig& cfg, uint64_t seed = 7) {
  auto m = std::make_unique<RoFormerModel>(cfg);
  m->InitWeights(seed);
  std::mt19937_64 rng(seed * 977 + 1);
  std::normal_distribution<double> n01;
  ParamStore& s = m->store();
  for (const ParamInfo& info : s.infos()) {
    float* p = s.params().data() + info.offset;
    const bool ln_w = info.name.find("LayerNorm.weight") != std::string::npos ||
                      info.name.find("final_layer_norm.weight") != std::string::npos;
    const bool bias = info.name.size() > 5 && info.name.substr(info.name.size() - 5) == ".bias";
    for (int64_t i = 0; i < info.numel; ++i) {
      double v = p[i];
      if (ln_w) v = 1.0 + 0.3 * n01(rng);
      if (bias) v = 0.2 * n01(rng);
      if (info.name == "cls.predictions.bias" && i >= cfg.vocab_size()) v = 0.0;
      p[i] = Quantize(v);
    }
  }
  return m;
}

Batch EvalBatch(int vocab, int seq_len = 12, int count = 3, uint64_t seed = 11) {
  SyntheticBatchSource src(vocab, seq_len, seed);
  Batch b;
  src.Fill(0, count, /*eval=*/true, &b);
  return b;
}

struct Grow {
  std::unique_ptr<RoFormerModel> model;
  GrowthResult result;
};

Grow GrowModel(RoFormerModel& small, const config::ModelConfig& to, GrowthOptions opt,
               bool with_optimizer = false) {
  Grow g;
  g.result =
      GrowCheckpoint(LoadedFromStore(small.store(), with_optimizer), small.config(), to, opt);
  g.model = std::make_unique<RoFormerModel>(g.result.model);
  LoadedIntoStore(g.result.tensors, &g.model->store(), with_optimizer);
  return g;
}

GrowthOptions Exact(std::vector<int> positions = {}) {
  GrowthOptions o;
  o.seed = 3;
  o.noise_scale = 0.0;
  o.insert_positions = std::move(positions);
  return o;
}

double MaxAbs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

// ---------------------------------------------------------------------------------------------
// fp64 reference forward.

struct RefOut {
  std::vector<double> logits;                    // [B*L, vocab]
  std::vector<double> sop;                       // [B, 2]
  std::vector<std::vector<double>> hidden;       // layers + 1 of [B*L, H]
  std::vector<std::vector<double>> carry, prob;  // per layer [B, heads, L, L]
};

struct RefModel {
  const GrowthTensors& t;
  const config::ModelConfig& c;
  const std::vector<float>& P(const std::string& n) const { return t.at(n).param; }
};

void RefLinear(const std::vector<double>& x, int64_t rows, int in, const std::vector<float>& w,
               const std::vector<float>& b, int out, std::vector<double>* y) {
  y->assign(rows * out, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int o = 0; o < out; ++o) {
      double s = b.empty() ? 0.0 : b[o];
      for (int i = 0; i < in; ++i) s += x[r * in + i] * static_cast<double>(w[o * in + i]);
      (*y)[r * out + o] = s;
    }
  }
}

void RefLayerNorm(std::vector<double>* x, int64_t rows, int n, const std::vector<float>& g,
                  const std::vector<float>& b, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    double* v = x->data() + r * n;
    double mu = 0, var = 0;
    for (int i = 0; i < n; ++i) mu += v[i];
    mu /= n;
    for (int i = 0; i < n; ++i) var += (v[i] - mu) * (v[i] - mu);
    var /= n;
    const double rs = 1.0 / std::sqrt(var + eps);
    for (int i = 0; i < n; ++i) v[i] = (v[i] - mu) * rs * g[i] + b[i];
  }
}

double Gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

RefOut RefForward(const GrowthTensors& T, const config::ModelConfig& c, const Batch& b) {
  RefModel m{T, c};
  const int B = b.batch, L = b.seq_len, H = c.hidden_size(), A = c.num_attention_heads();
  const int d = H / A, I = c.intermediate_size(), V = c.vocab_size();
  const int E = c.embedding_size() > 0 ? c.embedding_size() : H;
  const int64_t BL = static_cast<int64_t>(B) * L;
  const double eps = c.layer_norm_eps();
  RefOut out;
  std::vector<double> x(BL * E);
  const auto& word = m.P("roformer.embeddings.word_embeddings.weight");
  const auto& type = m.P("roformer.embeddings.token_type_embeddings.weight");
  for (int64_t r = 0; r < BL; ++r) {
    for (int i = 0; i < E; ++i) {
      x[r * E + i] = static_cast<double>(word[b.input_ids[r] * E + i]) +
                     static_cast<double>(type[b.token_type_ids[r] * E + i]);
    }
  }
  RefLayerNorm(&x, BL, E, m.P("roformer.embeddings.LayerNorm.weight"),
               m.P("roformer.embeddings.LayerNorm.bias"), eps);
  if (E != H) {
    std::vector<double> y;
    RefLinear(x, BL, E, m.P("roformer.embeddings_project.weight"),
              m.P("roformer.embeddings_project.bias"), H, &y);
    x = y;
  }
  out.hidden.push_back(x);
  std::vector<double> carry(static_cast<size_t>(B) * A * L * L, 0.0);
  for (int l = 0; l < c.num_hidden_layers(); ++l) {
    const std::string p = "roformer.encoder.layer." + std::to_string(l) + ".";
    std::vector<double> ain = x;
    if (c.pre_ln()) {
      RefLayerNorm(&ain, BL, H, m.P(p + "attention.output.LayerNorm.weight"),
                   m.P(p + "attention.output.LayerNorm.bias"), eps);
    }
    std::vector<double> q, k, v;
    RefLinear(ain, BL, H, m.P(p + "attention.self.query.weight"),
              m.P(p + "attention.self.query.bias"), H, &q);
    RefLinear(ain, BL, H, m.P(p + "attention.self.key.weight"), m.P(p + "attention.self.key.bias"),
              H, &k);
    RefLinear(ain, BL, H, m.P(p + "attention.self.value.weight"),
              m.P(p + "attention.self.value.bias"), H, &v);
    for (std::vector<double>* z : {&q, &k}) {
      for (int64_t r = 0; r < BL; ++r) {
        const int pos = static_cast<int>(r % L);
        for (int h = 0; h < A; ++h) {
          for (int i = 0; i < d / 2; ++i) {
            const double ang = pos / std::pow(10000.0, static_cast<double>(2 * i) / d);
            double* e = z->data() + r * H + h * d + 2 * i;
            const double a0 = e[0], a1 = e[1];
            e[0] = a0 * std::cos(ang) - a1 * std::sin(ang);
            e[1] = a1 * std::cos(ang) + a0 * std::sin(ang);
          }
        }
      }
    }
    std::vector<double> ctx(BL * H, 0.0), prob(carry.size());
    const double mean_div = c.realformer() && c.realformer_running_mean() ? 1.0 / (l + 1) : 1.0;
    for (int bb = 0; bb < B; ++bb) {
      int n = 0;
      for (int j = 0; j < L; ++j) n += b.attention_mask[bb * L + j];
      double cb = mean_div;
      if (c.attention_scale() == "log_n") cb *= std::log(std::max(n, 16)) / std::log(512.0);
      for (int h = 0; h < A; ++h) {
        for (int i = 0; i < L; ++i) {
          double* cur = carry.data() + ((static_cast<int64_t>(bb) * A + h) * L + i) * L;
          double* pr = prob.data() + ((static_cast<int64_t>(bb) * A + h) * L + i) * L;
          double mx = -1e300;
          for (int j = 0; j < L; ++j) {
            double s = 0;
            for (int t = 0; t < d; ++t) {
              s += q[(bb * L + i) * H + h * d + t] * k[(bb * L + j) * H + h * d + t];
            }
            s /= std::sqrt(static_cast<double>(d));
            cur[j] = c.realformer() && l > 0 ? cur[j] + s : s;
            if (b.attention_mask[bb * L + j]) mx = std::max(mx, cur[j] * cb);
          }
          double z = 0;
          for (int j = 0; j < L; ++j) {
            pr[j] = b.attention_mask[bb * L + j] ? std::exp(cur[j] * cb - mx) : 0.0;
            z += pr[j];
          }
          for (int j = 0; j < L; ++j) pr[j] /= z;
          for (int t = 0; t < d; ++t) {
            double s = 0;
            for (int j = 0; j < L; ++j) s += pr[j] * v[(bb * L + j) * H + h * d + t];
            ctx[(bb * L + i) * H + h * d + t] = s;
          }
        }
      }
    }
    out.carry.push_back(carry);
    out.prob.push_back(prob);
    std::vector<double> a;
    RefLinear(ctx, BL, H, m.P(p + "attention.output.dense.weight"),
              m.P(p + "attention.output.dense.bias"), H, &a);
    for (int64_t i = 0; i < BL * H; ++i) a[i] += x[i];  // res1
    std::vector<double> fin = a;
    if (!c.pre_ln()) {
      RefLayerNorm(&a, BL, H, m.P(p + "attention.output.LayerNorm.weight"),
                   m.P(p + "attention.output.LayerNorm.bias"), eps);
      fin = a;
    } else {
      RefLayerNorm(&fin, BL, H, m.P(p + "output.LayerNorm.weight"),
                   m.P(p + "output.LayerNorm.bias"), eps);
    }
    std::vector<double> f1, f2;
    RefLinear(fin, BL, H, m.P(p + "intermediate.dense.weight"), m.P(p + "intermediate.dense.bias"),
              I, &f1);
    for (double& z : f1) z = Gelu(z);
    RefLinear(f1, BL, I, m.P(p + "output.dense.weight"), m.P(p + "output.dense.bias"), H, &f2);
    for (int64_t i = 0; i < BL * H; ++i) f2[i] += a[i];  // res2 (post: on LN_a output)
    if (!c.pre_ln()) {
      RefLayerNorm(&f2, BL, H, m.P(p + "output.LayerNorm.weight"), m.P(p + "output.LayerNorm.bias"),
                   eps);
    }
    x = f2;
    out.hidden.push_back(x);
  }
  if (c.pre_ln()) {
    RefLayerNorm(&x, BL, H, m.P("roformer.encoder.final_layer_norm.weight"),
                 m.P("roformer.encoder.final_layer_norm.bias"), eps);
  }
  std::vector<double> t1;
  RefLinear(x, BL, H, m.P("cls.predictions.transform.dense.weight"),
            m.P("cls.predictions.transform.dense.bias"), E, &t1);
  for (double& z : t1) z = Gelu(z);
  RefLayerNorm(&t1, BL, E, m.P("cls.predictions.transform.LayerNorm.weight"),
               m.P("cls.predictions.transform.LayerNorm.bias"), eps);
  const auto& dec_b = m.P("cls.predictions.bias");
  out.logits.assign(BL * V, 0.0);
  for (int64_t r = 0; r < BL; ++r) {
    for (int vv = 0; vv < V; ++vv) {
      double s = dec_b[vv];
      for (int i = 0; i < E; ++i) s += t1[r * E + i] * static_cast<double>(word[vv * E + i]);
      out.logits[r * V + vv] = s;
    }
  }
  std::vector<double> cls(static_cast<size_t>(B) * H), pool, sop;
  for (int bb = 0; bb < B; ++bb) {
    std::copy(x.begin() + static_cast<int64_t>(bb) * L * H,
              x.begin() + static_cast<int64_t>(bb) * L * H + H, cls.begin() + bb * H);
  }
  RefLinear(cls, B, H, m.P("sop.pooler.dense.weight"), m.P("sop.pooler.dense.bias"), H, &pool);
  for (double& z : pool) z = std::tanh(z);
  RefLinear(pool, B, H, m.P("sop.classifier.weight"), m.P("sop.classifier.bias"), 2, &out.sop);
  return out;
}

GrowthTensors Tensors(const RoFormerModel& m) {
  return GrowthTensorsFromLoaded(LoadedFromStore(m.store(), false));
}

double MaxDiff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double w = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) w = std::max(w, std::fabs(a[i] - b[i]));
  return w;
}

// Which small hidden state each grown hidden state must tile (-1: not comparable, e.g. the
// output of a Post-LN layer whose LN affine moved onto an inserted layer above it).
std::vector<int> HiddenCorrespondence(const config::ModelConfig& small,
                                      std::vector<int> positions) {
  const int L = small.num_hidden_layers();
  std::sort(positions.begin(), positions.end());
  std::vector<int> order;  // -1 = new
  size_t next = 0;
  for (int l = 0; l <= L; ++l) {
    while (next < positions.size() && positions[next] == l) {
      order.push_back(-1);
      ++next;
    }
    if (l < L) order.push_back(l);
  }
  std::vector<int> corr(order.size() + 1);
  corr[0] = 0;
  int below = 0;  // small hidden index currently represented
  for (size_t f = 0; f < order.size(); ++f) {
    if (order[f] >= 0) below = order[f] + 1;
    corr[f + 1] = below;
  }
  if (!small.pre_ln()) {
    // Post-LN: a state directly below an inserted layer lost its LN affine.
    for (size_t f = 0; f < order.size(); ++f) {
      if (order[f] < 0) corr[f] = -1;
    }
  }
  return corr;
}

// Checks the grown model against the small one: fp32 logits / hidden states (Infer) and fp64
// logits / SOP / hidden / carried scores / probabilities (reference). fp64_tol: 1e-10 when every
// construction step is exact in binary floating point, larger otherwise (noise, √k_d).
void ExpectLossless(RoFormerModel& small, RoFormerModel& big, const std::vector<int>& positions,
                    double fp64_tol, double fp32_tol = 1e-5, bool check_scores = true) {
  const config::ModelConfig& sc = small.config();
  const config::ModelConfig& bc = big.config();
  const int h = sc.hidden_size(), h2 = bc.hidden_size();
  const Batch batch = EvalBatch(sc.vocab_size());
  std::vector<float> ls, lb, ss, sb;
  std::vector<std::vector<float>> hs, hb;
  small.Infer(batch, &ls, &ss, &hs);
  big.Infer(batch, &lb, &sb, &hb);
  ASSERT_EQ(ls.size(), lb.size());
  const double scale = MaxAbs(ls);
  double worst = 0;
  for (size_t i = 0; i < ls.size(); ++i) worst = std::max(worst, std::fabs(ls[i] - lb[i]) / scale);
  EXPECT_LT(worst, fp32_tol) << "fp32 logits";
  const std::vector<int> corr = HiddenCorrespondence(sc, positions);
  ASSERT_EQ(corr.size(), hb.size());
  const int64_t BL = static_cast<int64_t>(batch.batch) * batch.seq_len;
  for (size_t f = 0; f < hb.size(); ++f) {
    if (corr[f] < 0) continue;
    const std::vector<float>& s = hs[corr[f]];
    const double hscale = std::max(1.0, MaxAbs(s));
    double hw = 0;
    for (int64_t r = 0; r < BL; ++r) {
      for (int j = 0; j < h2; ++j) {
        hw = std::max(hw, std::fabs(hb[f][r * h2 + j] - s[r * h + j % h]) / hscale);
      }
    }
    EXPECT_LT(hw, fp32_tol) << "fp32 hidden state " << f << " != tile(small " << corr[f] << ")";
  }

  // fp64
  const GrowthTensors ts = Tensors(small), tb = Tensors(big);
  const RefOut rs = RefForward(ts, sc, batch), rb = RefForward(tb, bc, batch);
  // The reference must agree with the model it stands in for.
  double ref_vs_model = 0;
  for (size_t i = 0; i < ls.size(); ++i) {
    ref_vs_model = std::max(ref_vs_model, std::fabs(rs.logits[i] - ls[i]) / scale);
  }
  EXPECT_LT(ref_vs_model, 1e-5) << "fp64 reference vs RoFormerModel::Infer";
  const double d64 = std::max(MaxDiff(rs.logits, rb.logits), MaxDiff(rs.sop, rb.sop));
  EXPECT_LT(d64, fp64_tol) << "fp64 logits";
  std::printf("%s -> %s: fp32 logits max rel err %.3g, fp64 logits/SOP max abs err %.3g\n",
              sc.ShortDebugString().c_str(), bc.ShortDebugString().c_str(), worst, d64);
  for (size_t f = 0; f < rb.hidden.size(); ++f) {
    if (corr[f] < 0) continue;
    double hw = 0;
    for (int64_t r = 0; r < BL; ++r) {
      for (int j = 0; j < h2; ++j) {
        hw = std::max(hw, std::fabs(rb.hidden[f][r * h2 + j] - rs.hidden[corr[f]][r * h + j % h]));
      }
    }
    EXPECT_LT(hw, fp64_tol) << "fp64 hidden state " << f;
  }
  if (!check_scores || !positions.empty()) return;
  // RealFormer carried scores (running sums) and probabilities: big head e == small head e mod H.
  const int A = sc.num_attention_heads(), A2 = bc.num_attention_heads(), L = batch.seq_len;
  for (size_t l = 0; l < rs.carry.size(); ++l) {
    double cw = 0, pw = 0;
    for (int bb = 0; bb < batch.batch; ++bb) {
      for (int e = 0; e < A2; ++e) {
        for (int64_t ij = 0; ij < static_cast<int64_t>(L) * L; ++ij) {
          const int64_t gi = (static_cast<int64_t>(bb) * A2 + e) * L * L + ij;
          const int64_t si = (static_cast<int64_t>(bb) * A + e % A) * L * L + ij;
          cw = std::max(cw, std::fabs(rb.carry[l][gi] - rs.carry[l][si]));
          pw = std::max(pw, std::fabs(rb.prob[l][gi] - rs.prob[l][si]));
        }
      }
    }
    EXPECT_LT(cw, fp64_tol) << "carried scores, layer " << l;
    EXPECT_LT(pw, fp64_tol) << "attention probabilities, layer " << l;
  }
}

// ---------------------------------------------------------------------------------------------

TEST(GrowthWidth, PostLnRealFormerRopeTimes2) {
  auto small = MakeSmall(SmallConfig());
  auto g = GrowModel(*small, Grown(small->config(), 32, 4, 48), Exact());
  ExpectLossless(*small, *g.model, {}, 1e-10);
}

TEST(GrowthWidth, PostLnRealFormerTimes3WithFfnNonMultiple) {
  auto small = MakeSmall(SmallConfig());
  // FFN 24 -> 80: sources 0..7 copied 4 times, 8..23 three times (non-uniform counts).
  auto g = GrowModel(*small, Grown(small->config(), 48, 6, 80), Exact());
  ExpectLossless(*small, *g.model, {}, 1e-10);
}

TEST(GrowthWidth, FfnOnlyNonMultiple) {
  auto small = MakeSmall(SmallConfig());
  auto g = GrowModel(*small, Grown(small->config(), 16, 2, 40), Exact());
  ExpectLossless(*small, *g.model, {}, 1e-10);
}

TEST(GrowthWidth, LogNScaleAndRunningMean) {
  config::ModelConfig c = SmallConfig();
  c.set_attention_scale("log_n");
  c.set_realformer_running_mean(true);
  auto small = MakeSmall(c);
  auto g = GrowModel(*small, Grown(small->config(), 32, 4, 48), Exact());
  ExpectLossless(*small, *g.model, {}, 1e-10);
}

TEST(GrowthWidth, FactorisedEmbeddings) {
  config::ModelConfig c = SmallConfig();
  c.set_embedding_size(8);
  auto small = MakeSmall(c);
  auto g = GrowModel(*small, Grown(small->config(), 32, 4, 48), Exact());
  ExpectLossless(*small, *g.model, {}, 1e-10);
}

TEST(GrowthWidth, PreLnTimes2) {
  auto small = MakeSmall(SmallConfig(/*pre_ln=*/true));
  auto g = GrowModel(*small, Grown(small->config(), 32, 4, 40), Exact());
  ExpectLossless(*small, *g.model, {}, 1e-10);
}

TEST(GrowthWidth, NoRealFormer) {
  auto small = MakeSmall(SmallConfig(false, /*realformer=*/false));
  auto g = GrowModel(*small, Grown(small->config(), 32, 4, 48), Exact());
  ExpectLossless(*small, *g.model, {}, 1e-10);
}

TEST(GrowthHeadDim, StrideRopeTimes2) {
  // Heads fixed at 2, head_dim 8 -> 16. The keys are scaled by √2, which fp32 weights store
  // rounded, so fp64 agrees to ~1e-7 relative here (exact construction, inexact storage).
  auto small = MakeSmall(SmallConfig());
  auto g = GrowModel(*small, Grown(small->config(), 32, 2, 48), Exact());
  ExpectLossless(*small, *g.model, {}, 1e-6);
}

TEST(GrowthHeadDim, StrideRopeTimes4IsExactInFp64) {
  // √4 = 2 is exact: the fp64 check is at 1e-10.
  for (bool pre : {false, true}) {
    auto small = MakeSmall(SmallConfig(pre));
    auto g = GrowModel(*small, Grown(small->config(), 64, 2, 24), Exact());
    ExpectLossless(*small, *g.model, {}, 1e-10);
  }
}

TEST(GrowthHeadDim, HeadsAndHeadDimTogether) {
  auto small = MakeSmall(SmallConfig());
  auto g = GrowModel(*small, Grown(small->config(), 64, 4, 48), Exact());  // heads x2, d x2
  ExpectLossless(*small, *g.model, {}, 1e-6);
}

TEST(GrowthHeadDim, StridePlacement) {
  // Old pair i -> new pair k_d*i; everything else new.
  EXPECT_EQ(StrideSourceChannel(0, 8, 2), 0);
  EXPECT_EQ(StrideSourceChannel(1, 8, 2), 1);
  EXPECT_EQ(StrideSourceChannel(2, 8, 2), -1);
  EXPECT_EQ(StrideSourceChannel(4, 8, 2), 2);
  EXPECT_EQ(StrideSourceChannel(5, 8, 2), 3);
  EXPECT_EQ(StrideSourceChannel(15, 8, 2), -1);
  const AxisMap m = HeadChannelMap(2, 8, 3, 2);  // 6 heads of 16
  EXPECT_EQ(m.size(), 96);
  EXPECT_EQ(m.src[4 * 16 + 4], 0 * 8 + 2);  // head 4 copies head 0
  EXPECT_EQ(m.src[5 * 16 + 13], 1 * 8 + 7);
  for (int64_t c : m.count) EXPECT_EQ(c, 3);
}

TEST(GrowthDepth, PostLnMiddleAndTop) {
  for (std::vector<int> pos : {std::vector<int>{1}, std::vector<int>{2}, std::vector<int>{1, 1}}) {
    auto small = MakeSmall(SmallConfig());
    auto g = GrowModel(*small, Grown(small->config(), 16, 2, 24, 2 + pos.size()), Exact(pos));
    ExpectLossless(*small, *g.model, pos, 1e-10);
  }
}

TEST(GrowthDepth, PostLnBelowFirstLayerShiftsEmbeddingLn) {
  auto small = MakeSmall(SmallConfig());
  auto g = GrowModel(*small, Grown(small->config(), 16, 2, 24, 3), Exact({0}));
  ExpectLossless(*small, *g.model, {0}, 1e-10);
}

TEST(GrowthDepth, PreLnMiddleAndTop) {
  for (std::vector<int> pos : {std::vector<int>{0}, std::vector<int>{1}, std::vector<int>{2}}) {
    auto small = MakeSmall(SmallConfig(/*pre_ln=*/true));
    auto g = GrowModel(*small, Grown(small->config(), 16, 2, 24, 3), Exact(pos));
    ExpectLossless(*small, *g.model, pos, 1e-10);
  }
}

TEST(GrowthDepth, RunningMeanOnlyAtTheTop) {
  config::ModelConfig c = SmallConfig();
  c.set_realformer_running_mean(true);
  auto small = MakeSmall(c);
  try {
    GrowModel(*small, Grown(c, 16, 2, 24, 3), Exact({1}));
    FAIL() << "running-mean insertion in the middle must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("running_mean"), std::string::npos) << e.what();
  }
  auto g = GrowModel(*small, Grown(c, 16, 2, 24, 3), Exact({2}));
  ExpectLossless(*small, *g.model, {2}, 1e-10);
}

TEST(GrowthCombined, WidthAndDepthThenAgain) {
  for (bool pre : {false, true}) {
    auto small = MakeSmall(SmallConfig(pre));
    // 1st: width x2 (heads x2) + FFN 24 -> 40 + a layer in the middle.
    auto g1 = GrowModel(*small, Grown(small->config(), 32, 4, 40, 3), Exact({1}));
    ExpectLossless(*small, *g1.model, {1}, 1e-10);
    // 2nd, from the grown model: heads x2 again + FFN -> 100 (non-uniform counts) + a layer
    // below the first (Post-LN: the embedding LayerNorm affine moves up).
    auto g2 = GrowModel(*g1.model, Grown(g1.model->config(), 64, 8, 100, 4), Exact({0}));
    // Compare the twice-grown model with the ORIGINAL small model end to end.
    const Batch batch = EvalBatch(150);
    std::vector<float> ls, lb;
    small->Infer(batch, &ls, nullptr);
    g2.model->Infer(batch, &lb, nullptr);
    double worst = 0;
    const double scale = MaxAbs(ls);
    for (size_t i = 0; i < ls.size(); ++i)
      worst = std::max(worst, std::fabs(ls[i] - lb[i]) / scale);
    EXPECT_LT(worst, 1e-5);
    const double d64 = MaxDiff(RefForward(Tensors(*small), small->config(), batch).logits,
                               RefForward(Tensors(*g2.model), g2.model->config(), batch).logits);
    EXPECT_LT(d64, 1e-10);
    std::printf("grown twice, vs the original: fp32 logits max rel err %.3g, fp64 %.3g\n", worst,
                d64);
  }
}

TEST(GrowthNoise, RandomSplitIsCloseAndDeterministic) {
  auto small = MakeSmall(SmallConfig());
  GrowthOptions o;
  o.seed = 5;
  o.noise_scale = 0.1;
  auto g = GrowModel(*small, Grown(small->config(), 32, 4, 48), o);
  // Zero-sum Δ: the function is exact in real arithmetic; only fp32 rounding of W/c + Δ remains.
  ExpectLossless(*small, *g.model, {}, 1e-6, 1e-5);
  auto g_again = GrowModel(*small, Grown(small->config(), 32, 4, 48), o);
  EXPECT_EQ(g.model->store().params(), g_again.model->store().params());
  o.seed = 6;
  auto g_other = GrowModel(*small, Grown(small->config(), 32, 4, 48), o);
  EXPECT_NE(g.model->store().params(), g_other.model->store().params());
}

TEST(GrowthErrors, RefusesInexactTargets) {
  const config::ModelConfig c = SmallConfig();
  auto small = MakeSmall(c);
  auto expect_error = [&](config::ModelConfig to, const char* what) {
    try {
      GrowModel(*small, to, Exact());
      FAIL() << "expected an error mentioning " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(Grown(c, 24, 3, 48), "integer multiple");  // hidden x1.5
  expect_error(Grown(c, 48, 4, 48), "head_dim");          // d 8 -> 12
  expect_error(Grown(c, 32, 4, 16), "intermediate_size");
  config::ModelConfig pre = Grown(c, 32, 4, 48);
  pre.set_pre_ln(true);
  expect_error(pre, "pre_ln");
  config::ModelConfig eps = Grown(c, 32, 4, 48);
  eps.set_layer_norm_eps(1e-5f);
  expect_error(eps, "layer_norm_eps");
}

// ---------------------------------------------------------------------------------------------
// Gradient rule (§3.10 / §4.3) and Adam state (§4.4).

struct Grads {
  std::vector<float> small, big;
};

void Backward(RoFormerModel& m, const Batch& b) {
  m.store().ZeroGrads();
  m.ForwardBackward(b, DropoutContext{}, /*backward=*/true);
}

// The ratio grown/small gradient the derivation predicts, written out per tensor (independent of
// the library's recipe table): 1/c_out of the unit the entry writes into, ×k for the MLM LN (its
// value is ÷k), ÷√k_d for the keys (×√k_d).
double ExpectedRatio(const std::string& name, int64_t src_row, int k, int k_heads, int k_d,
                     const AxisMap& ffn) {
  auto ends = [&](const char* s) {
    const std::string x(s);
    return name.size() >= x.size() && name.compare(name.size() - x.size(), x.size(), x) == 0;
  };
  if (name.rfind("cls.predictions.transform.LayerNorm", 0) == 0) return 1.0;
  if (name == "cls.predictions.bias" || name.rfind("sop.classifier", 0) == 0) return 1.0;
  if (ends("attention.self.key.weight") || ends("attention.self.key.bias")) {
    return 1.0 / (k_heads * std::sqrt(static_cast<double>(k_d)));
  }
  if (ends("attention.self.query.weight") || ends("attention.self.query.bias") ||
      ends("attention.self.value.weight") || ends("attention.self.value.bias")) {
    return 1.0 / k_heads;
  }
  if (ends("intermediate.dense.weight") || ends("intermediate.dense.bias")) {
    return 1.0 / ffn.count[src_row];
  }
  return 1.0 / k;  // everything that writes into the hidden stream (incl. tied embeddings)
}

TEST(GrowthGradients, SymmetricSplitGivesSmallGradOverCout) {
  for (bool pre : {false, true}) {
    auto small = MakeSmall(SmallConfig(pre));
    for (auto [h2, a2, i2] : {std::tuple{32, 4, 40}, std::tuple{32, 2, 40}}) {
      const config::ModelConfig to = Grown(small->config(), h2, a2, i2);
      auto g = GrowModel(*small, to, Exact());
      const Batch b = EvalBatch(150);
      Backward(*small, b);
      Backward(*g.model, b);
      const WidthPlan plan = PlanWidthGrowth(small->config(), g.model->config(), 256, 1);
      const ParamStore &ss = small->store(), &bs = g.model->store();
      double worst = 0;
      for (const ParamInfo& info : bs.infos()) {
        const TensorRecipe r = WidthRecipeFor(info.name, plan, 0.0);
        const ParamInfo& si = ss.info(info.name);
        const int64_t C = r.cols.size(), C0 = r.cols.count.size();
        const float* gs = ss.grads().data() + si.offset;
        const float* gb = bs.grads().data() + info.offset;
        double gmax = 1e-12;
        for (int64_t i = 0; i < si.numel; ++i) gmax = std::max(gmax, std::fabs((double)gs[i]));
        for (int64_t i = 0; i < r.rows.size(); ++i) {
          for (int64_t j = 0; j < C; ++j) {
            const int64_t sr = r.rows.src[i], sc = r.cols.src[j];
            if (sr < 0 || sc < 0) continue;
            const double want =
                gs[sr * C0 + sc] *
                ExpectedRatio(info.name, sr, plan.k, plan.k_heads, plan.k_head_dim, plan.ffn);
            const double err = std::fabs(gb[i * C + j] - want) / gmax;
            worst = std::max(worst, err);
            ASSERT_LT(err, 1e-4) << info.name << " [" << i << ", " << j << "] grown "
                                 << gb[i * C + j] << " want " << want;
          }
        }
      }
      RecordProperty("worst_grad_rule_err", std::to_string(worst));
    }
  }
}

TEST(GrowthGradients, RandomSplitCopiesSumToSmallGrad) {
  auto small = MakeSmall(SmallConfig());
  GrowthOptions o;
  o.seed = 9;
  o.noise_scale = 0.3;
  auto g = GrowModel(*small, Grown(small->config(), 32, 4, 40), o);
  const Batch b = EvalBatch(150);
  Backward(*small, b);
  Backward(*g.model, b);
  const WidthPlan plan = PlanWidthGrowth(small->config(), g.model->config(), 256, 1);
  const ParamStore &ss = small->store(), &bs = g.model->store();
  bool copies_differ = false;
  for (const ParamInfo& info : bs.infos()) {
    const TensorRecipe r = WidthRecipeFor(info.name, plan, 0.0);
    const ParamInfo& si = ss.info(info.name);
    const int64_t C = r.cols.size(), C0 = r.cols.count.size();
    const float* gs = ss.grads().data() + si.offset;
    const float* gb = bs.grads().data() + info.offset;
    double gmax = 1e-12;
    for (int64_t i = 0; i < si.numel; ++i) gmax = std::max(gmax, std::fabs((double)gs[i]));
    // Sum over the output copies (rows for [out, in] and vectors; cols for the embeddings),
    // the input copy held fixed, equals the small gradient / scale.
    const bool out_rows = r.out_axis != 1;
    const AxisMap& outm = out_rows ? r.rows : r.cols;
    const AxisMap& inm = out_rows ? r.cols : r.rows;
    for (int64_t in = 0; in < inm.size(); ++in) {
      if (inm.src[in] < 0) continue;
      std::vector<double> sum(outm.count.size(), 0.0);
      std::vector<double> first(outm.count.size(), NAN);
      for (int64_t o = 0; o < outm.size(); ++o) {
        if (outm.src[o] < 0) continue;
        const double v = out_rows ? gb[o * C + in] : gb[in * C + o];
        sum[outm.src[o]] += v;
        if (std::isnan(first[outm.src[o]])) {
          first[outm.src[o]] = v;
        } else if (std::fabs(first[outm.src[o]] - v) > 1e-3 * gmax) {
          copies_differ = true;
        }
      }
      for (size_t s = 0; s < sum.size(); ++s) {
        const int64_t sr = out_rows ? s : inm.src[in], sc = out_rows ? inm.src[in] : s;
        const double want = gs[sr * C0 + sc] / r.scale;
        ASSERT_LT(std::fabs(sum[s] - want), 1e-4 * gmax)
            << info.name << " source [" << sr << ", " << sc << "]";
      }
    }
    // Input copies of one entry see identical inputs, hence identical gradients.
    if (r.split_axis == 1) {
      for (int64_t i = 0; i < r.rows.size(); ++i) {
        for (int64_t j = 0; j < C; ++j) {
          const int64_t sc = r.cols.src[j];
          if (sc < 0 || r.rows.src[i] < 0) continue;
          ASSERT_NEAR(gb[i * C + j], gb[i * C + sc], 1e-4 * gmax) << info.name;
        }
      }
    }
  }
  EXPECT_TRUE(copies_differ) << "random Δ must give the output copies different gradients";
}

TEST(GrowthOptimizerState, MomentsKeepTheAdamDirection) {
  auto small = MakeSmall(SmallConfig());
  AdamWOptions ao;
  ao.grad_clip = 0.0;
  // Two real steps so m and v are nonzero.
  for (int step = 1; step <= 2; ++step) {
    Backward(*small, EvalBatch(150, 12, 3, 100 + step));
    AdamWStep(&small->store(), ao, 1e-3, step, 0.0);
  }
  const config::ModelConfig to = Grown(small->config(), 32, 4, 40, 3);
  auto g = GrowModel(*small, to, Exact({1}), /*with_optimizer=*/true);
  // One more step at lr = 0 on both: only m and v move, by the (related) gradients.
  const Batch b = EvalBatch(150, 12, 3, 200);
  Backward(*small, b);
  Backward(*g.model, b);
  AdamWStep(&small->store(), ao, 0.0, 3, 0.0);
  AdamWStep(&g.model->store(), ao, 0.0, 3, 0.0);
  // m/√v (the Adam direction) of every copied entry equals its source's; layer 1 is new (m=v=0
  // before the step) and the old layer 1 is now layer 2.
  const ParamStore &ss = small->store(), &bs = g.model->store();
  config::ModelConfig mid = to;
  mid.set_num_hidden_layers(2);
  const WidthPlan plan = PlanWidthGrowth(small->config(), mid, 256, 1);
  double worst = 0;
  for (const ParamInfo& info : bs.infos()) {
    std::string src_name = info.name;
    const std::string lp = "roformer.encoder.layer.";
    if (info.name.rfind(lp, 0) == 0) {
      const int l = std::stoi(info.name.substr(lp.size()));
      if (l == 1) continue;  // the new layer
      if (l == 2) src_name = lp + "1" + info.name.substr(lp.size() + 1);
      // Post-LN: layer 0's FFN LN moved to the new layer (identity, fresh moments, here).
      if (l == 0 && info.name.find(".output.LayerNorm.") != std::string::npos) continue;
    }
    const TensorRecipe r = WidthRecipeFor(src_name, plan, 0.0);
    const ParamInfo& si = ss.info(src_name);
    const int64_t C = r.cols.size(), C0 = r.cols.count.size();
    double vmax = 0, mmax = 0;
    for (int64_t i = 0; i < si.numel; ++i) {
      vmax = std::max(vmax, static_cast<double>(ss.adam_v()[si.offset + i]));
      mmax = std::max(mmax, std::fabs(static_cast<double>(ss.adam_m()[si.offset + i])));
    }
    for (int64_t i = 0; i < r.rows.size(); ++i) {
      for (int64_t j = 0; j < C; ++j) {
        const int64_t sr = r.rows.src[i], sc = r.cols.src[j];
        if (sr < 0 || sc < 0) continue;
        const double ms = ss.adam_m()[si.offset + sr * C0 + sc];
        const double vs = ss.adam_v()[si.offset + sr * C0 + sc];
        const double mb = bs.adam_m()[info.offset + i * C + j];
        const double vb = bs.adam_v()[info.offset + i * C + j];
        // And the mapped moments follow the ratio of the gradient rule.
        const double ratio = GrowthGradientRatio(r, sr, sc);
        ASSERT_NEAR(mb, ms * ratio, 1e-3 * mmax * ratio) << info.name;
        ASSERT_NEAR(vb, vs * ratio * ratio, 1e-3 * vmax * ratio * ratio) << info.name;
        if (vs < 1e-4 * vmax) continue;  // tiny entries: the direction is rounding noise
        const double ds = ms / std::sqrt(vs), db = mb / std::sqrt(vb);
        worst = std::max(worst, std::fabs(ds - db));
        ASSERT_NEAR(db, ds, 2e-3) << info.name << " [" << i << ", " << j << "]";
      }
    }
  }
  // New layer and the step: moments were zero before the step, so after it m = (1-β1) g.
  const ParamInfo& nk = bs.info("roformer.encoder.layer.1.attention.output.dense.weight");
  double nonzero = 0;
  for (int64_t i = 0; i < nk.numel; ++i) {
    ASSERT_FLOAT_EQ(bs.adam_m()[nk.offset + i], (1.0f - 0.9f) * bs.grads()[nk.offset + i]);
    nonzero = std::max(nonzero, std::fabs(static_cast<double>(bs.grads()[nk.offset + i])));
  }
  EXPECT_GT(nonzero, 0.0) << "the zero output projection of a new layer gets a gradient";
  std::printf("adam direction m/sqrt(v): worst |grown - small| %.3g\n", worst);
}

// ---------------------------------------------------------------------------------------------
// Symmetry (§3.4 / §4.5).

// Largest difference between copies of one source entry over the width-grown tensors (only the
// 1-D ones when `vectors_only`: LN affines and biases are pure copies under any split Δ).
double MaxCopySpread(const RoFormerModel& small, const RoFormerModel& big,
                     bool vectors_only = false) {
  const WidthPlan plan = PlanWidthGrowth(small.config(), big.config(), 256, 1);
  const ParamStore& bs = big.store();
  double spread = 0;
  for (const ParamInfo& info : bs.infos()) {
    if (vectors_only && info.global_shape.size() != 1) continue;
    const TensorRecipe r = WidthRecipeFor(info.name, plan, 0.0);
    const int64_t C = r.cols.size(), C0 = r.cols.count.size();
    std::vector<double> first(r.rows.count.size() * C0, NAN);
    const float* p = bs.params().data() + info.offset;
    for (int64_t i = 0; i < r.rows.size(); ++i) {
      for (int64_t j = 0; j < C; ++j) {
        const int64_t sr = r.rows.src[i], sc = r.cols.src[j];
        if (sr < 0 || sc < 0) continue;
        double& f = first[sr * C0 + sc];
        if (std::isnan(f)) {
          f = p[i * C + j];
        } else {
          spread = std::max(spread, std::fabs(f - p[i * C + j]));
        }
      }
    }
  }
  return spread;
}

double TrainSteps(RoFormerModel& m, int steps) {
  AdamWOptions ao;
  double first_loss = 0;
  for (int s = 1; s <= steps; ++s) {
    const Batch b = EvalBatch(150, 12, 4, 300 + s);
    m.store().ZeroGrads();
    const LossStats ls = m.ForwardBackward(b, DropoutContext{}, true);
    if (s == 1) first_loss = ls.loss;
    const GradCheck gc = CheckGradients(m.store());
    AdamWStep(&m.store(), ao, 1e-2, s, gc.norm);
  }
  return first_loss;
}

// With Δ = 0 the copy-swapping permutation maps parameters, gradients and Adam state to
// themselves, so in exact arithmetic the copies never diverge (§3.4). In floating point that holds
// bit for bit only if every op computes an output independently of its position: the BLAS/oneDNN
// GEMM kernels do not (an output column is rounded differently by its place in the register block:
// two identical columns of B give C columns ~1 ulp apart for m >= 27), so the test runs on the
// reference GEMM backend (kernels/cpu/gemm.h: one sequential-k dot product per element), where the
// copies must stay bit-identical through 4 AdamW steps. With random Δ the copies of every written
// unit diverge macroscopically while the step-0 loss is unchanged.
TEST(GrowthSymmetry, SymmetricSplitStaysTogetherRandomSplitDiverges) {
  const GemmBackend saved = CurrentGemmBackend();
  SetGemmBackend(GemmBackend::kReference);
  struct Restore {
    GemmBackend b;
    ~Restore() { SetGemmBackend(b); }
  } restore{saved};
  auto small = MakeSmall(SmallConfig());
  const config::ModelConfig to = Grown(small->config(), 32, 4, 48);
  auto sym = GrowModel(*small, to, Exact(), true);
  GrowthOptions o;
  o.seed = 4;
  o.noise_scale = 0.1;
  auto rnd = GrowModel(*small, to, o, true);
  EXPECT_EQ(MaxCopySpread(*small, *sym.model), 0.0);  // bit-identical copies at the growth point
  EXPECT_GT(MaxCopySpread(*small, *rnd.model), 0.0);  // Δ itself
  EXPECT_EQ(MaxCopySpread(*small, *rnd.model, /*vectors_only=*/true), 0.0);

  // Step-0 losses equal (exact function), then a few AdamW steps.
  auto small_copy = MakeSmall(SmallConfig());
  const double l_small = TrainSteps(*small_copy, 1);
  const double l_sym = TrainSteps(*sym.model, 4);
  const double l_rnd = TrainSteps(*rnd.model, 4);
  EXPECT_NEAR(l_sym, l_small, 1e-5 * l_small);
  EXPECT_NEAR(l_rnd, l_small, 1e-5 * l_small);
  const double sym_all = MaxCopySpread(*small, *sym.model);
  const double sym_vec = MaxCopySpread(*small, *sym.model, true);
  const double rnd_vec = MaxCopySpread(*small, *rnd.model, true);
  EXPECT_EQ(sym_all, 0.0) << "Δ = 0: copies must stay bit-identical";
  EXPECT_GT(rnd_vec, 1e-6) << "random Δ: copies must diverge";
  std::printf(
      "after 4 AdamW steps: copy spread with Δ = 0: %.3g (LN/bias %.3g); random Δ "
      "LN/bias copies: %.3g\n",
      sym_all, sym_vec, rnd_vec);
}

}  // namespace
}  // namespace roformer
