// CAN post-processing. Expected values are from tests/reference/can_reference.py (numpy
// transcription of the reference code in seeds.md §6.3).
#include "data/clue/can.h"

#include <gtest/gtest.h>

#include <cmath>

#include "runtime/error.h"

namespace roformer {
namespace {

const std::vector<double> kProbs = {
    0.90, 0.05, 0.05,  //
    0.10, 0.80, 0.10,  //
    0.05, 0.15, 0.80,  //
    0.40, 0.35, 0.25,  //
    0.30, 0.30, 0.40,  //
    0.34, 0.33, 0.33,  //
};
const std::vector<int> kTrainLabels = {0, 0, 0, 0, 0, 1, 1, 1, 2, 2};  // prior 0.5 / 0.3 / 0.2
const std::vector<int> kLabels = {0, 1, 2, 1, 0, 0};

TEST(Can, PriorFromTrainingLabels) {
  const std::vector<double> prior = PriorFromLabels(kTrainLabels, 3);
  EXPECT_DOUBLE_EQ(prior[0], 0.5);
  EXPECT_DOUBLE_EQ(prior[1], 0.3);
  EXPECT_DOUBLE_EQ(prior[2], 0.2);
  EXPECT_DOUBLE_EQ(PriorFromLabels({0, -1, 1}, 2)[0], 0.5);  // unlabelled ignored
  EXPECT_THROW(PriorFromLabels({3}, 3), Error);
  EXPECT_THROW(PriorFromLabels({-1}, 3), Error);
}

TEST(Can, HandComputedDefaultOptions) {
  const std::vector<double> prior = PriorFromLabels(kTrainLabels, 3);
  const CanResult r = ApplyCan(kProbs, 6, 3, prior);  // k=3, tau=0.9, 1 iteration, alpha=1
  const double unc[6] = {0.3589962496465303, 0.5816718657178868, 0.5578578164321782,
                         0.9835386311891134, 0.9911594714322187, 0.9999092749840701};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(r.uncertainty[i], unc[i], 1e-13) << i;
  EXPECT_EQ(r.num_confident, 3);
  EXPECT_EQ(r.num_uncertain, 3);
  const double want[3][3] = {{0.5359136583550428, 0.3021957573502046, 0.1618905842947525},
                             {0.46373365041617126, 0.28894173602853745, 0.24732461355529137},
                             {0.4925565428728494, 0.29978198082588586, 0.20766147630126472}};
  for (int i = 0; i < 3; ++i) {
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(r.probs[(3 + i) * 3 + c], want[i][c], 1e-13);
  }
  // Step by step for row 4 = [0.3, 0.3, 0.4]: column means over the 3 confident rows + it are
  // [1.35, 1.30, 1.35] / 4; scaled row = [0.3/0.3375*0.5, 0.3/0.325*0.3, 0.4/0.3375*0.2]
  // = [0.444444, 0.276923, 0.237037], normalised by 0.958405 -> [0.463734, 0.288942, 0.247325].
  EXPECT_NEAR(r.probs[12],
              (0.3 / 0.3375 * 0.5) / (0.3 / 0.3375 * 0.5 + 0.3 / 0.325 * 0.3 + 0.4 / 0.3375 * 0.2),
              1e-15);
  const CanReport rep = CanAccuracy(kProbs, r, kLabels);
  EXPECT_EQ(rep.count, 6);
  EXPECT_EQ(rep.confident, 3);
  EXPECT_EQ(rep.uncertain, 3);
  EXPECT_DOUBLE_EQ(rep.acc_before, 4.0 / 6);
  EXPECT_DOUBLE_EQ(rep.acc_after, 5.0 / 6);
  EXPECT_DOUBLE_EQ(rep.acc_confident, 1.0);
  EXPECT_DOUBLE_EQ(rep.acc_uncertain_before, 1.0 / 3);
  EXPECT_DOUBLE_EQ(rep.acc_uncertain_after, 2.0 / 3);
  EXPECT_EQ(rep.changed, 1);  // row 4: class 2 -> class 0
}

TEST(Can, GeneralPathItersAndAlpha) {
  const std::vector<double> p = {
      0.70, 0.20, 0.05, 0.05,  //
      0.05, 0.05, 0.10, 0.80,  //
      0.45, 0.40, 0.10, 0.05,  //
      0.10, 0.15, 0.40, 0.35,  //
      0.25, 0.25, 0.25, 0.25,  //
  };
  CanOptions opt;
  opt.k = 2;
  opt.tau = 0.9;
  opt.iterations = 3;
  opt.alpha = 0.8;
  const CanResult r = ApplyCan(p, 5, 4, {0.1, 0.2, 0.3, 0.4}, opt);
  const double unc[5] = {0.7642045065086204, 0.5032583347756456, 0.9975025463691153,
                         0.9967916319816367, 1.0};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(r.uncertainty[i], unc[i], 1e-13) << i;
  const double want[3][4] = {
      {0.11007033458355812, 0.28949786561026997, 0.35860355888923495, 0.24182824091693692},
      {0.0483877498159396, 0.16961549578312585, 0.4227640797837512, 0.3592326746171834},
      {0.07219964751501554, 0.20836151729867966, 0.3829881462731512, 0.33645068891315355}};
  for (int i = 0; i < 3; ++i) {
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(r.probs[(2 + i) * 4 + c], want[i][c], 1e-13);
  }
}

TEST(Can, ConfidentRowsUntouched) {
  const std::vector<double> prior = {0.2, 0.7, 0.1};
  for (int iters : {1, 2, 5}) {
    CanOptions opt;
    opt.iterations = iters;
    const CanResult r = ApplyCan(kProbs, 6, 3, prior, opt);
    for (int i = 0; i < 6; ++i) {
      if (!r.confident[i]) continue;
      for (int c = 0; c < 3; ++c) EXPECT_EQ(r.probs[i * 3 + c], kProbs[i * 3 + c]);
    }
    // Uncertain rows stay distributions.
    for (int i = 3; i < 6; ++i) {
      EXPECT_NEAR(r.probs[i * 3] + r.probs[i * 3 + 1] + r.probs[i * 3 + 2], 1.0, 1e-12);
    }
  }
}

TEST(Can, KEqualsOneIsIdentity) {
  CanOptions opt;
  opt.k = 1;
  const CanResult r = ApplyCan(kProbs, 6, 3, {0.5, 0.3, 0.2}, opt);
  EXPECT_EQ(r.num_confident, 6);
  EXPECT_EQ(r.num_uncertain, 0);
  EXPECT_EQ(r.probs, kProbs);
  for (double u : r.uncertainty) EXPECT_EQ(u, 0.0);
  // k larger than the class count is clamped to C.
  opt.k = 10;
  EXPECT_NEAR(ApplyCan(kProbs, 6, 3, {0.5, 0.3, 0.2}, opt).uncertainty[0], 0.3589962496465303,
              1e-13);
}

TEST(Can, UniformPriorAlphaOneSanity) {
  // Uniform prior, alpha = 1, class-balanced confident set: the column step divides each class
  // by its mean only, so the uncertain row is p / colmean renormalised (pulled towards uniform).
  const std::vector<double> p = {
      0.90, 0.05, 0.05,  //
      0.05, 0.90, 0.05,  //
      0.05, 0.05, 0.90,  //
      0.40, 0.32, 0.28,  //
  };
  const std::vector<double> uniform = {1.0 / 3, 1.0 / 3, 1.0 / 3};
  const CanResult r = ApplyCan(p, 4, 3, uniform);
  ASSERT_EQ(r.num_uncertain, 1);
  // Column sums: [1.40, 1.32, 1.28] (the factor 1/4 and the uniform prior cancel in the row step).
  const double s0 = 0.40 / 1.40, s1 = 0.32 / 1.32, s2 = 0.28 / 1.28, z = s0 + s1 + s2;
  EXPECT_NEAR(r.probs[9], s0 / z, 1e-15);
  EXPECT_NEAR(r.probs[10], s1 / z, 1e-15);
  EXPECT_NEAR(r.probs[11], s2 / z, 1e-15);
  // ...which pulls the row towards uniform, keeping its argmax here.
  EXPECT_LT(r.probs[9], 0.40);
  EXPECT_GT(r.probs[11], 0.28);
  // No confident rows at all: the uncertain row becomes the prior (its own column mean is itself).
  const std::vector<double> q = {0.40, 0.35, 0.25};
  const CanResult r2 = ApplyCan(q, 1, 3, {0.5, 0.3, 0.2});
  EXPECT_NEAR(r2.probs[0], 0.5, 1e-15);
  EXPECT_NEAR(r2.probs[1], 0.3, 1e-15);
  EXPECT_NEAR(r2.probs[2], 0.2, 1e-15);
}

TEST(Can, ShapeErrors) {
  EXPECT_THROW(ApplyCan({0.5, 0.5}, 2, 2, {0.5, 0.5}), Error);
  EXPECT_THROW(ApplyCan({0.5, 0.5}, 1, 2, {1.0}), Error);
}

}  // namespace
}  // namespace roformer
