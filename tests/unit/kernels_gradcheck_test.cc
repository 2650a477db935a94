// Finite-difference gradient checks for every CPU kernel (central differences in double around the
// fp32 kernels: loss = sum(w * y) with random w, so dL/dy = w is fed to the backward), plus
// known-answer tests for Philox, dropout statistics and an AdamW step computed by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/activations.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/dropout.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/rope.h"
#include "model/optimizer.h"
#include "runtime/param_store.h"
#include "runtime/philox.h"

namespace roformer {
namespace {

std::vector<float> Randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

double WeightedSum(const std::vector<float>& w, const float* y) {
  double s = 0;
  for (size_t i = 0; i < w.size(); ++i) s += static_cast<double>(w[i]) * y[i];
  return s;
}

// Compares analytic[i] with (loss(x+h e_i) - loss(x-h e_i)) / 2h for every i (or `max_checks`
// evenly spread ones). Tolerance: rtol relative plus an absolute floor tied to the largest
// numerical gradient, which absorbs fp32 rounding in the loss.
void CheckGrad(const char* what, std::vector<float>* x, const std::vector<float>& analytic,
               const std::function<double()>& loss, float eps = 1e-2f, double rtol = 1e-2,
               size_t max_checks = 200) {
  ASSERT_EQ(x->size(), analytic.size()) << what;
  const size_t n = x->size();
  const size_t step = std::max<size_t>(1, n / max_checks);
  std::vector<std::pair<double, double>> pairs;
  double scale = 0;
  for (size_t i = 0; i < n; i += step) {
    const float saved = (*x)[i];
    (*x)[i] = saved + eps;
    const double hp = static_cast<double>((*x)[i]) - saved;
    const double lp = loss();
    (*x)[i] = saved - eps;
    const double hm = saved - static_cast<double>((*x)[i]);
    const double lm = loss();
    (*x)[i] = saved;
    const double num = (lp - lm) / (hp + hm);
    pairs.push_back({analytic[i], num});
    scale = std::max(scale, std::abs(num));
  }
  size_t k = 0;
  for (size_t i = 0; i < n; i += step, ++k) {
    const double a = pairs[k].first, num = pairs[k].second;
    const double tol = rtol * std::max(std::abs(a), std::abs(num)) + 2e-3 * scale + 1e-5;
    EXPECT_NEAR(a, num, tol) << what << " element " << i;
  }
}

// ---------------------------------------------------------------------------------------------

TEST(Philox, KnownAnswerVectors) {
  // Random123 kat_vectors, philox4x32_10.
  auto r = Philox4x32Raw({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(r[0], 0x6627e8d5u);
  EXPECT_EQ(r[1], 0xe169c58du);
  EXPECT_EQ(r[2], 0xbc57ac4cu);
  EXPECT_EQ(r[3], 0x9b00dbd8u);
  r = Philox4x32Raw({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                    {0xffffffffu, 0xffffffffu});
  EXPECT_EQ(r[0], 0x408f276du);
  EXPECT_EQ(r[1], 0x41c83b0eu);
  EXPECT_EQ(r[2], 0xa20bc7c6u);
  EXPECT_EQ(r[3], 0x6d5451fdu);
  r = Philox4x32Raw({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                    {0xa4093822u, 0x299f31d0u});
  EXPECT_EQ(r[0], 0xd16cfe09u);
  EXPECT_EQ(r[1], 0x94fdccebu);
  EXPECT_EQ(r[2], 0x5001e420u);
  EXPECT_EQ(r[3], 0x24126ea1u);
}

TEST(Philox, UniformFromCounterTakesWordOfBlock) {
  const uint64_t key = 0x1234567890abcdefull;
  for (uint64_t idx : {0ull, 1ull, 2ull, 3ull, 4ull, 17ull, 123456789ull}) {
    const auto block = Philox4x32(0, idx / 4, key);
    EXPECT_EQ(UniformFromCounter(key, idx), U32ToUniform01f(block[idx % 4]));
    const float u = UniformFromCounter(key, idx);
    EXPECT_GE(u, 0.0f);
    EXPECT_LT(u, 1.0f);
  }
  EXPECT_NE(UniformFromCounter(key, 5, 3), UniformFromCounter(key, 6, 3));
}

TEST(Gemm, BatchedHeadMatchesNaive) {
  const int B = 2, NH = 3, L = 5, d = 4, H = NH * d;
  auto q = Randn(B * L * H, 1), k = Randn(B * L * H, 2);
  std::vector<float> s(B * NH * L * L);
  BatchedHeadSgemm(B, NH, false, true, L, L, d, 0.5f, q.data(), H, {L * H, d}, k.data(), H,
                   {L * H, d}, 0.0f, s.data(), L, {NH * L * L, L * L});
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int i = 0; i < L; ++i)
        for (int j = 0; j < L; ++j) {
          double ref = 0;
          for (int c = 0; c < d; ++c)
            ref += q[(b * L + i) * H + h * d + c] * k[(b * L + j) * H + h * d + c];
          EXPECT_NEAR(s[((b * NH + h) * L + i) * L + j], 0.5 * ref, 1e-5);
        }
}

TEST(GradCheck, Linear) {
  const int rows = 5, in = 7, out = 4;
  auto x = Randn(rows * in, 1), w = Randn(out * in, 2), b = Randn(out, 3),
       wy = Randn(rows * out, 4);
  std::vector<float> y(rows * out);
  auto loss = [&] {
    LinearForward(x.data(), w.data(), b.data(), y.data(), rows, in, out);
    return WeightedSum(wy, y.data());
  };
  std::vector<float> dx(rows * in), dw(out * in, 0.5f), db(out, -0.25f);
  LinearBackward(wy.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), rows, in, out);
  for (auto& v : dw) v -= 0.5f;  // gradients accumulate onto what was there
  for (auto& v : db) v += 0.25f;
  CheckGrad("linear dx", &x, dx, loss);
  CheckGrad("linear dW", &w, dw, loss);
  CheckGrad("linear db", &b, db, loss);
  // accumulate_dx adds to the existing buffer.
  std::vector<float> dx2(rows * in, 1.0f);
  LinearBackward(wy.data(), x.data(), w.data(), dx2.data(), nullptr, nullptr, rows, in, out, true);
  for (int i = 0; i < rows * in; ++i) EXPECT_NEAR(dx2[i], dx[i] + 1.0f, 1e-5);
}

TEST(GradCheck, LayerNorm) {
  const int rows = 4, dim = 9;
  auto x = Randn(rows * dim, 5, 2.0f), g = Randn(dim, 6), b = Randn(dim, 7),
       wy = Randn(rows * dim, 8);
  for (auto& v : x) v += 0.7f;
  std::vector<float> y(rows * dim), mean(rows), rstd(rows);
  auto loss = [&] {
    LayerNormForward(x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(), rows, dim,
                     1e-12f);
    return WeightedSum(wy, y.data());
  };
  loss();
  // y = (x - mean) * rstd * g + b: check the normalised rows directly.
  for (int r = 0; r < rows; ++r) {
    double mu = 0, var = 0;
    for (int i = 0; i < dim; ++i) mu += x[r * dim + i];
    mu /= dim;
    for (int i = 0; i < dim; ++i) var += (x[r * dim + i] - mu) * (x[r * dim + i] - mu);
    var /= dim;
    for (int i = 0; i < dim; ++i) {
      EXPECT_NEAR(y[r * dim + i], (x[r * dim + i] - mu) / std::sqrt(var) * g[i] + b[i], 1e-5);
    }
  }
  std::vector<float> dx(rows * dim), dg(dim, 0), dbeta(dim, 0);
  LayerNormBackward(wy.data(), x.data(), mean.data(), rstd.data(), g.data(), dx.data(), dg.data(),
                    dbeta.data(), rows, dim);
  CheckGrad("layernorm dx", &x, dx, loss, 1e-3f);
  CheckGrad("layernorm dgamma", &g, dg, loss);
  CheckGrad("layernorm dbeta", &b, dbeta, loss);
  std::vector<float> dx2(rows * dim, 2.0f);
  LayerNormBackward(wy.data(), x.data(), mean.data(), rstd.data(), g.data(), dx2.data(), nullptr,
                    nullptr, rows, dim, true);
  for (int i = 0; i < rows * dim; ++i) EXPECT_NEAR(dx2[i], dx[i] + 2.0f, 1e-5);
}

TEST(GradCheck, GeluExactErf) {
  std::vector<float> one = {1.0f, -0.5f, 3.0f}, out(3);
  GeluForward(one.data(), out.data(), 3);
  EXPECT_NEAR(out[0], 0.8413447460685429, 1e-6);  // x * Phi(x), not the tanh form (0.841192)
  EXPECT_NEAR(out[1], -0.15426877197, 1e-6);
  EXPECT_NEAR(out[2], 2.9959507790, 1e-6);
  const int n = 40;
  auto x = Randn(n, 9, 2.0f), wy = Randn(n, 10);
  std::vector<float> y(n), dx(n);
  auto loss = [&] {
    GeluForward(x.data(), y.data(), n);
    return WeightedSum(wy, y.data());
  };
  GeluBackward(wy.data(), x.data(), dx.data(), n);
  CheckGrad("gelu", &x, dx, loss, 1e-3f);
}

TEST(GradCheck, TanhPooler) {
  // SOP pooler: tanh(x W^T + b).
  const int rows = 3, H = 6;
  auto x = Randn(rows * H, 11), w = Randn(H * H, 12, 0.5f), b = Randn(H, 13),
       wy = Randn(rows * H, 14);
  std::vector<float> pre(rows * H), y(rows * H);
  auto loss = [&] {
    LinearForward(x.data(), w.data(), b.data(), pre.data(), rows, H, H);
    TanhForward(pre.data(), y.data(), rows * H);
    return WeightedSum(wy, y.data());
  };
  loss();
  std::vector<float> dpre(rows * H), dx(rows * H), dw(H * H, 0), db(H, 0);
  TanhBackward(wy.data(), y.data(), dpre.data(), rows * H);
  LinearBackward(dpre.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), rows, H, H);
  CheckGrad("pooler dx", &x, dx, loss);
  CheckGrad("pooler dW", &w, dw, loss);
  CheckGrad("pooler db", &b, db, loss);
}

TEST(Rope, TableMatchesHfFormula) {
  const int P = 64, d = 8;
  auto t = RopeTable(P, d);
  for (int p = 0; p < P; ++p)
    for (int i = 0; i < d / 2; ++i) {
      const double angle = p / std::pow(10000.0, 2.0 * i / d);
      EXPECT_EQ(t[p * d + i], static_cast<float>(std::sin(angle)));
      EXPECT_EQ(t[p * d + d / 2 + i], static_cast<float>(std::cos(angle)));
    }
}

TEST(Rope, InterleavedPairsAndRelativePosition) {
  const int L = 6, NH = 1, d = 4;
  auto table = RopeTable(L, d);
  // q = e_0 at position 3 rotates within the pair (0, 1) only.
  std::vector<float> x(L * d, 0.0f);
  x[3 * d + 0] = 1.0f;
  RopeForward(x.data(), table.data(), 1, L, NH, d, d);
  EXPECT_FLOAT_EQ(x[3 * d + 0], static_cast<float>(std::cos(3.0)));
  EXPECT_FLOAT_EQ(x[3 * d + 1], static_cast<float>(std::sin(3.0)));
  EXPECT_EQ(x[3 * d + 2], 0.0f);
  // <R_p q, R_p' k> depends on p - p' only.
  auto q = Randn(d, 1), k = Randn(d, 2);
  auto score = [&](int pq, int pk) {
    std::vector<float> a(L * d, 0.0f), b(L * d, 0.0f);
    std::copy(q.begin(), q.end(), a.begin() + pq * d);
    std::copy(k.begin(), k.end(), b.begin() + pk * d);
    RopeForward(a.data(), table.data(), 1, L, NH, d, d);
    RopeForward(b.data(), table.data(), 1, L, NH, d, d);
    double s = 0;
    for (int c = 0; c < d; ++c) s += a[pq * d + c] * b[pk * d + c];
    return s;
  };
  EXPECT_NEAR(score(4, 2), score(3, 1), 1e-5);
  EXPECT_NEAR(score(5, 0), score(5 - 0 - 0, 0), 1e-9);
}

TEST(GradCheck, Rope) {
  const int B = 2, L = 5, NH = 2, d = 4, H = NH * d;
  auto table = RopeTable(16, d);
  auto x = Randn(B * L * H, 15), wy = Randn(B * L * H, 16);
  std::vector<float> y(x.size());
  auto loss = [&] {
    y = x;
    RopeForward(y.data(), table.data(), B, L, NH, d, H);
    return WeightedSum(wy, y.data());
  };
  std::vector<float> dx = wy;
  RopeBackward(dx.data(), table.data(), B, L, NH, d, H);
  CheckGrad("rope", &x, dx, loss);
}

// ---- attention ----

struct AttnCase {
  const char* name;
  int L = 5;
  bool realformer = false, has_prev = false, log_n = false, masked = false;
  float mean_div = 1.0f;
  float dropout = 0.0f;
};

void RunAttentionGradCheck(const AttnCase& c) {
  SCOPED_TRACE(c.name);
  const int B = 2, NH = 2, d = 4, H = NH * d, L = c.L;
  const int64_t LL = static_cast<int64_t>(L) * L;
  auto q = Randn(B * L * H, 21), k = Randn(B * L * H, 22), v = Randn(B * L * H, 23);
  auto prev = Randn(B * NH * LL, 24);
  auto w_ctx = Randn(B * L * H, 25), w_carry = Randn(B * NH * LL, 26);
  std::vector<int32_t> mask(B * L, 1);
  if (c.masked) {
    mask[1 * L + L - 1] = 0;  // batch row 1: last two keys padded
    mask[1 * L + L - 2] = 0;
  }
  AttentionDims dims{B, L, NH, d, H};
  AttentionParams p;
  p.realformer = c.realformer;
  p.has_prev = c.has_prev;
  p.mean_div = c.mean_div;
  p.log_n = c.log_n;
  if (c.dropout > 0) {
    p.dropout.p = c.dropout;
    p.dropout.key = 99;
    p.dropout.stream = DropoutStreamId(3, 0, 1, 1);
    p.dropout.cols_global = NH * LL;
  }
  std::vector<float> carry(B * NH * LL), probs(B * NH * LL), ctx(B * L * H);
  auto loss = [&] {
    carry = prev;
    AttentionForward(dims, p, q.data(), k.data(), v.data(), mask.data(), carry.data(), probs.data(),
                     ctx.data());
    double s = WeightedSum(w_ctx, ctx.data());
    if (c.realformer) s += WeightedSum(w_carry, carry.data());
    return s;
  };
  loss();
  // Padded keys get probability exactly 0; rows sum to 1.
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int i = 0; i < L; ++i) {
        double sum = 0;
        for (int j = 0; j < L; ++j) {
          const float pr = probs[((b * NH + h) * L + i) * L + j];
          if (!mask[b * L + j]) {
            EXPECT_EQ(pr, 0.0f);
          }
          sum += pr;
        }
        EXPECT_NEAR(sum, 1.0, 1e-5);
      }
  std::vector<float> dq(q.size()), dk(k.size()), dv(v.size()), dcarry = w_carry;
  AttentionBackward(dims, p, w_ctx.data(), q.data(), k.data(), v.data(), mask.data(), probs.data(),
                    c.realformer ? dcarry.data() : nullptr, c.realformer, dq.data(), dk.data(),
                    dv.data());
  CheckGrad("attention dq", &q, dq, loss);
  CheckGrad("attention dk", &k, dk, loss);
  CheckGrad("attention dv", &v, dv, loss);
  if (c.realformer && c.has_prev) CheckGrad("attention dcarry", &prev, dcarry, loss);
}

TEST(GradCheck, AttentionPlain) { RunAttentionGradCheck({"plain"}); }
TEST(GradCheck, AttentionMaskedKeys) {
  AttnCase c{"masked"};
  c.masked = true;
  RunAttentionGradCheck(c);
}
TEST(GradCheck, AttentionRealFormerFirstLayer) {
  AttnCase c{"realformer layer 0"};
  c.realformer = true;
  c.masked = true;
  RunAttentionGradCheck(c);
}
TEST(GradCheck, AttentionRealFormerCarry) {
  AttnCase c{"realformer carry"};
  c.realformer = c.has_prev = c.masked = true;
  RunAttentionGradCheck(c);
}
TEST(GradCheck, AttentionRealFormerRunningMean) {
  AttnCase c{"realformer running mean"};
  c.realformer = c.has_prev = c.masked = true;
  c.mean_div = 1.0f / 3.0f;
  RunAttentionGradCheck(c);
}
TEST(GradCheck, AttentionLogN) {
  // L = 20: row 0 has n = 20 > 16, row 1 has n = 18.
  AttnCase c{"log_n"};
  c.L = 20;
  c.log_n = c.masked = true;
  RunAttentionGradCheck(c);
  c.realformer = c.has_prev = true;
  c.mean_div = 0.5f;
  c.name = "log_n + realformer running mean";
  RunAttentionGradCheck(c);
}
TEST(GradCheck, AttentionDropoutFixedMask) {
  AttnCase c{"dropout"};
  c.dropout = 0.3f;
  c.masked = c.realformer = c.has_prev = true;
  RunAttentionGradCheck(c);
}

TEST(Attention, LogNScaleValue) {
  AttentionParams p;
  p.log_n = true;
  std::vector<int32_t> m(40, 1);
  EXPECT_NEAR(AttentionLogitScale(p, m.data(), 40), std::log(40.0) / std::log(512.0), 1e-7);
  EXPECT_NEAR(AttentionLogitScale(p, m.data(), 8), std::log(16.0) / std::log(512.0), 1e-7);
  for (int i = 30; i < 40; ++i) m[i] = 0;
  EXPECT_NEAR(AttentionLogitScale(p, m.data(), 40), std::log(30.0) / std::log(512.0), 1e-7);
  p.mean_div = 0.25f;
  EXPECT_NEAR(AttentionLogitScale(p, m.data(), 40), 0.25 * std::log(30.0) / std::log(512.0), 1e-7);
}

TEST(Attention, HeadShardsDrawTheSameDropoutMasks) {
  // A TP rank holding head 1 of 2 (col_offset = 1 * L * L) reproduces the TP = 1 result.
  const int B = 2, L = 6, NH = 2, d = 4, H = NH * d;
  auto q = Randn(B * L * H, 31), k = Randn(B * L * H, 32), v = Randn(B * L * H, 33);
  std::vector<int32_t> mask(B * L, 1);
  AttentionParams p;
  p.dropout.p = 0.4f;
  p.dropout.key = 7;
  p.dropout.stream = 11;
  p.dropout.cols_global = NH * L * L;
  std::vector<float> probs(B * NH * L * L), ctx(B * L * H);
  AttentionForward({B, L, NH, d, H}, p, q.data(), k.data(), v.data(), mask.data(), nullptr,
                   probs.data(), ctx.data());
  // Head 1 alone, as a shard with its own [B, L, 1, d] buffers.
  std::vector<float> q1(B * L * d), k1(B * L * d), v1(B * L * d);
  for (int t = 0; t < B * L; ++t)
    for (int c = 0; c < d; ++c) {
      q1[t * d + c] = q[t * H + d + c];
      k1[t * d + c] = k[t * H + d + c];
      v1[t * d + c] = v[t * H + d + c];
    }
  AttentionParams p1 = p;
  p1.dropout.col_offset = 1 * L * L;
  std::vector<float> probs1(B * L * L), ctx1(B * L * d);
  AttentionForward({B, L, 1, d, d}, p1, q1.data(), k1.data(), v1.data(), mask.data(), nullptr,
                   probs1.data(), ctx1.data());
  for (int t = 0; t < B * L; ++t)
    for (int c = 0; c < d; ++c) EXPECT_NEAR(ctx1[t * d + c], ctx[t * H + d + c], 1e-6);
}

// ---- dropout ----

TEST(Dropout, RateScalingAndDeterminism) {
  const int64_t rows = 1000, cols = 1000;
  DropoutSpec s;
  s.p = 0.1f;
  s.key = 1234;
  s.stream = DropoutStreamId(5, 0, 2, 3);
  s.cols_global = cols;
  std::vector<float> x(rows * cols, 2.0f), y(rows * cols);
  DropoutForward(s, x.data(), y.data(), rows, cols);
  int64_t kept = 0;
  for (float v : y) {
    if (v != 0.0f) {
      ++kept;
      EXPECT_EQ(v, 2.0f * (1.0f / 0.9f));
    }
  }
  const double rate = 1.0 - static_cast<double>(kept) / (rows * cols);
  EXPECT_NEAR(rate, 0.1, 0.002);  // 1e6 draws: sd 3e-4
  // Same spec: same mask; another stream (step) differs.
  std::vector<float> y2(rows * cols);
  DropoutForward(s, x.data(), y2.data(), rows, cols);
  EXPECT_EQ(y, y2);
  DropoutSpec s2 = s;
  s2.stream = DropoutStreamId(6, 0, 2, 3);
  DropoutForward(s2, x.data(), y2.data(), rows, cols);
  EXPECT_NE(y, y2);
  // Column shards (TP) reproduce the full tensor's mask.
  const int64_t half = cols / 2;
  DropoutSpec sh = s;
  sh.col_offset = half;
  std::vector<float> xs(rows * half, 2.0f), ys(rows * half);
  DropoutForward(sh, xs.data(), ys.data(), rows, half);
  for (int64_t r = 0; r < rows; r += 97)
    for (int64_t c = 0; c < half; ++c) EXPECT_EQ(ys[r * half + c], y[r * cols + half + c]);
  // p = 0 is the identity.
  DropoutSpec off;
  DropoutForward(off, x.data(), y2.data(), rows, cols);
  EXPECT_EQ(x, y2);
}

TEST(GradCheck, DropoutFixedMaskAndBiasResidual) {
  const int rows = 6, cols = 10;
  DropoutSpec s;
  s.p = 0.25f;
  s.key = 5;
  s.stream = 77;
  s.cols_global = cols;
  auto x = Randn(rows * cols, 41), b = Randn(cols, 42), res = Randn(rows * cols, 43);
  auto wy = Randn(rows * cols, 44);
  std::vector<float> y(rows * cols);
  auto loss = [&] {
    y = x;
    BiasDropoutResidualForward(s, y.data(), b.data(), res.data(), rows, cols);
    return WeightedSum(wy, y.data());
  };
  loss();
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const float keep = DropoutKeep(s, r, c) ? 1.0f / 0.75f : 0.0f;
      EXPECT_NEAR(y[r * cols + c], res[r * cols + c] + (x[r * cols + c] + b[c]) * keep, 1e-5);
    }
  std::vector<float> dx(rows * cols), db(cols, 0.0f);
  DropoutBackward(s, wy.data(), dx.data(), rows, cols);
  ColumnSumAccumulate(dx.data(), db.data(), rows, cols);
  CheckGrad("dropout dx", &x, dx, loss);
  CheckGrad("dropout dbias", &b, db, loss);
  CheckGrad("dropout dresidual", &res, wy, loss);
}

// ---- embedding ----

TEST(GradCheck, EmbeddingWithPadRow) {
  const int V = 6, E = 5, rows = 8;
  std::vector<int32_t> ids = {0, 3, 3, 5, 1, 0, 2, 3};
  auto table = Randn(V * E, 51), wy = Randn(rows * E, 52);
  std::vector<float> out(rows * E);
  auto loss = [&] {
    EmbeddingForward(ids.data(), table.data(), out.data(), rows, E, 0, V, false);
    return WeightedSum(wy, out.data());
  };
  loss();
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < E; ++c) EXPECT_EQ(out[r * E + c], table[ids[r] * E + c]);
  std::vector<float> dt(V * E, 0.0f);
  EmbeddingBackward(ids.data(), wy.data(), dt.data(), rows, E, 0, V, /*skip_id=*/0);
  // HF padding_idx: row 0 gets no gradient though it was looked up.
  for (int c = 0; c < E; ++c) EXPECT_EQ(dt[c], 0.0f);
  std::vector<float> dt_nopad = dt;
  for (int c = 0; c < E; ++c) dt_nopad[c] = wy[0 * E + c] + wy[5 * E + c];  // what FD sees
  CheckGrad("embedding", &table, dt_nopad, loss);
  loss();  // `out` at the unperturbed table again
  // Vocab-parallel shard [3, 6): other ids give zero rows and no gradient.
  std::vector<float> shard(table.begin() + 3 * E, table.end()), out2(rows * E);
  EmbeddingForward(ids.data(), shard.data(), out2.data(), rows, E, 3, 3, false);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < E; ++c) EXPECT_EQ(out2[r * E + c], ids[r] >= 3 ? out[r * E + c] : 0.0f);
  std::vector<float> dshard(3 * E, 0.0f);
  EmbeddingBackward(ids.data(), wy.data(), dshard.data(), rows, E, 3, 3, 0);
  for (int i = 0; i < 3 * E; ++i) EXPECT_NEAR(dshard[i], dt[3 * E + i], 1e-6);
}

