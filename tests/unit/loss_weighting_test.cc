// Multi-task loss weighting (model/loss_weighting.h) against the formulas of seeds.md §8: the sg
// identity ∇(L/sg(L)) = ∇log L, the generalised-mean limits, gradient normalisation, the scale
// invariances the post claims, and the uncertainty s-gradient, all by finite differences in double.
#include "model/loss_weighting.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "runtime/error.h"

namespace roformer {
namespace {

using Vec = std::vector<double>;

LossWeightingOptions Opts(WeightingScheme s) {
  LossWeightingOptions o;
  o.scheme = s;
  return o;
}

double Norm(const Vec& v) {
  return std::sqrt(std::inner_product(v.begin(), v.end(), v.begin(), 0.0));
}

// Σ_i w_i g_i.
Vec Combine(const Vec& w, const std::vector<Vec>& g) {
  Vec out(g[0].size(), 0.0);
  for (size_t i = 0; i < g.size(); ++i)
    for (size_t j = 0; j < out.size(); ++j) out[j] += w[i] * g[i][j];
  return out;
}

void ExpectVecNear(const Vec& a, const Vec& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t j = 0; j < a.size(); ++j) EXPECT_NEAR(a[j], b[j], tol) << "component " << j;
}

// Two toy tasks on θ ∈ R^3 with analytic gradients.
double L0(const Vec& t) { return 0.5 + (t[0] - 1) * (t[0] - 1) + 2 * t[1] * t[1] + t[0] * t[2]; }
Vec G0(const Vec& t) { return {2 * (t[0] - 1) + t[2], 4 * t[1], t[0]}; }
double L1(const Vec& t) { return 3.0 + std::exp(0.3 * t[0]) + (t[2] - 2) * (t[2] - 2); }
Vec G1(const Vec& t) { return {0.3 * std::exp(0.3 * t[0]), 0.0, 2 * (t[2] - 2)}; }

TEST(LossWeighting, ParseNamesAndErrors) {
  EXPECT_EQ(ParseWeightingScheme("fixed"), WeightingScheme::kFixed);
  EXPECT_EQ(ParseWeightingScheme("init"), WeightingScheme::kInit);
  EXPECT_EQ(ParseWeightingScheme("prior"), WeightingScheme::kPrior);
  EXPECT_EQ(ParseWeightingScheme("realtime"), WeightingScheme::kRealtime);
  EXPECT_EQ(ParseWeightingScheme("genmean"), WeightingScheme::kGenMean);
  EXPECT_EQ(ParseWeightingScheme("gradnorm"), WeightingScheme::kGradNorm);
  EXPECT_EQ(ParseWeightingScheme("uncertainty"), WeightingScheme::kUncertainty);
  try {
    ParseWeightingScheme("grad_norm");
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("'grad_norm'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("gradnorm"), std::string::npos) << msg;
    EXPECT_NE(msg.find("uncertainty"), std::string::npos) << msg;
  }
}

TEST(LossWeighting, BadInputsThrow) {
  EXPECT_THROW(LossWeighting(2, Opts(WeightingScheme::kPrior)), Error);  // no priors
  LossWeightingOptions f = Opts(WeightingScheme::kFixed);
  f.fixed_weights = {1.0, -1.0};
  EXPECT_THROW(LossWeighting(2, f), Error);
  LossWeighting rt(2, Opts(WeightingScheme::kRealtime));
  EXPECT_THROW(rt.Step({1.0}), Error);
  EXPECT_THROW(rt.Step({1.0, NAN}), Error);
  EXPECT_THROW(rt.Step({1.0, -2.0}), Error);
  LossWeighting gn(2, Opts(WeightingScheme::kGradNorm));
  EXPECT_THROW(gn.Step({1.0, 2.0}), Error);  // no gradient norms
}

TEST(LossWeighting, RealtimeGradientIsGradLog) {
  // ∇(L/sg(L)) = w ∇L with w = 1/L must equal ∇ log L (central differences).
  const Vec theta = {0.3, -0.7, 1.1};
  LossWeighting lw(2, Opts(WeightingScheme::kRealtime));
  Vec w = lw.Step({L0(theta), L1(theta)});
  const std::vector<Vec> g = {G0(theta), G1(theta)};
  const double h = 1e-6;
  for (int task = 0; task < 2; ++task) {
    auto f = [&](const Vec& t) { return std::log(task == 0 ? L0(t) : L1(t)); };
    for (int j = 0; j < 3; ++j) {
      Vec p = theta, m = theta;
      p[j] += h;
      m[j] -= h;
      double fd = (f(p) - f(m)) / (2 * h);
      EXPECT_NEAR(w[task] * g[task][j], fd, 1e-8) << "task " << task << " dim " << j;
    }
  }
  // Logged objective: Σ log L_i.
  EXPECT_NEAR(lw.CombinedLoss({2.0, 3.0}), std::log(6.0), 1e-12);
}

TEST(LossWeighting, GenMeanLimitsAndArithmetic) {
  const Vec L = {0.5, 2.0, 3.5};
  const double geo = std::cbrt(0.5 * 2.0 * 3.5);

  // γ = 1: arithmetic mean, equal weights 1/n.
  LossWeightingOptions o = Opts(WeightingScheme::kGenMean);
  o.gamma = 1.0;
  LossWeighting a(3, o);
  EXPECT_NEAR(a.CombinedLoss(L), 2.0, 1e-12);
  for (double w : a.Weights(L)) EXPECT_NEAR(w, 1.0 / 3, 1e-12);

  // γ = 0 exactly and γ = 1e-6: geometric mean, weights ∂G/∂L_i = G / (n L_i).
  for (double g : {0.0, 1e-6}) {
    o.gamma = g;
    LossWeighting lw(3, o);
    EXPECT_NEAR(lw.CombinedLoss(L), geo, 1e-5) << "gamma " << g;
    Vec w = lw.Weights(L);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(w[i], geo / (3 * L[i]), 1e-5) << "gamma " << g;
  }

  // γ = 200: the max, all weight on the worst task.
  o.gamma = 200;
  LossWeighting mx(3, o);
  EXPECT_NEAR(mx.CombinedLoss(L), 3.5, 3.5 * 0.01);  // (1/3)^{1/200} = 0.9945
  Vec w = mx.Weights(L);
  EXPECT_NEAR(w[2], 1.0, 0.01);
  EXPECT_LT(w[0], 1e-100);
  EXPECT_LT(w[1], 1e-40);

  // Weights are ∂L(γ)/∂L_i: check by finite differences for a generic γ.
  for (double g : {-1.5, 0.0, 0.5, 3.0}) {
    o.gamma = g;
    LossWeighting lw(3, o);
    Vec wg = lw.Weights(L);
    for (int i = 0; i < 3; ++i) {
      Vec p = L, m = L;
      p[i] += 1e-6;
      m[i] -= 1e-6;
      EXPECT_NEAR(wg[i], (lw.CombinedLoss(p) - lw.CombinedLoss(m)) / 2e-6, 1e-7) << g << " " << i;
    }
  }
  // Monotone in γ (power-mean inequality).
  double prev = -1;
  for (double g : {-2.0, -0.5, 0.0, 0.5, 1.0, 4.0}) {
    o.gamma = g;
    double v = LossWeighting(3, o).CombinedLoss(L);
    EXPECT_GT(v, prev);
    prev = v;
  }
}

TEST(LossWeighting, GradNormGivesUnitNormTaskGradients) {
  const std::vector<Vec> g = {{3.0, 4.0, 0.0, 12.0}, {-0.01, 0.02, 0.005, 0.0}};
  LossWeighting lw(2, Opts(WeightingScheme::kGradNorm));
  Vec w = lw.Step({1.3, 0.2}, {Norm(g[0]), Norm(g[1])});
  for (int i = 0; i < 2; ++i) {
    Vec scaled = g[i];
    for (double& x : scaled) x *= w[i];
    EXPECT_NEAR(Norm(scaled), 1.0, 1e-12) << "task " << i;
  }
  // A task with zero shared gradient contributes nothing instead of dividing by zero.
  Vec wz = lw.Step({1.0, 1.0}, {0.0, 2.0});
  EXPECT_EQ(wz[0], 0.0);
  EXPECT_EQ(wz[1], 0.5);
}

// Multiplying task 1's loss (and gradient) by c leaves Σ w_i ∇L_i unchanged (or, for the geometric
// mean, its direction).
TEST(LossWeighting, ScaleInvariance) {
  const Vec L = {0.8, 2.5};
  const std::vector<Vec> g = {{0.4, -1.0, 0.3}, {2.0, 0.5, -0.7}};
  for (double c : {1e-3, 7.0, 1e4}) {
    const Vec Lc = {L[0], c * L[1]};
    std::vector<Vec> gc = g;
    for (double& x : gc[1]) x *= c;
    const Vec norms = {Norm(g[0]), Norm(g[1])}, norms_c = {Norm(gc[0]), Norm(gc[1])};

    for (WeightingScheme s : {WeightingScheme::kRealtime, WeightingScheme::kGradNorm}) {
      LossWeighting a(2, Opts(s)), b(2, Opts(s));
      Vec ua = Combine(a.Step(L, norms), g), ub = Combine(b.Step(Lc, norms_c), gc);
      ExpectVecNear(ua, ub, 1e-12);
    }

    // init: the estimate from the first 3 batches scales with c too.
    LossWeightingOptions io = Opts(WeightingScheme::kInit);
    io.init_batches = 3;
    LossWeighting a(2, io), b(2, io);
    for (double f : {1.0, 0.9, 0.8}) {
      a.Step({f * L[0], f * L[1]});
      b.Step({f * Lc[0], f * Lc[1]});
    }
    ExpectVecNear(Combine(a.Step(L), g), Combine(b.Step(Lc), gc), 1e-12);

    // genmean γ=0: same direction.
    LossWeightingOptions go = Opts(WeightingScheme::kGenMean);
    go.gamma = 0.0;
    LossWeighting ga(2, go), gb(2, go);
    Vec da = Combine(ga.Weights(L), g), db = Combine(gb.Weights(Lc), gc);
    double na = Norm(da), nb = Norm(db);
    for (double& x : da) x /= na;
    for (double& x : db) x /= nb;
    ExpectVecNear(da, db, 1e-12);
  }
}

TEST(LossWeighting, InitEstimateAndTheory) {
  LossWeightingOptions o = Opts(WeightingScheme::kInit);
  o.init_batches = 2;
  o.num_classes = {0, 10};  // task 0 estimated, task 1 from log K
  LossWeighting lw(2, o);
  Vec w = lw.Step({4.0, 9.0});
  EXPECT_DOUBLE_EQ(w[0], 1.0 / 4.0);
  EXPECT_DOUBLE_EQ(w[1], 1.0 / std::log(10.0));
  w = lw.Step({2.0, 9.0});
  EXPECT_DOUBLE_EQ(w[0], 1.0 / 3.0);  // mean of 4 and 2
  w = lw.Step({0.1, 0.1});            // frozen after init_batches
  EXPECT_DOUBLE_EQ(w[0], 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(w[1], 1.0 / std::log(10.0));
  EXPECT_NEAR(lw.CombinedLoss({3.0, std::log(10.0)}), 2.0, 1e-12);
}

TEST(LossWeighting, PriorAndFixed) {
  LossWeightingOptions o = Opts(WeightingScheme::kPrior);
  o.label_priors = {{0.5, 0.5}, {30, 10}};  // counts are normalised
  LossWeighting lw(2, o);
  Vec w = lw.Step({1.0, 1.0});
  EXPECT_NEAR(w[0], 1.0 / std::log(2.0), 1e-12);
  EXPECT_NEAR(w[1], 1.0 / -(0.75 * std::log(0.75) + 0.25 * std::log(0.25)), 1e-12);
  o.label_priors = {{1.0, 0.0}, {0.5, 0.5}};
  EXPECT_THROW(LossWeighting(2, o), Error);  // zero entropy

  LossWeighting eq(4, Opts(WeightingScheme::kFixed));
  for (double x : eq.Step({1, 2, 3, 4})) EXPECT_DOUBLE_EQ(x, 0.25);
  LossWeightingOptions f = Opts(WeightingScheme::kFixed);
  f.fixed_weights = {2.0, 0.5};
  LossWeighting fx(2, f);
  EXPECT_EQ(fx.Step({1, 1}), (Vec{2.0, 0.5}));
  EXPECT_DOUBLE_EQ(fx.CombinedLoss({3, 4}), 8.0);
}

TEST(LossWeighting, UncertaintyGradientMatchesFiniteDifferences) {
  LossWeightingOptions o = Opts(WeightingScheme::kUncertainty);
  o.init_log_var = {0.3, -1.2};
  const Vec L = {2.0, 0.4};
  LossWeighting lw(2, o);
  Vec w = lw.Weights(L);
  EXPECT_DOUBLE_EQ(w[0], std::exp(-0.3));
  EXPECT_DOUBLE_EQ(w[1], std::exp(1.2));
  Vec gs = lw.LogVarGrad(L);
  const double h = 1e-6;
  for (int i = 0; i < 2; ++i) {
    LossWeightingOptions p = o, m = o;
    p.init_log_var[i] += h;
    m.init_log_var[i] -= h;
    double fd =
        (LossWeighting(2, p).CombinedLoss(L) - LossWeighting(2, m).CombinedLoss(L)) / (2 * h);
    EXPECT_NEAR(gs[i], fd, 1e-8) << "task " << i;
    // ∂L/∂L_i = exp(-s_i) as well.
    Vec lp = L, lm = L;
    lp[i] += h;
    lm[i] -= h;
    EXPECT_NEAR(w[i], (lw.CombinedLoss(lp) - lw.CombinedLoss(lm)) / (2 * h), 1e-7);
  }
  // Training s on fixed losses converges to exp(s_i) = L_i (σ_i² = L_i), with SGD and with Adam.
  for (bool adam : {false, true}) {
    o.uncertainty_adam = adam;
    o.uncertainty_lr = adam ? 0.01 : 0.1;
    LossWeighting t(2, o);
    for (int k = 0; k < 5000; ++k) t.Step(L);
    for (int i = 0; i < 2; ++i) EXPECT_NEAR(t.log_var()[i], std::log(L[i]), 1e-3) << adam;
  }
}

TEST(LossWeighting, WhichSchemesNeedTheStepsLossesOrNorms) {
  auto make = [](WeightingScheme sc, std::vector<int> classes = {}) {
    LossWeightingOptions o;
    o.scheme = sc;
    o.num_classes = std::move(classes);
    o.init_batches = 2;
    o.label_priors = {{1, 1}, {1, 3}};
    return LossWeighting(2, o);
  };
  for (WeightingScheme sc : {WeightingScheme::kRealtime, WeightingScheme::kGenMean}) {
    LossWeighting lw = make(sc);
    EXPECT_TRUE(lw.NeedsCurrentLosses());
    EXPECT_FALSE(lw.NeedsGradNorms());
    EXPECT_THROW(lw.LossFreeWeights(), Error);
  }
  LossWeighting g = make(WeightingScheme::kGradNorm);
  EXPECT_TRUE(g.NeedsGradNorms());
  EXPECT_THROW(g.LossFreeWeights(), Error);
  // init: needs the losses while estimating (2 batches), not afterwards nor with log K theory.
  LossWeighting est = make(WeightingScheme::kInit);
  EXPECT_TRUE(est.NeedsCurrentLosses());
  est.Step({2.0, 4.0});
  EXPECT_TRUE(est.NeedsCurrentLosses());
  est.Step({4.0, 8.0});
  EXPECT_FALSE(est.NeedsCurrentLosses());
  EXPECT_EQ(est.LossFreeWeights(), (Vec{1.0 / 3.0, 1.0 / 6.0}));
  LossWeighting theory = make(WeightingScheme::kInit, {2, 10});
  EXPECT_FALSE(theory.NeedsCurrentLosses());
  EXPECT_DOUBLE_EQ(theory.LossFreeWeights()[1], 1.0 / std::log(10.0));
  // The loss-free weights equal what Step returns for any losses, and do not advance the state.
  LossWeighting u = make(WeightingScheme::kUncertainty);
  const Vec before = u.LossFreeWeights();
  EXPECT_EQ(u.LossFreeWeights(), before);
  EXPECT_EQ(u.log_var(), (Vec{0.0, 0.0}));
  EXPECT_EQ(u.Step({3.0, 0.5}), before);
  EXPECT_NE(u.log_var(), (Vec{0.0, 0.0}));
  LossWeighting p = make(WeightingScheme::kPrior);
  EXPECT_DOUBLE_EQ(p.LossFreeWeights()[0], 1.0 / std::log(2.0));
}

TEST(LossWeighting, StateRoundTripsExactly) {
  for (WeightingScheme sc :
       {WeightingScheme::kUncertainty, WeightingScheme::kInit, WeightingScheme::kGradNorm}) {
    LossWeightingOptions o;
    o.scheme = sc;
    o.init_batches = 3;
    LossWeighting a(2, o), b(2, o);
    const Vec norms = {0.7, 1.3};
    a.Step({2.5, 0.31}, norms);
    a.Step({2.25, 0.29}, norms);
    b.RestoreState(a.SerializeState());
    EXPECT_EQ(b.SerializeState(), a.SerializeState());
    for (int k = 0; k < 3; ++k) {
      const Vec l = {2.0 - 0.1 * k, 0.3 + 0.01 * k};
      EXPECT_EQ(a.Step(l, norms), b.Step(l, norms)) << WeightingSchemeName(sc);
      EXPECT_EQ(a.CombinedLoss(l), b.CombinedLoss(l));
    }
    LossWeightingOptions other = o;
    other.scheme = WeightingScheme::kRealtime;
    EXPECT_THROW(LossWeighting(2, other).RestoreState(a.SerializeState()), Error);
    EXPECT_THROW(LossWeighting(3, o).RestoreState(a.SerializeState()), Error);
    EXPECT_THROW(b.RestoreState("garbage"), Error);
  }
}

}  // namespace
}  // namespace roformer
