#include "data/sts/whitening.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <vector>

#include "runtime/error.h"
#include "runtime/safetensors.h"

namespace roformer::sts {
namespace {

namespace fs = std::filesystem;

// Row-major random orthogonal matrix (Gram-Schmidt on Gaussian columns, twice for stability).
std::vector<double> RandomOrthogonal(int d, std::mt19937_64& rng) {
  std::normal_distribution<double> g;
  std::vector<double> q(static_cast<size_t>(d) * d);
  for (auto& v : q) v = g(rng);
  for (int pass = 0; pass < 2; ++pass) {
    for (int c = 0; c < d; ++c) {
      for (int p = 0; p < c; ++p) {
        double dot = 0;
        for (int i = 0; i < d; ++i) dot += q[i * d + c] * q[i * d + p];
        for (int i = 0; i < d; ++i) q[i * d + c] -= dot * q[i * d + p];
      }
      double nrm = 0;
      for (int i = 0; i < d; ++i) nrm += q[i * d + c] * q[i * d + c];
      nrm = std::sqrt(nrm);
      for (int i = 0; i < d; ++i) q[i * d + c] /= nrm;
    }
  }
  return q;
}

// x = offset + (z * diag(sd)) Q^T: principal axes are the columns of Q with std devs sd.
std::vector<float> PlantedData(int64_t n, int d, const std::vector<double>& sd,
                               const std::vector<double>& q, double offset, std::mt19937_64& rng) {
  std::normal_distribution<double> g;
  std::vector<float> x(static_cast<size_t>(n) * d);
  std::vector<double> z(d);
  for (int64_t r = 0; r < n; ++r) {
    for (int j = 0; j < d; ++j) z[j] = g(rng) * sd[j];
    for (int i = 0; i < d; ++i) {
      double v = offset + 0.1 * i;
      for (int j = 0; j < d; ++j) v += q[i * d + j] * z[j];
      x[r * d + i] = static_cast<float>(v);
    }
  }
  return x;
}

// Reference statistics: two passes in long double.
void BatchStats(const std::vector<float>& x, int64_t n, int d, int ddof, std::vector<double>* mean,
                std::vector<double>* cov) {
  std::vector<long double> m(d, 0.0L);
  for (int64_t r = 0; r < n; ++r)
    for (int j = 0; j < d; ++j) m[j] += x[r * d + j];
  for (auto& v : m) v /= n;
  std::vector<long double> c(static_cast<size_t>(d) * d, 0.0L);
  for (int64_t r = 0; r < n; ++r)
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) c[i * d + j] += (x[r * d + i] - m[i]) * (x[r * d + j] - m[j]);
  mean->assign(m.begin(), m.end());
  cov->resize(c.size());
  for (size_t i = 0; i < c.size(); ++i) (*cov)[i] = static_cast<double>(c[i] / (n - ddof));
}

TEST(WhiteningTest, WhitenedTrainingVectorsHaveZeroMeanAndIdentityCovariance) {
  std::mt19937_64 rng(7);
  const int d = 24;
  const int64_t n = 3000;
  std::vector<double> sd(d);
  for (int j = 0; j < d; ++j) sd[j] = 30.0 / (1 + j);  // condition number ~ 576^2
  const std::vector<double> q = RandomOrthogonal(d, rng);
  const std::vector<float> x = PlantedData(n, d, sd, q, 50.0, rng);
  for (int ddof : {0, 1}) {
    WhiteningOptions opt;
    opt.ddof = ddof;
    const WhiteningKernel k = FitWhitening(x.data(), n, d, opt);
    ASSERT_EQ(k.dim, d);
    EXPECT_EQ(k.count, n);
    EXPECT_EQ(k.num_floored, 0);
    // Transform in double from the kernel, then statistics with the same normaliser.
    std::vector<double> y(static_cast<size_t>(n) * d, 0.0);
    for (int64_t r = 0; r < n; ++r)
      for (int i = 0; i < d; ++i) {
        const double c = x[r * d + i] - k.mu[i];
        for (int j = 0; j < d; ++j) y[r * d + j] += c * k.W[i * d + j];
      }
    std::vector<double> m(d, 0.0);
    for (int64_t r = 0; r < n; ++r)
      for (int j = 0; j < d; ++j) m[j] += y[r * d + j] / n;
    for (int j = 0; j < d; ++j) EXPECT_NEAR(m[j], 0.0, 1e-6) << "ddof " << ddof << " col " << j;
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) {
        double s = 0;
        for (int64_t r = 0; r < n; ++r) s += (y[r * d + i] - m[i]) * (y[r * d + j] - m[j]);
        EXPECT_NEAR(s / (n - ddof), i == j ? 1.0 : 0.0, 1e-6)
            << "ddof " << ddof << " (" << i << "," << j << ")";
      }
    // The float Apply agrees with the double transform.
    std::vector<float> out(static_cast<size_t>(n) * d);
    k.Apply(x.data(), static_cast<int>(n), -1, out.data(), false);
    for (size_t t = 0; t < out.size(); ++t) ASSERT_NEAR(out[t], y[t], 1e-4 * (1 + std::abs(y[t])));
  }
}