// ---- cross-entropy ----

TEST(GradCheck, CrossEntropyPaddedVocab) {
  const int rows = 4, cols = 8, valid = 6;
  auto logits = Randn(rows * cols, 61, 2.0f);
  for (int r = 0; r < rows; ++r) logits[r * cols + 7] = 50.0f;  // padding must not matter
  std::vector<int32_t> labels = {0, 5, 2, 2};
  auto loss = [&] {
    return SoftmaxCrossEntropy(logits.data(), labels.data(), rows, cols, valid, nullptr, 0.0f)
        .loss_sum;
  };
  // Reference loss in double.
  double ref = 0;
  int64_t correct = 0;
  for (int r = 0; r < rows; ++r) {
    double mx = -1e30, se = 0;
    int arg = 0;
    for (int c = 0; c < valid; ++c)
      if (logits[r * cols + c] > mx) mx = logits[r * cols + c], arg = c;
    for (int c = 0; c < valid; ++c) se += std::exp(logits[r * cols + c] - mx);
    ref += std::log(se) + mx - logits[r * cols + labels[r]];
    correct += arg == labels[r];
  }
  const auto st = SoftmaxCrossEntropy(logits.data(), labels.data(), rows, cols, valid, nullptr, 0);
  EXPECT_NEAR(st.loss_sum, ref, 1e-5);
  EXPECT_EQ(st.count, rows);
  EXPECT_EQ(st.correct, correct);
  std::vector<float> dl(rows * cols);
  SoftmaxCrossEntropy(logits.data(), labels.data(), rows, cols, valid, dl.data(), 1.0f);
  for (int r = 0; r < rows; ++r) {
    EXPECT_EQ(dl[r * cols + 6], 0.0f);
    EXPECT_EQ(dl[r * cols + 7], 0.0f);
  }
  CheckGrad("cross-entropy", &logits, dl, loss);
  // In-place fused backward gives the same gradient, scaled.
  std::vector<float> inplace = logits;
  SoftmaxCrossEntropy(inplace.data(), labels.data(), rows, cols, valid, inplace.data(), 0.5f);
  for (int i = 0; i < rows * cols; ++i) EXPECT_NEAR(inplace[i], 0.5f * dl[i], 1e-6);
}

