// bf16 GEMMs (model.precision = "bf16"): oneDNN bf16 x bf16 -> fp32 against an fp64 reference on
// the bf16-rounded operands (the accumulation must be fp32-accurate) and against the fp32 GEMM
// (bf16 operands: ~1e-3..1e-2 relative), every transpose, alpha/beta and strided C; the
// process-wide precision switch; the model-level config errors and a bf16 vs fp32 forward.
// Skipped with a message when the build has no oneDNN or the CPU lacks AVX512-BF16 / AMX.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "model/roformer_model.h"
#include "runtime/error.h"

namespace roformer {
namespace {

#define SKIP_WITHOUT_BF16()                                                   \
  do {                                                                        \
    const std::string why = Bf16GemmUnavailableReason();                      \
    if (!why.empty()) GTEST_SKIP() << "bf16 GEMMs unavailable here: " << why; \
  } while (0)

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = nd(gen);
  return v;
}

// C = alpha op(A) op(B) + beta C in fp64; `round` rounds A and B to bf16 first.
void Reference(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda,
               const float* b, int ldb, float beta, float* c, int ldc, bool round) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double acc = 0;
      for (int p = 0; p < k; ++p) {
        float av = ta ? a[static_cast<int64_t>(p) * lda + i] : a[static_cast<int64_t>(i) * lda + p];
        float bv = tb ? b[static_cast<int64_t>(j) * ldb + p] : b[static_cast<int64_t>(p) * ldb + j];
        if (round) {
          av = RoundToBf16(av);
          bv = RoundToBf16(bv);
        }
        acc += static_cast<double>(av) * bv;
      }
      float& cv = c[static_cast<int64_t>(i) * ldc + j];
      cv = static_cast<float>(alpha * acc + (beta != 0.0f ? beta * static_cast<double>(cv) : 0.0));
    }
  }
}

// Frobenius-norm relative difference over the m x n window of two row-major matrices.
double RelDiff(const std::vector<float>& x, const std::vector<float>& y, int m, int n, int ld) {
  double num = 0, den = 0;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      const double a = x[static_cast<int64_t>(i) * ld + j], b = y[static_cast<int64_t>(i) * ld + j];
      num += (a - b) * (a - b);
      den += b * b;
    }
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

TEST(Bf16Gemm, RoundToBf16IsNearestEven) {
  EXPECT_EQ(RoundToBf16(1.0f), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1).
  EXPECT_EQ(RoundToBf16(1.0f + 0x1.0p-8f), 1.0f);
  EXPECT_EQ(RoundToBf16(1.0f + 0x1.0p-8f + 0x1.0p-20f), 1.0f + 0x1.0p-7f);
  EXPECT_EQ(RoundToBf16(-3.0f), -3.0f);
}

TEST(Bf16Gemm, MatchesReferenceAllTransposes) {
  SKIP_WITHOUT_BF16();
  std::printf("bf16 GEMM path: %s\n", Bf16GemmIsa().c_str());
  struct Shape {
    int m, n, k;
  };
  for (Shape s : {Shape{64, 48, 96}, Shape{257, 130, 70}, Shape{512, 768, 256}, Shape{3, 5, 7}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (float beta : {0.0f, 1.0f, 0.5f}) {
        const float alpha = beta == 0.5f ? 0.25f : 1.0f;
        const int lda = ta ? s.m : s.k, ldb = tb ? s.k : s.n, ldc = s.n + 3;  // strided C
        const auto a = Random(static_cast<int64_t>(ta ? s.k : s.m) * lda, 1 + t);
        const auto b = Random(static_cast<int64_t>(tb ? s.n : s.k) * ldb, 11 + t);
        const auto c0 = Random(static_cast<int64_t>(s.m) * ldc, 21 + t);
        std::vector<float> got = c0, ref_bf = c0, ref_fp = c0;
        Bf16Gemm(ta, tb, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, got.data(), ldc);
        Reference(ta, tb, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, ref_bf.data(),
                  ldc, true);
        Reference(ta, tb, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, ref_fp.data(),
                  ldc, false);
        const double d_bf = RelDiff(got, ref_bf, s.m, s.n, ldc);
        const double d_fp = RelDiff(got, ref_fp, s.m, s.n, ldc);
        SCOPED_TRACE(testing::Message() << s.m << "x" << s.n << "x" << s.k << " ta=" << ta
                                        << " tb=" << tb << " alpha=" << alpha << " beta=" << beta);
        EXPECT_LT(d_bf, 1e-5);  // fp32 accumulation of exact bf16 products
        EXPECT_LT(d_fp, 1e-2);  // what bf16 operands cost against fp32
        if (beta == 0.0f) {
          EXPECT_GT(d_fp, 1e-5);  // the operands really were rounded
        }
        // C's padding columns are untouched.
        for (int i = 0; i < s.m; ++i)
          for (int j = s.n; j < ldc; ++j)
            ASSERT_EQ(got[static_cast<int64_t>(i) * ldc + j],
                      c0[static_cast<int64_t>(i) * ldc + j]);
      }
    }
  }
}