TEST(WhiteningTest, StreamingChunksAndMergesEqualBatchStatistics) {
  std::mt19937_64 rng(11);
  const int d = 16;
  const int64_t n = 2500;
  std::vector<double> sd(d);
  for (int j = 0; j < d; ++j) sd[j] = 0.5 + j;
  // Large offset relative to the spread: the naive E[xx^T] - mu mu^T formula loses digits here.
  const std::vector<float> x = PlantedData(n, d, sd, RandomOrthogonal(d, rng), 1000.0, rng);
  std::vector<double> ref_mean, ref_cov;
  BatchStats(x, n, d, 1, &ref_mean, &ref_cov);

  for (int trial = 0; trial < 5; ++trial) {
    // Random chunk sizes (1 row to > one internal block), spread over 4 accumulators, merged in a
    // random tree with empty accumulators mixed in.
    std::vector<CovarianceAccumulator> parts(4);
    std::uniform_int_distribution<int64_t> chunk(1, trial % 2 ? 700 : 40);
    std::uniform_int_distribution<int> which(0, 3);
    for (int64_t r = 0; r < n;) {
      const int64_t c = std::min(chunk(rng), n - r);
      parts[which(rng)].Add(x.data() + r * d, c, d);
      r += c;
    }
    CovarianceAccumulator empty;
    parts[0].Merge(empty);
    parts[2].Merge(parts[3]);
    empty.Merge(parts[1]);
    parts[0].Merge(parts[2]);
    parts[0].Merge(empty);
    const CovarianceAccumulator& acc = parts[0];
    ASSERT_EQ(acc.count(), n);
    ASSERT_EQ(acc.dim(), d);
    for (int j = 0; j < d; ++j) EXPECT_NEAR(acc.mean()[j], ref_mean[j], 1e-10 * 1000);
    const std::vector<double> cov = acc.covariance(1);
    for (size_t t = 0; t < cov.size(); ++t) {
      EXPECT_NEAR(cov[t], ref_cov[t], 1e-9 * (1 + std::abs(ref_cov[t]))) << "trial " << trial;
    }
  }
  // One Add of everything equals the streamed result too.
  CovarianceAccumulator one(d);
  one.Add(x.data(), n, d);
  const std::vector<double> cov = one.covariance(0);
  for (size_t t = 0; t < cov.size(); ++t) {
    EXPECT_NEAR(cov[t], ref_cov[t] * (n - 1) / n, 1e-9 * (1 + std::abs(ref_cov[t])));
  }
}