// ---- optimizer ----

// The optimizer the trainer uses (model/optimizer.h) over a ParamStore: hand-computed steps.
ParamStore AdamWTestStore(const std::vector<float>& decayed, const std::vector<float>& plain) {
  ParamStore st;
  st.Declare("w", {static_cast<int64_t>(decayed.size())}, Placement::kReplicated, true);
  st.Declare("ln.weight", {static_cast<int64_t>(plain.size())}, Placement::kReplicated, false);
  st.Allocate();
  std::copy(decayed.begin(), decayed.end(), st.param("w"));
  std::copy(plain.begin(), plain.end(), st.param("ln.weight"));
  return st;
}

TEST(AdamW, MatchesHandComputedSteps) {
  // Two tensors: [p0, p1] with decay, [p2] without.
  ParamStore st = AdamWTestStore({1.0f, -2.0f}, {0.5f});
  AdamWOptions o;
  o.beta1 = 0.9;
  o.beta2 = 0.999;
  o.eps = 1e-8;
  o.weight_decay = 0.01;
  o.grad_clip = 0;  // no clipping
  std::vector<double> P = {1.0, -2.0, 0.5}, M(3, 0.0), Vv(3, 0.0);
  std::vector<std::vector<float>> grads = {{0.5f, 0.1f, -0.3f}, {-0.2f, 0.4f, 0.05f}};
  for (int step = 1; step <= 2; ++step) {
    const std::vector<float>& g = grads[step - 1];
    std::copy(g.begin(), g.end(), st.grads().begin());
    AdamWStep(&st, o, 0.1, step, /*grad_norm=*/0);
    for (int i = 0; i < 3; ++i) {
      const double wd = i < 2 ? 0.01 : 0.0;
      P[i] *= 1.0 - 0.1 * wd;
      M[i] = 0.9 * M[i] + 0.1 * g[i];
      Vv[i] = 0.999 * Vv[i] + 0.001 * g[i] * g[i];
      const double mhat = M[i] / (1 - std::pow(0.9, step));
      const double vhat = Vv[i] / (1 - std::pow(0.999, step));
      P[i] -= 0.1 * mhat / (std::sqrt(vhat) + 1e-8);
      EXPECT_NEAR(st.params()[i], P[i], 1e-6) << "step " << step << " element " << i;
    }
  }
  // Step 1 by hand for p0: 1 * (1 - 0.001) - 0.1 * 0.5 / 0.5 = 0.899.
  ParamStore one = AdamWTestStore({1.0f}, {});
  one.grads()[0] = 0.5f;
  AdamWStep(&one, o, 0.1, 1, 0);
  EXPECT_NEAR(one.params()[0], 0.899, 1e-6);
}

TEST(GradNorm, SumSquares) {
  ParamStore st = AdamWTestStore(std::vector<float>(1001), {});
  for (int i = 0; i < 1001; ++i) st.grads()[i] = static_cast<float>(i % 7) - 3.0f;
  double ref = 0;
  for (int i = 0; i < 1001; ++i) ref += static_cast<double>(st.grads()[i]) * st.grads()[i];
  EXPECT_DOUBLE_EQ(CheckGradients(st).norm, std::sqrt(ref));
}

}  // namespace
}  // namespace roformer