TEST(Bf16Gemm, ScopedPrecisionRoutesSgemm) {
  SKIP_WITHOUT_BF16();
  const int m = 256, n = 192, k = 320;
  const auto a = Random(m * k, 3), b = Random(n * k, 4);
  std::vector<float> fp(m * n), bf(m * n), direct(m * n);
  Sgemm(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, fp.data(), n);
  {
    ScopedGemmPrecision p(GemmPrecision::kBf16);
    EXPECT_EQ(CurrentGemmPrecision(), GemmPrecision::kBf16);
    Sgemm(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, bf.data(), n);
  }
  EXPECT_EQ(CurrentGemmPrecision(), GemmPrecision::kFp32);
  Bf16Gemm(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, direct.data(), n);
  EXPECT_LT(RelDiff(bf, direct, m, n, n), 1e-6);
  const double d = RelDiff(bf, fp, m, n, n);
  EXPECT_GT(d, 1e-5);
  EXPECT_LT(d, 1e-2);
}

config::ModelConfig SmallConfig(const std::string& precision) {
  config::ModelConfig c;
  c.set_vocab_size(300);
  c.set_hidden_size(64);
  c.set_num_hidden_layers(2);
  c.set_num_attention_heads(2);
  c.set_intermediate_size(128);
  c.set_max_position_embeddings(64);
  c.set_precision(precision);
  return c;
}

TEST(Bf16Gemm, ModelConfigErrors) {
  try {
    RoFormerModel m(SmallConfig("fp16"));
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.precision"), std::string::npos) << e.what();
  }
  if (!Bf16GemmUnavailableReason().empty()) {
    try {
      RoFormerModel m(SmallConfig("bf16"));
      FAIL() << "expected an Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.precision"), std::string::npos) << e.what();
    }
  }
}

TEST(Bf16Gemm, ModelLossCloseToFp32) {
  SKIP_WITHOUT_BF16();
  Batch b;
  b.batch = 4;
  b.seq_len = 32;
  std::mt19937 gen(5);
  for (int i = 0; i < b.batch * b.seq_len; ++i) {
    b.input_ids.push_back(1 + static_cast<int>(gen() % 299));
    b.token_type_ids.push_back(0);
    b.attention_mask.push_back(1);
  }
  for (int i = 0; i < 20; ++i) {
    b.mlm_positions.push_back(i * 6);
    b.mlm_labels.push_back(1 + static_cast<int>(gen() % 299));
  }
  b.sop_labels = {0, 1, 1, 0};
  RoFormerModel fp(SmallConfig("fp32")), bf(SmallConfig("bf16"));
  fp.InitWeights(9);
  bf.InitWeights(9);
  const LossStats lf = fp.ForwardBackward(b, DropoutContext{}, true);
  const LossStats lb = bf.ForwardBackward(b, DropoutContext{}, true);
  EXPECT_NEAR(lb.loss, lf.loss, 1e-2 * std::abs(lf.loss));
  EXPECT_EQ(CurrentGemmPrecision(), GemmPrecision::kFp32);  // the scope ended with the step
  // Gradients agree to bf16 accuracy (fp32 master weights and gradients either way).
  const auto& gf = fp.store().grads();
  const auto& gb = bf.store().grads();
  double num = 0, den = 0;
  for (size_t i = 0; i < gf.size(); ++i) {
    num += (gb[i] - gf[i]) * static_cast<double>(gb[i] - gf[i]);
    den += gf[i] * static_cast<double>(gf[i]);
  }
  EXPECT_LT(std::sqrt(num / den), 5e-2);
}

}  // namespace
}  // namespace roformer