TEST(WhiteningTest, TopKKeepsTheLargestVarianceDirections) {
  std::mt19937_64 rng(3);
  const int d = 8, k = 3;
  const int64_t n = 20000;
  // Planted variances 64, 32, ..., 0.5 in shuffled axis order.
  std::vector<int> order(d);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<double> sd(d);
  for (int r = 0; r < d; ++r) sd[order[r]] = 8.0 / std::pow(std::sqrt(2.0), r);
  const std::vector<double> q = RandomOrthogonal(d, rng);
  const std::vector<float> x = PlantedData(n, d, sd, q, 5.0, rng);
  const WhiteningKernel kern = FitWhitening(x.data(), n, d);
  for (int c = 1; c < d; ++c) EXPECT_GT(kern.eigenvalues[c - 1], kern.eigenvalues[c]);
  for (int c = 0; c < k; ++c) {
    // Column c of W is u_c / sqrt(lambda_c); it must align with the planted axis of rank c.
    const int axis = order[c];
    double dot = 0, nrm = 0;
    for (int i = 0; i < d; ++i) {
      dot += kern.W[i * d + c] * q[i * d + axis];
      nrm += kern.W[i * d + c] * kern.W[i * d + c];
    }
    EXPECT_GT(std::abs(dot) / std::sqrt(nrm), 0.999) << "column " << c;
    EXPECT_NEAR(kern.eigenvalues[c], sd[axis] * sd[axis], 0.05 * sd[axis] * sd[axis]);
  }
  // Top-k output = the first k columns of the full transform, and has unit variance per column.
  std::vector<float> full(static_cast<size_t>(n) * d), top(static_cast<size_t>(n) * k);
  kern.Apply(x.data(), static_cast<int>(n), d, full.data(), false);
  kern.Apply(x.data(), static_cast<int>(n), k, top.data(), false);
  for (int64_t r = 0; r < n; ++r)
    for (int c = 0; c < k; ++c) ASSERT_EQ(top[r * k + c], full[r * d + c]);
  for (int c = 0; c < k; ++c) {
    double m = 0, s = 0;
    for (int64_t r = 0; r < n; ++r) m += top[r * k + c];
    m /= n;
    for (int64_t r = 0; r < n; ++r) s += (top[r * k + c] - m) * (top[r * k + c] - m);
    EXPECT_NEAR(m, 0.0, 1e-5);
    EXPECT_NEAR(s / (n - 1), 1.0, 1e-5);
  }
}

TEST(WhiteningTest, ApplyWithL2NormalisationGivesUnitNorms) {
  std::mt19937_64 rng(5);
  const int d = 12;
  const int64_t n = 600;
  std::vector<double> sd(d, 1.0);
  for (int j = 0; j < d; ++j) sd[j] = 1.0 + 3.0 * j;
  const std::vector<float> x = PlantedData(n, d, sd, RandomOrthogonal(d, rng), -2.0, rng);
  const WhiteningKernel kern = FitWhitening(x.data(), n, d);
  for (int k : {1, 5, d}) {
    std::vector<float> out(static_cast<size_t>(n) * k);
    kern.Apply(x.data(), static_cast<int>(n), k, out.data(), true);
    for (int64_t r = 0; r < n; ++r) {
      double ss = 0;
      for (int j = 0; j < k; ++j) ss += static_cast<double>(out[r * k + j]) * out[r * k + j];
      ASSERT_NEAR(std::sqrt(ss), 1.0, 1e-6) << "k " << k << " row " << r;
    }
  }
  // A row equal to mu whitens to exactly zero; the 1e-8 clip keeps it zero instead of NaN.
  WhiteningKernel id;
  id.dim = 2;
  id.mu = {0.5, 0.25};
  id.W = {1, 0, 0, 1};
  id.eigenvalues = {1, 1};
  const float rows[4] = {0.5f, 0.25f, 3.5f, 4.25f};
  float out[4];
  id.Apply(rows, 2, 2, out, true);
  EXPECT_EQ(out[0], 0.f);
  EXPECT_EQ(out[1], 0.f);
  EXPECT_FLOAT_EQ(out[2], 0.6f);
  EXPECT_FLOAT_EQ(out[3], 0.8f);
}

