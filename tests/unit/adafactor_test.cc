// AdaFactor (model/adafactor.h) against steps computed by hand from the formulas in the header
// (values from a float64 transcription; printed to 9 digits), covering the factored second moment
// of a 2x3 matrix (min_dim_size_to_factor = 2), an unfactored vector, update clipping, momentum,
// the parameter scale and beta2_t = 1 - t^-0.8 at t = 1 and 2.
#include "model/adafactor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace roformer {
namespace {

TEST(AdaFactor, FirstStepOfAScalarByHand) {
  // t = 1: beta2 = 0, v = g^2, u = sign(g), RMS(u) = 1 (no clipping), m = 0.1 u,
  // update = lr * max(|p|, eps2) * 0.1 * sign(g).
  ParamStore s;
  s.Declare("w", {1}, Placement::kReplicated, true);
  s.Allocate(false);
  s.params()[0] = 2.0f;
  s.grads()[0] = -0.37f;
  AdaFactor opt(s, AdaFactorOptions());
  opt.Step(&s, 0.5);
  EXPECT_FLOAT_EQ(s.params()[0], 2.0f + 0.5f * 2.0f * 0.1f);
  // A tiny parameter uses eps2 = 1e-3 as its scale.
  s.params()[0] = 1e-6f;
  s.grads()[0] = 1.0f;
  AdaFactor opt2(s, AdaFactorOptions());
  opt2.Step(&s, 0.5);
  EXPECT_NEAR(s.params()[0], 1e-6 - 0.5 * 1e-3 * 0.1, 1e-9);
}

TEST(AdaFactor, TwoStepsFactoredAndUnfactored) {
  ParamStore s;
  s.Declare("m", {2, 3}, Placement::kReplicated, true);
  s.Declare("b", {2}, Placement::kReplicated, false);
  s.Allocate(false);
  const std::vector<float> P = {0.5f, -1.0f, 2.0f, 0.1f, 0.3f, -0.4f, 0.01f, -0.002f};
  const std::vector<float> G1 = {0.2f, -0.1f, 0.4f, 0.05f, 0.3f, -0.2f, 0.5f, -0.25f};
  const std::vector<float> G2 = {-0.1f, 0.2f, 0.1f, 0.3f, -0.05f, 0.25f, 0.1f, 0.3f};
  s.params() = P;
  AdaFactorOptions o;
  o.min_dim_size_to_factor = 2;
  AdaFactor opt(s, o);
  EXPECT_TRUE(opt.IsFactored("m"));
  EXPECT_FALSE(opt.IsFactored("b"));
  EXPECT_EQ(opt.StateFloats(), 2 + 3 + 6 /*m*/ + 2 + 2);
  s.grads() = G1;
  opt.Step(&s, 0.1);
  const std::vector<double> after1 = {
      0.4881271126996082, -0.9961299122277293,  1.9890537387697609,  0.09626321541850363,
      0.2853834869811508, -0.39310970968471354, 0.00992788897449072, -0.0019278889744907203};
  for (size_t i = 0; i < after1.size(); ++i)
    EXPECT_NEAR(s.params()[i], after1[i], 2e-6 * std::max(1.0, std::abs(after1[i]))) << i;
  s.grads() = G2;
  opt.Step(&s, 0.1);
  EXPECT_EQ(opt.step(), 2);
  const std::vector<double> after2 = {0.482622512, -1.00351414,  1.97533148,    0.0787900322,
                                      0.274823423, -0.396043564, 0.00984217459, -0.00194019975};
  for (size_t i = 0; i < after2.size(); ++i)
    EXPECT_NEAR(s.params()[i], after2[i], 2e-6 * std::max(1.0, std::abs(after2[i]))) << i;
}

TEST(AdaFactor, BaselineSettingFactorsNothingAndIncludeFilterSkipsTensors) {
  ParamStore s;
  s.Declare("enc", {256, 256}, Placement::kReplicated, true);
  s.Declare("cls.x", {4}, Placement::kReplicated, true);
  s.Allocate(false);
  for (float& g : s.grads()) g = 0.1f;
  for (float& p : s.params()) p = 1.0f;
  AdaFactorOptions o;
  AdaFactor def(s, o);
  EXPECT_TRUE(def.IsFactored("enc"));  // bert4keras class default 128
  o.min_dim_size_to_factor = 1000000;  // the CLUE baseline's setting
  AdaFactor base(s, o, [](const ParamInfo& i) { return i.name.rfind("cls.", 0) != 0; });
  EXPECT_FALSE(base.IsFactored("enc"));
  base.Step(&s, 0.01);
  EXPECT_LT(s.param("enc")[0], 1.0f);
  EXPECT_EQ(s.param("cls.x")[0], 1.0f);  // excluded: never updated
}

}  // namespace
}  // namespace roformer
