// model.attention_recompute: the backward recomputes the attention probabilities instead of
// keeping them per layer (kernels/cpu/attention.h). Without RealFormer the gradients must be
// bit-identical to the stored-probs run; with RealFormer (sum and running mean) the carry is
// rebuilt downwards by subtraction, so they must agree to fp32 rounding. Forward-only passes
// (eval, Infer) are unchanged bit for bit, and the per-layer probs memory is gone.
#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/gemm.h"
#include "model/roformer_model.h"

namespace roformer {
namespace {

struct Variant {
  const char* name;
  bool realformer = false;
  bool running_mean = false;
  bool pre_ln = false;
  bool log_n = false;
  int layers = 4;
};

config::ModelConfig SmallConfig(const Variant& v, bool recompute) {
  config::ModelConfig c;
  c.set_vocab_size(60);
  c.set_hidden_size(32);
  c.set_num_hidden_layers(v.layers);
  c.set_num_attention_heads(4);
  c.set_intermediate_size(64);
  c.set_hidden_dropout_prob(0.1f);
  c.set_attention_probs_dropout_prob(0.1f);
  c.set_max_position_embeddings(64);
  c.set_type_vocab_size(2);
  // Larger than BERT's 0.02 so the scores are far from uniform and the carry grows layer by layer
  // (the rebuilt carry's rounding error scales with it).
  c.set_initializer_range(0.2f);
  c.set_realformer(v.realformer);
  c.set_realformer_running_mean(v.running_mean);
  c.set_pre_ln(v.pre_ln);
  c.set_attention_scale(v.log_n ? "log_n" : "sqrt_d");
  c.set_attention_recompute(recompute);
  return c;
}

// B sequences of length L; row r has L - 3 r real tokens (row 0 full), so the mask and the log_n
// scale differ per row.
Batch MakeBatch(int B, int L, uint32_t seed) {
  Batch b;
  b.batch = B;
  b.seq_len = L;
  std::mt19937 gen(seed);
  for (int r = 0; r < B; ++r) {
    const int len = L - 3 * r;
    for (int t = 0; t < L; ++t) {
      const bool real = t < len;
      b.input_ids.push_back(real ? (t == 0 ? 2 : 5 + static_cast<int>(gen() % 54)) : 0);
      b.token_type_ids.push_back(real && t >= len / 2 ? 1 : 0);
      b.attention_mask.push_back(real ? 1 : 0);
    }
    for (int t = 1; t < len; t += 4) {
      b.mlm_positions.push_back(r * L + t);
      b.mlm_labels.push_back(5 + static_cast<int>(gen() % 54));
    }
    b.sop_labels.push_back(r % 2);
  }
  return b;
}

DropoutContext Train(uint64_t step, uint32_t micro) {
  DropoutContext dc;
  dc.enabled = true;
  dc.seed = 1234;
  dc.step = step;
  dc.micro = micro;
  return dc;
}

// Largest per-tensor relative difference max|a - b| / max|b| over every parameter gradient.
double MaxRelGradDiff(const RoFormerModel& a, const RoFormerModel& b, std::string* worst) {
  double max_rel = 0;
  for (const ParamInfo& info : b.store().infos()) {
    const float* ga = a.store().grads().data() + info.offset;
    const float* gb = b.store().grads().data() + info.offset;
    double diff = 0, ref = 0;
    for (int64_t i = 0; i < info.numel; ++i) {
      diff = std::max(diff, std::fabs(static_cast<double>(ga[i]) - gb[i]));
      ref = std::max(ref, std::fabs(static_cast<double>(gb[i])));
    }
    if (ref == 0) {
      EXPECT_EQ(diff, 0) << info.name;
      continue;
    }
    if (diff / ref > max_rel) {
      max_rel = diff / ref;
      *worst = info.name;
    }
  }
  return max_rel;
}

bool GradsBitIdentical(const RoFormerModel& a, const RoFormerModel& b) {
  const auto& ga = a.store().grads();
  const auto& gb = b.store().grads();
  return ga.size() == gb.size() &&
         std::memcmp(ga.data(), gb.data(), sizeof(float) * ga.size()) == 0;
}

// Two micro-batches of gradient accumulation (different shapes), then checks. Both models run the
// same calls; `ref` keeps the probs, `rc` recomputes them.
void RunTrainingComparison(const Variant& v) {
  SCOPED_TRACE(v.name);
  RoFormerModel ref(SmallConfig(v, false)), rc(SmallConfig(v, true));
  ref.InitWeights(42);
  rc.InitWeights(42);
  const Batch b0 = MakeBatch(3, 24, 7), b1 = MakeBatch(2, 20, 8);
  for (int micro = 0; micro < 2; ++micro) {
    const Batch& b = micro == 0 ? b0 : b1;
    const LossStats lr = ref.ForwardBackward(b, Train(5, micro), true, 0.5f);
    const LossStats lc = rc.ForwardBackward(b, Train(5, micro), true, 0.5f);
    // The forward is untouched by the option: losses are equal, not just close.
    EXPECT_EQ(lr.loss, lc.loss) << "micro " << micro;
    EXPECT_EQ(lr.mlm_loss, lc.mlm_loss);
    EXPECT_EQ(lr.sop_loss, lc.sop_loss);
  }
  if (!v.realformer) {
    EXPECT_TRUE(GradsBitIdentical(rc, ref));
    return;
  }
  std::string worst;
  const double rel = MaxRelGradDiff(rc, ref, &worst);
  std::printf("[%s] max relative gradient difference %.3g (%s)\n", v.name, rel, worst.c_str());
  EXPECT_LT(rel, 1e-5) << worst;
  // Not trivially equal either: the rebuilt carry does round (documents the claim).
  EXPECT_FALSE(GradsBitIdentical(rc, ref));
}

TEST(AttentionRecompute, VanillaPostLnBitIdentical) {
  RunTrainingComparison({"vanilla post-LN sqrt_d"});
}

TEST(AttentionRecompute, VanillaPreLnLogNBitIdentical) {
  Variant v{"vanilla pre-LN log_n"};
  v.pre_ln = v.log_n = true;
  RunTrainingComparison(v);
}

TEST(AttentionRecompute, RealFormerPostLnWithinTolerance) {
  Variant v{"realformer post-LN sqrt_d"};
  v.realformer = true;
  RunTrainingComparison(v);
}

TEST(AttentionRecompute, RealFormerPreLnLogNWithinTolerance) {
  Variant v{"realformer pre-LN log_n"};
  v.realformer = v.pre_ln = v.log_n = true;
  RunTrainingComparison(v);
}

TEST(AttentionRecompute, RealFormerRunningMeanPostLnLogNWithinTolerance) {
  Variant v{"realformer running mean post-LN log_n"};
  v.realformer = v.running_mean = v.log_n = true;
  RunTrainingComparison(v);
}

TEST(AttentionRecompute, RealFormerRunningMeanPreLnWithinTolerance) {
  Variant v{"realformer running mean pre-LN sqrt_d"};
  v.realformer = v.running_mean = v.pre_ln = true;
  RunTrainingComparison(v);
}

// Twelve layers: the rebuilt carry's rounding accumulates over the layers walked down, and stays
// far inside the tolerance.
TEST(AttentionRecompute, RealFormerTwelveLayersWithinTolerance) {
  Variant v{"realformer 12 layers pre-LN log_n"};
  v.realformer = v.pre_ln = v.log_n = true;
  v.layers = 12;
  RunTrainingComparison(v);
  v.name = "realformer running mean 12 layers post-LN";
  v.running_mean = true;
  v.pre_ln = v.log_n = false;
  RunTrainingComparison(v);
}

// Eval and inference with the option on: forward-only passes, then a training step after them
// (each ForwardBackward recomputes from its own forward, whatever ran before).
TEST(AttentionRecompute, ForwardOnlyPassesAndInferAreUnchanged) {
  Variant v{"realformer running mean pre-LN log_n"};
  v.realformer = v.running_mean = v.pre_ln = v.log_n = true;
  RoFormerModel ref(SmallConfig(v, false)), rc(SmallConfig(v, true));
  ref.InitWeights(3);
  rc.InitWeights(3);
  const Batch b = MakeBatch(3, 24, 21), other = MakeBatch(4, 16, 22);
  const LossStats er = ref.ForwardBackward(b, DropoutContext{}, false);
  const LossStats ec = rc.ForwardBackward(b, DropoutContext{}, false);
  EXPECT_EQ(er.loss, ec.loss);
  const auto lr = ref.LastMlmLogits(), lc = rc.LastMlmLogits();
  ASSERT_EQ(lr.size(), lc.size());
  EXPECT_EQ(std::memcmp(lr.data(), lc.data(), sizeof(float) * lr.size()), 0);

  std::vector<float> logits_r, logits_c, seq_r, seq_c;
  std::vector<std::vector<float>> hid_r, hid_c;
  ref.Infer(other, &logits_r, &seq_r, &hid_r);
  rc.Infer(other, &logits_c, &seq_c, &hid_c);
  EXPECT_EQ(logits_r, logits_c);
  EXPECT_EQ(seq_r, seq_c);
  EXPECT_EQ(hid_r, hid_c);

  // A training step after the forward-only passes (which left a different shape's carry).
  const LossStats tr = ref.ForwardBackward(b, Train(9, 0), true);
  const LossStats tc = rc.ForwardBackward(b, Train(9, 0), true);
  EXPECT_EQ(tr.loss, tc.loss);
  std::string worst;
  EXPECT_LT(MaxRelGradDiff(rc, ref, &worst), 1e-5) << worst;
}

// The encoder/head split (fine-tuning path): EncoderForward, then EncoderBackward.
TEST(AttentionRecompute, EncoderForwardBackwardSplit) {
  for (const bool realformer : {false, true}) {
    Variant v{realformer ? "realformer" : "vanilla"};
    v.realformer = realformer;
    SCOPED_TRACE(v.name);
    RoFormerModel ref(SmallConfig(v, false)), rc(SmallConfig(v, true));
    ref.InitWeights(5);
    rc.InitWeights(5);
    const Batch b = MakeBatch(3, 24, 31);
    const int64_t n = static_cast<int64_t>(b.batch) * b.seq_len * ref.dims().hidden;
    const float* yr = ref.EncoderForward(b, Train(1, 0));
    const float* yc = rc.EncoderForward(b, Train(1, 0));
    ASSERT_EQ(std::memcmp(yr, yc, sizeof(float) * n), 0);
    std::vector<float> dy(n);
    std::mt19937 gen(4);
    std::normal_distribution<float> nd;
    for (float& x : dy) x = nd(gen);
    ref.EncoderBackward(dy.data(), 1.0f);
    rc.EncoderBackward(dy.data(), 1.0f);
    if (!realformer) {
      EXPECT_TRUE(GradsBitIdentical(rc, ref));
    } else {
      std::string worst;
      EXPECT_LT(MaxRelGradDiff(rc, ref, &worst), 1e-5) << worst;
    }
  }
}

// fp32 model with bf16 GEMMs (where the CPU has them): the attention GEMMs are the same calls in
// the forward and the recomputing backward, so vanilla stays bit-identical.
TEST(AttentionRecompute, VanillaBf16GemmsBitIdentical) {
  if (!Bf16GemmUnavailableReason().empty()) GTEST_SKIP() << Bf16GemmUnavailableReason();
  Variant v{"vanilla bf16"};
  config::ModelConfig a = SmallConfig(v, false), c = SmallConfig(v, true);
  a.set_precision("bf16");
  c.set_precision("bf16");
  RoFormerModel ref(a), rc(c);
  ref.InitWeights(8);
  rc.InitWeights(8);
  const Batch b = MakeBatch(3, 24, 41);
  EXPECT_EQ(ref.ForwardBackward(b, Train(2, 0), true).loss,
            rc.ForwardBackward(b, Train(2, 0), true).loss);
  EXPECT_TRUE(GradsBitIdentical(rc, ref));
}

// Heap bytes in use (small-block arenas + mmapped blocks).
size_t HeapInUse() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// The model's workspace shrinks by exactly the per-layer probs: N * B * heads * L^2 floats.
TEST(AttentionRecompute, WorkspaceDropsThePerLayerProbs) {
  for (const bool realformer : {false, true}) {
    Variant v{realformer ? "realformer" : "vanilla"};
    v.realformer = realformer;
    SCOPED_TRACE(v.name);
    const int B = 4, L = 48;
    const Batch b = MakeBatch(B, L, 51);
    size_t grown[2];
    for (const bool recompute : {false, true}) {
      RoFormerModel m(SmallConfig(v, recompute));
      m.InitWeights(1);
      // A first step of another model at this shape grows the per-thread attention scratch
      // (thread_local, 3 L^2 floats with recompute, 2 without) before the measurement.
      m.ForwardBackward(MakeBatch(B, L, 52), Train(0, 0), true);
      RoFormerModel fresh(SmallConfig(v, recompute));
      fresh.InitWeights(1);
      const size_t before = HeapInUse();
      fresh.ForwardBackward(b, Train(1, 0), true);
      grown[recompute] = HeapInUse() - before;
    }
    const size_t probs_bytes = static_cast<size_t>(4) * B * 4 * L * L * sizeof(float);  // N = 4
    std::printf("[%s] step workspace %zu B stored, %zu B recompute (per-layer probs %zu B)\n",
                v.name, grown[0], grown[1], probs_bytes);
    // malloc rounds each block (a page for mmapped ones): allow a few pages either way.
    EXPECT_NEAR(static_cast<double>(grown[0]) - static_cast<double>(grown[1]),
                static_cast<double>(probs_bytes), 16384.0);
  }
}

// Kernel level: a 3-layer RealFormer chain. The recomputing backward rebuilds the carry each
// layer's forward saw, so after the whole backward it holds cur_0 = S_0 / sqrt(d) again, up to
// rounding; the stored-probs run is the reference for dq, dk, dv and the carry gradient.
TEST(AttentionRecompute, KernelRealFormerChainRebuildsTheCarry) {
  const int B = 2, L = 16, NH = 2, d = 8, H = NH * d, N = 3;
  const int64_t LL = static_cast<int64_t>(L) * L, SQ = B * NH * LL;
  std::mt19937 gen(17);
  std::normal_distribution<float> nd;
  auto randn = [&](int64_t n) {
    std::vector<float> x(n);
    for (float& e : x) e = 2.0f * nd(gen);  // large scores: a sharp softmax, a growing carry
    return x;
  };
  std::vector<std::vector<float>> q(N), k(N), v(N), dctx(N);
  for (int l = 0; l < N; ++l) {
    q[l] = randn(B * L * H);
    k[l] = randn(B * L * H);
    v[l] = randn(B * L * H);
    dctx[l] = randn(B * L * H);
  }
  std::vector<int32_t> mask(B * L, 1);
  for (int j = L - 5; j < L; ++j) mask[L + j] = 0;
  const AttentionDims dims{B, L, NH, d, H};
  auto params = [&](int l, bool recompute) {
    AttentionParams p;
    p.realformer = true;
    p.has_prev = l > 0;
    p.log_n = true;
    p.recompute = recompute;
    p.dropout.p = 0.2f;
    p.dropout.key = 5;
    p.dropout.stream = DropoutStreamId(1, 0, l, 1);
    p.dropout.cols_global = NH * LL;
    return p;
  };
  struct Run {
    std::vector<float> dq, dk, dv, dcarry, carry0_after;
  };
  std::vector<float> cur0;  // cur_0 as the forward left it
  auto run = [&](bool recompute) {
    Run r;
    std::vector<float> carry(SQ), dcarry(SQ), ctx(B * L * H);
    std::vector<std::vector<float>> probs(N, std::vector<float>(recompute ? 0 : SQ));
    for (int l = 0; l < N; ++l) {
      AttentionForward(dims, params(l, recompute), q[l].data(), k[l].data(), v[l].data(),
                       mask.data(), carry.data(), recompute ? nullptr : probs[l].data(),
                       ctx.data());
      if (l == 0) cur0 = carry;
    }
    std::vector<float> dq(B * L * H), dk(B * L * H), dv(B * L * H);
    for (int l = N - 1; l >= 0; --l) {
      AttentionBackward(dims, params(l, recompute), dctx[l].data(), q[l].data(), k[l].data(),
                        v[l].data(), mask.data(), recompute ? nullptr : probs[l].data(),
                        dcarry.data(), l + 1 < N, dq.data(), dk.data(), dv.data(), carry.data());
      r.dq.insert(r.dq.end(), dq.begin(), dq.end());
      r.dk.insert(r.dk.end(), dk.begin(), dk.end());
      r.dv.insert(r.dv.end(), dv.begin(), dv.end());
    }
    r.dcarry = dcarry;
    r.carry0_after = carry;
    return r;
  };
  const Run ref = run(false);
  const Run rc = run(true);
  auto rel = [](const std::vector<float>& a, const std::vector<float>& b) {
    double diff = 0, m = 0;
    for (size_t i = 0; i < b.size(); ++i) {
      diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
      m = std::max(m, std::fabs(static_cast<double>(b[i])));
    }
    return diff / m;
  };
  EXPECT_LT(rel(rc.dq, ref.dq), 1e-5);
  EXPECT_LT(rel(rc.dk, ref.dk), 1e-5);
  EXPECT_LT(rel(rc.dv, ref.dv), 1e-5);
  EXPECT_LT(rel(rc.dcarry, ref.dcarry), 1e-5);
  // The stored-probs backward leaves the carry alone (cur_{N-1}); the recomputing one walks it
  // back to cur_0.
  EXPECT_LT(rel(rc.carry0_after, cur0), 1e-5);
  std::printf("kernel chain: rel dq %.3g dk %.3g dv %.3g dcarry %.3g rebuilt cur_0 %.3g\n",
              rel(rc.dq, ref.dq), rel(rc.dk, ref.dk), rel(rc.dv, ref.dv),
              rel(rc.dcarry, ref.dcarry), rel(rc.carry0_after, cur0));
}

// Kernel level, no RealFormer: the recomputing backward is the stored-probs backward bit for bit,
// at a length where the GEMMs block (L = 80) and with OpenMP over (batch, head).
TEST(AttentionRecompute, KernelVanillaBitIdentical) {
  const int B = 3, L = 80, NH = 4, d = 16, H = NH * d;
  const int64_t SQ = static_cast<int64_t>(B) * NH * L * L;
  std::mt19937 gen(23);
  std::normal_distribution<float> nd;
  auto randn = [&](int64_t n) {
    std::vector<float> x(n);
    for (float& e : x) e = nd(gen);
    return x;
  };
  const auto q = randn(B * L * H), k = randn(B * L * H), v = randn(B * L * H),
             dctx = randn(B * L * H);
  std::vector<int32_t> mask(B * L, 1);
  for (int j = L - 30; j < L; ++j) mask[2 * L + j] = 0;
  AttentionParams p;
  p.log_n = true;
  p.dropout.p = 0.1f;
  p.dropout.key = 3;
  p.dropout.stream = 77;
  p.dropout.cols_global = NH * static_cast<int64_t>(L) * L;
  const AttentionDims dims{B, L, NH, d, H};
  std::vector<float> probs(SQ), ctx_a(B * L * H), ctx_b(B * L * H);
  std::vector<float> dq_a(B * L * H), dk_a(B * L * H), dv_a(B * L * H);
  std::vector<float> dq_b(B * L * H), dk_b(B * L * H), dv_b(B * L * H);
  AttentionForward(dims, p, q.data(), k.data(), v.data(), mask.data(), nullptr, probs.data(),
                   ctx_a.data());
  AttentionBackward(dims, p, dctx.data(), q.data(), k.data(), v.data(), mask.data(), probs.data(),
                    nullptr, false, dq_a.data(), dk_a.data(), dv_a.data());
  p.recompute = true;
  AttentionForward(dims, p, q.data(), k.data(), v.data(), mask.data(), nullptr, nullptr,
                   ctx_b.data());
  AttentionBackward(dims, p, dctx.data(), q.data(), k.data(), v.data(), mask.data(), nullptr,
                    nullptr, false, dq_b.data(), dk_b.data(), dv_b.data());
  EXPECT_EQ(ctx_a, ctx_b);
  EXPECT_EQ(dq_a, dq_b);
  EXPECT_EQ(dk_a, dk_b);
  EXPECT_EQ(dv_a, dv_b);
}

}  // namespace
}  // namespace roformer