TEST(WhiteningTest, SaveLoadRoundTripAndValidation) {
  std::mt19937_64 rng(9);
  const int d = 10;
  std::vector<double> sd(d, 2.0);
  const std::vector<float> x = PlantedData(400, d, sd, RandomOrthogonal(d, rng), 1.0, rng);
  const WhiteningKernel k = FitWhitening(x.data(), 400, d);
  const fs::path dir = fs::path(testing::TempDir()) / "whitening_test";
  fs::create_directories(dir);
  const std::string path = (dir / "kernel.safetensors").string();
  k.Save(path);
  const WhiteningKernel l = WhiteningKernel::Load(path);
  EXPECT_EQ(l.dim, k.dim);
  EXPECT_EQ(l.count, 400);
  EXPECT_EQ(l.mu, k.mu);  // bit-exact: stored as F64
  EXPECT_EQ(l.W, k.W);
  EXPECT_EQ(l.eigenvalues, k.eigenvalues);

  // A safetensors file that is not a whitening kernel, and one with the wrong dtype.
  safetensors::Writer w;
  std::vector<float> f(d, 0.f);
  w.AddFloat("mu", {d}, f);
  const std::string other = (dir / "other.safetensors").string();
  w.WriteFile(other);
  EXPECT_THROW(WhiteningKernel::Load(other), Error);
  w.SetMetadata("format", "roformer-whitening");
  w.SetMetadata("version", "1");
  w.WriteFile(other);
  try {
    WhiteningKernel::Load(other);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(other), std::string::npos) << e.what();
  }
  // Truncated file.
  {
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream out(other, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 9));
  }
  EXPECT_THROW(WhiteningKernel::Load(other), Error);
  EXPECT_THROW(WhiteningKernel::Load((dir / "missing.safetensors").string()), Error);
}

TEST(WhiteningTest, ErrorsAndDegenerateData) {
  CovarianceAccumulator acc;
  std::vector<float> row = {1.f, 2.f, 3.f};
  acc.Add(row.data(), 1, 3);
  EXPECT_THROW(acc.Add(row.data(), 1, 2), Error);
  row[1] = std::nanf("");
  EXPECT_THROW(acc.Add(row.data(), 1, 3), Error);
  EXPECT_THROW(acc.covariance(1), Error);  // one row, ddof 1
  CovarianceAccumulator other(4);
  std::vector<float> row4 = {1.f, 2.f, 3.f, 4.f};
  other.Add(row4.data(), 1, 4);
  EXPECT_THROW(acc.Merge(other), Error);
  EXPECT_THROW(FitWhitening(CovarianceAccumulator()), Error);

  // Identical vectors: zero covariance cannot be whitened.
  std::vector<float> same(5 * 3, 1.5f);
  EXPECT_THROW(FitWhitening(same.data(), 5, 3), Error);

  // Fewer vectors than dimensions: rank deficient; the null directions are floored, W is finite,
  // and the top (rank) directions still whiten.
  std::mt19937_64 rng(1);
  std::normal_distribution<float> g;
  const int d = 20, n = 6;
  std::vector<float> x(n * d);
  for (auto& v : x) v = g(rng);
  const WhiteningKernel k = FitWhitening(x.data(), n, d);
  EXPECT_GE(k.num_floored, d - (n - 1));
  for (double v : k.W) ASSERT_TRUE(std::isfinite(v));
  std::vector<float> out(n * (n - 1));
  k.Apply(x.data(), n, n - 1, out.data(), false);
  for (int c = 0; c < n - 1; ++c) {
    double s = 0;
    for (int r = 0; r < n; ++r)
      s += static_cast<double>(out[r * (n - 1) + c]) * out[r * (n - 1) + c];
    EXPECT_NEAR(s / (n - 1), 1.0, 1e-4);
  }
  EXPECT_THROW(k.Apply(x.data(), n, 0, out.data(), false), Error);
  EXPECT_THROW(k.Apply(x.data(), n, d + 1, out.data(), false), Error);
  EXPECT_THROW(WhiteningKernel().Apply(x.data(), n, 1, out.data(), false), Error);
}

}  // namespace
}  // namespace roformer::sts
