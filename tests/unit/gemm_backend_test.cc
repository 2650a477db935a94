// The fp32 GEMM backends (kernels/cpu/gemm.h): oneDNN and OpenBLAS agree with an fp64 reference on
// every transpose, alpha/beta, strided A/B/C and the small-GEMM fallback; the ROFORMER_GEMM switch.
// The oneDNN cases are skipped with a message when the build has no oneDNN.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "runtime/error.h"

namespace roformer {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = nd(gen);
  return v;
}

class ScopedBackend {
 public:
  explicit ScopedBackend(GemmBackend b) : saved_(CurrentGemmBackend()) { SetGemmBackend(b); }
  ~ScopedBackend() { SetGemmBackend(saved_); }

 private:
  GemmBackend saved_;
};

// Max |got - ref| / (|alpha| * sqrt(k) + |beta| * |C0|) over the m x n window: an fp32 GEMM of
// N(0,1) operands has error ~ eps * sqrt(k) * |terms|.
void CheckAgainstReference(GemmBackend backend) {
  ScopedBackend use(backend);
  struct Shape {
    int m, n, k;
  };
  // 512x768x256 is above the 4 MFLOP threshold (the backend under test), 3x5x7 below it.
  for (Shape s :
       {Shape{512, 768, 256}, Shape{257, 130, 70}, Shape{300, 200, 100}, Shape{3, 5, 7}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (float beta : {0.0f, 1.0f, 0.5f}) {
        const float alpha = beta == 0.5f ? 0.25f : 1.0f;
        // Padded leading dimensions on all three operands.
        const int lda = (ta ? s.m : s.k) + 5, ldb = (tb ? s.k : s.n) + 2, ldc = s.n + 3;
        const auto a = Random(static_cast<int64_t>(ta ? s.k : s.m) * lda, 1 + t);
        const auto b = Random(static_cast<int64_t>(tb ? s.n : s.k) * ldb, 11 + t);
        const auto c0 = Random(static_cast<int64_t>(s.m) * ldc, 21 + t);
        std::vector<float> got = c0;
        Sgemm(ta, tb, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, got.data(), ldc);
        double worst = 0;
        for (int i = 0; i < s.m; ++i) {
          for (int j = 0; j < s.n; ++j) {
            double acc = 0;
            for (int p = 0; p < s.k; ++p) {
              const double av =
                  ta ? a[static_cast<int64_t>(p) * lda + i] : a[static_cast<int64_t>(i) * lda + p];
              const double bv =
                  tb ? b[static_cast<int64_t>(j) * ldb + p] : b[static_cast<int64_t>(p) * ldb + j];
              acc += av * bv;
            }
            const double c_old = c0[static_cast<int64_t>(i) * ldc + j];
            const double ref = alpha * acc + beta * c_old;
            const double scale = std::abs(alpha) * std::sqrt(s.k) + std::abs(beta * c_old) + 1e-30;
            worst = std::max(worst, std::abs(got[static_cast<int64_t>(i) * ldc + j] - ref) / scale);
          }
          for (int j = s.n; j < ldc; ++j)  // C's padding columns are untouched
            ASSERT_EQ(got[static_cast<int64_t>(i) * ldc + j],
                      c0[static_cast<int64_t>(i) * ldc + j]);
        }
        SCOPED_TRACE(testing::Message() << GemmBackendName(backend) << " " << s.m << "x" << s.n
                                        << "x" << s.k << " ta=" << ta << " tb=" << tb);
        EXPECT_LT(worst, 1e-5);
      }
    }
  }
}

TEST(GemmBackend, OpenBlasMatchesFp64Reference) { CheckAgainstReference(GemmBackend::kOpenBlas); }

TEST(GemmBackend, ReferenceMatchesFp64Reference) { CheckAgainstReference(GemmBackend::kReference); }

// The property the growth symmetry test relies on: identical columns of B give bit-identical
// columns of C on the reference backend, wherever they sit.
TEST(GemmBackend, ReferenceIsPositionIndependent) {
  ScopedBackend use(GemmBackend::kReference);
  const int m = 64, n = 48, k = 40;
  auto a = Random(m * k, 7), b = Random(k * n, 8);
  for (int p = 0; p < k; ++p) b[p * n + 37] = b[p * n + 2];  // column 37 copies column 2
  std::vector<float> c(m * n);
  Sgemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
  for (int i = 0; i < m; ++i) ASSERT_EQ(c[i * n + 37], c[i * n + 2]) << "row " << i;
}

TEST(GemmBackend, OneDnnMatchesFp64Reference) {
  if (!OneDnnAvailable()) GTEST_SKIP() << "this build has no oneDNN (libdnnl-dev)";
  CheckAgainstReference(GemmBackend::kOneDnn);
}

TEST(GemmBackend, OneDnnIsDeterministic) {
  if (!OneDnnAvailable()) GTEST_SKIP() << "this build has no oneDNN (libdnnl-dev)";
  ScopedBackend use(GemmBackend::kOneDnn);
  const int m = 384, n = 640, k = 320;
  const auto a = Random(m * k, 5), b = Random(n * k, 6);
  std::vector<float> c1(m * n), c2(m * n);
  Sgemm(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, c1.data(), n);
  Sgemm(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, c2.data(), n);
  EXPECT_EQ(c1, c2);  // resume and TP tests rely on bit-identical reruns
}

TEST(GemmBackend, Names) {
  EXPECT_STREQ(GemmBackendName(GemmBackend::kOneDnn), "onednn");
  EXPECT_STREQ(GemmBackendName(GemmBackend::kOpenBlas), "openblas");
  EXPECT_STREQ(GemmBackendName(GemmBackend::kReference), "reference");
  if (!OneDnnAvailable()) {
    EXPECT_THROW(SetGemmBackend(GemmBackend::kOneDnn), Error);
  }
}

}  // namespace
}  // namespace roformer
