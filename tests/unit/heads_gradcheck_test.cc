// Finite-difference gradient checks of the fine-tuning heads (model/heads/): classifier (with
// dropout on, the mask being a pure function of its spec), multiple choice with ragged choice
// counts, and the span head with masked positions; plus BestSpan decoding and head init.
// loss = grad_scale * sum of cross-entropies, computed by each head's Backward; the analytic
// gradients are the parameter grads and d_seq it produces.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "model/heads/classifier_head.h"
#include "model/heads/head_params.h"
#include "model/heads/multiple_choice_head.h"
#include "model/heads/span_head.h"

namespace roformer {
namespace {

std::vector<float> Randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// Central differences against `analytic` at every element of x (tolerance as in
// kernels_gradcheck_test: relative plus a floor tied to the largest numerical gradient).
void CheckGrad(const char* what, float* x, size_t n, const std::vector<float>& analytic,
               const std::function<double()>& loss, float eps = 1e-2f, double rtol = 1e-2) {
  ASSERT_EQ(analytic.size(), n) << what;
  std::vector<double> num(n);
  double scale = 0;
  for (size_t i = 0; i < n; ++i) {
    const float saved = x[i];
    x[i] = saved + eps;
    const double hp = static_cast<double>(x[i]) - saved;
    const double lp = loss();
    x[i] = saved - eps;
    const double hm = saved - static_cast<double>(x[i]);
    const double lm = loss();
    x[i] = saved;
    num[i] = (lp - lm) / (hp + hm);
    scale = std::max(scale, std::abs(num[i]));
  }
  ASSERT_GT(scale, 0) << what << ": all-zero numerical gradient (test is vacuous)";
  for (size_t i = 0; i < n; ++i) {
    const double tol =
        rtol * std::max<double>(std::abs(analytic[i]), std::abs(num[i])) + 2e-3 * scale + 1e-6;
    EXPECT_NEAR(analytic[i], num[i], tol) << what << " element " << i;
  }
}

void FillParams(ParamStore* s, uint32_t seed) {
  auto r = Randn(s->params().size(), seed, 0.5f);
  std::copy(r.begin(), r.end(), s->params().begin());
}

TEST(HeadsGradcheck, Classifier) {
  const int B = 3, L = 4, H = 6, C = 5;
  ClassifierHead head(H, C);
  ParamStore s;
  head.Declare(&s);
  s.Allocate(false);
  FillParams(&s, 1);
  std::vector<float> seq = Randn(static_cast<size_t>(B) * L * H, 2);
  const std::vector<int32_t> labels = {2, -1, 4};  // -1 ignored
  const float scale = 0.5f;
  const DropoutSpec drop = HeadDropoutSpec(0.3f, 77, 5, H);
  ASSERT_GT(drop.p, 0);
  auto loss = [&]() {
    head.Forward(s, seq.data(), B, L, drop);
    return scale * head.Backward(&s, labels.data(), scale, nullptr).loss_sum;
  };
  s.ZeroGrads();
  std::vector<float> dseq(seq.size(), 123.0f);
  head.Forward(s, seq.data(), B, L, drop);
  const CrossEntropyStats st = head.Backward(&s, labels.data(), scale, dseq.data());
  EXPECT_EQ(st.count, 2);
  // Non-[CLS] rows get exactly zero gradient (overwritten, not accumulated).
  for (int b = 0; b < B; ++b)
    for (int t = 1; t < L; ++t)
      for (int h = 0; h < H; ++h) EXPECT_EQ(dseq[(static_cast<size_t>(b) * L + t) * H + h], 0.0f);
  const std::vector<float> grads = s.grads();
  CheckGrad("classifier d_seq", seq.data(), seq.size(), dseq, loss);
  CheckGrad("classifier params", s.params().data(), s.params().size(), grads, loss);
}

TEST(HeadsGradcheck, MultipleChoiceRagged) {
  const int L = 3, H = 5;
  const std::vector<int32_t> offsets = {0, 4, 6, 9};  // 3 questions with 4, 2, 3 choices
  MultipleChoiceHead head(H);
  ParamStore s;
  head.Declare(&s);
  s.Allocate(false);
  FillParams(&s, 3);
  std::vector<float> seq = Randn(static_cast<size_t>(offsets.back()) * L * H, 4);
  const std::vector<int32_t> labels = {3, 1, 0};
  const float scale = 1.0f / 3;
  const DropoutSpec drop = HeadDropoutSpec(0.2f, 9, 1, H);
  auto loss = [&]() {
    head.Forward(s, seq.data(), L, offsets, drop);
    return scale * head.Backward(&s, labels.data(), scale, nullptr).loss_sum;
  };
  s.ZeroGrads();
  std::vector<float> dseq(seq.size());
  head.Forward(s, seq.data(), L, offsets, drop);
  EXPECT_EQ(head.max_choices(), 4);
  // Missing choices of the short questions are masked.
  EXPECT_EQ(head.scores()[1 * 4 + 2], kMaskedLogit);
  EXPECT_EQ(head.scores()[2 * 4 + 3], kMaskedLogit);
  head.Backward(&s, labels.data(), scale, dseq.data());
  const std::vector<float> grads = s.grads();
  CheckGrad("choice d_seq", seq.data(), seq.size(), dseq, loss);
  CheckGrad("choice params", s.params().data(), s.params().size(), grads, loss);
}

TEST(HeadsGradcheck, SpanWithMask) {
  const int B = 2, L = 6, H = 4;
  SpanHead head(H);
  ParamStore s;
  head.Declare(&s);
  s.Allocate(false);
  FillParams(&s, 5);
  std::vector<float> seq = Randn(static_cast<size_t>(B) * L * H, 6);
  // Sequence layout [CLS] q [SEP] c c c ; allowed: CLS + context.
  std::vector<uint8_t> allowed(B * L, 0);
  for (int b = 0; b < B; ++b) {
    allowed[b * L] = 1;
    for (int t = 3; t < L; ++t) allowed[b * L + t] = 1;
  }
  const std::vector<int32_t> st = {3, 0}, en = {5, 0};  // second window: no answer ([CLS])
  const float scale = 0.25f;
  auto loss = [&]() {
    head.Forward(s, seq.data(), B, L, allowed.data());
    return scale * head.Backward(&s, st.data(), en.data(), scale, nullptr).loss_sum;
  };
  s.ZeroGrads();
  std::vector<float> dseq(seq.size());
  head.Forward(s, seq.data(), B, L, allowed.data());
  EXPECT_EQ(head.start_logits()[1], kMaskedLogit);
  head.Backward(&s, st.data(), en.data(), scale, dseq.data());
  // Masked positions get no gradient.
  for (int b = 0; b < B; ++b)
    for (int t = 1; t < 3; ++t)
      for (int h = 0; h < H; ++h) EXPECT_EQ(dseq[(static_cast<size_t>(b) * L + t) * H + h], 0.0f);
  const std::vector<float> grads = s.grads();
  CheckGrad("span d_seq", seq.data(), seq.size(), dseq, loss);
  CheckGrad("span params", s.params().data(), s.params().size(), grads, loss);
}

TEST(SpanDecode, BestSpanRespectsOrderLengthMaskAndCls) {
  // positions:       0(CLS) 1     2     3     4     5
  const float start[] = {100, 1.0f, 5.0f, 0.0f, 9.0f, 0.0f};
  const float end[] = {100, 0.0f, 0.0f, 4.0f, 0.0f, 3.0f};
  const uint8_t allowed[] = {1, 1, 1, 1, 0, 1};
  // Best allowed pair with s <= e: start 2 (5) + end 3 (4) = 9; position 4 is masked; [CLS] never.
  SpanChoice c = BestSpan(start, end, allowed, 6, 30);
  EXPECT_EQ(c.start, 2);
  EXPECT_EQ(c.end, 3);
  EXPECT_FLOAT_EQ(c.score, 9.0f);
  // max_answer_tokens = 1: single-token spans only -> best of start[t] + end[t].
  c = BestSpan(start, end, allowed, 6, 1);
  EXPECT_EQ(c.start, c.end);
  EXPECT_EQ(c.start, 2);  // 5 + 0 beats 0 + 4 and 0 + 3
  const uint8_t none[] = {1, 0, 0, 0, 0, 0};
  EXPECT_EQ(BestSpan(start, end, none, 6, 30).start, -1);
}

TEST(HeadParams, InitIsDeterministicSmallAndZeroBias) {
  ClassifierHead head(64, 3);
  ParamStore a, b;
  head.Declare(&a);
  head.Declare(&b);
  a.Allocate(false);
  b.Allocate(false);
  InitHeadParams(&a, 7, 0.02f);
  InitHeadParams(&b, 7, 0.02f);
  EXPECT_EQ(a.params(), b.params());
  const float* w = a.param("heads.classifier.weight");
  double ss = 0;
  for (int i = 0; i < 3 * 64; ++i) ss += static_cast<double>(w[i]) * w[i];
  EXPECT_NEAR(std::sqrt(ss / (3 * 64)), 0.02, 0.005);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a.param("heads.classifier.bias")[i], 0.0f);
}

}  // namespace
}  // namespace roformer
