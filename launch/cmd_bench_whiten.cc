// `roformer bench whiten`: time of the streaming covariance accumulation (double, dsyrk blocks +
// Chan merges) and of the whitening fit (LAPACK dsyevd) on n random anisotropic vectors.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "data/sts/whitening.h"
#include "launch/command.h"
#include "runtime/error.h"
#include "runtime/flags.h"

namespace roformer {
namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int RunBenchWhiten(int argc, char** argv) {
  Flags flags(argc, argv, {"n", "dim", "chunk", "k", "seed"});
  const long long n = flags.GetInt("n", 100000);
  const long long dim = flags.GetInt("dim", 768);
  const long long chunk = flags.GetInt("chunk", 4096);
  const long long k = flags.GetInt("k", 256);
  if (n < 2 || dim <= 0 || dim > 16384 || chunk <= 0 || k <= 0 || k > dim) {
    Fail("bench whiten: need --n >= 2, 0 < --dim <= 16384, --chunk > 0, 0 < --k <= dim");
  }
  // Anisotropic, offset data (like real sentence vectors: a large common mean and a few dominant
  // directions), generated chunk by chunk so memory stays O(chunk * dim).
  std::mt19937_64 rng(static_cast<uint64_t>(flags.GetInt("seed", 1)));
  std::normal_distribution<float> gauss(0.f, 1.f);
  std::vector<float> scale(dim), offset(dim);
  for (long long j = 0; j < dim; ++j) {
    scale[j] = 1.0f / std::sqrt(1.0f + static_cast<float>(j));
    offset[j] = 3.0f + 0.1f * gauss(rng);
  }
  std::vector<float> buf(static_cast<size_t>(chunk * dim));
  sts::CovarianceAccumulator acc(static_cast<int>(dim));
  double gen_s = 0, acc_s = 0;
  for (long long r0 = 0; r0 < n; r0 += chunk) {
    const long long rows = std::min(chunk, n - r0);
    auto t0 = std::chrono::steady_clock::now();
    for (long long i = 0; i < rows * dim; ++i) {
      buf[i] = offset[i % dim] + scale[i % dim] * gauss(rng);
    }
    gen_s += Seconds(t0);
    t0 = std::chrono::steady_clock::now();
    acc.Add(buf.data(), rows, static_cast<int>(dim));
    acc_s += Seconds(t0);
  }
  auto t0 = std::chrono::steady_clock::now();
  sts::WhiteningKernel kern = sts::FitWhitening(acc);
  const double fit_s = Seconds(t0);
  // Apply on the last chunk (top-k + L2), to report a throughput for encoding-side use too.
  const long long arows = std::min(chunk, n);
  std::vector<float> out(static_cast<size_t>(arows * k));
  t0 = std::chrono::steady_clock::now();
  kern.Apply(buf.data(), static_cast<int>(arows), static_cast<int>(k), out.data(), true);
  const double apply_s = Seconds(t0);
  std::printf(
      "{\"bench\":\"whiten\",\"n\":%lld,\"dim\":%lld,\"chunk\":%lld,\"k\":%lld,"
      "\"accumulate_s\":%.6g,\"accumulate_rows_per_s\":%.6g,\"accumulate_gflops\":%.6g,"
      "\"fit_s\":%.6g,\"apply_rows\":%lld,\"apply_s\":%.6g,\"datagen_s\":%.6g,"
      "\"lambda_max\":%.6g,\"lambda_min\":%.6g,\"num_floored\":%d}\n",
      n, dim, chunk, k, acc_s, n / acc_s,
      // dsyrk: n * dim * (dim + 1) flops for the upper triangle.
      static_cast<double>(n) * dim * (dim + 1) / acc_s / 1e9, fit_s, arows, apply_s, gen_s,
      kern.eigenvalues.front(), kern.eigenvalues.back(), kern.num_floored);
  return 0;
}

RegisterCommand reg("bench whiten",
                    "time the whitening covariance accumulation and fit on random vectors",
                    "roformer bench whiten [--n 100000] [--dim 768] [--chunk 4096] [--k 256] "
                    "[--seed 1]\n"
                    "Streams n random anisotropic float vectors in chunks through the double "
                    "CovarianceAccumulator, fits\n"
                    "the whitening kernel (LAPACK dsyevd), applies it (top-k, L2) to one chunk and "
                    "prints one JSON line.\n"
                    "Threads: OPENBLAS_NUM_THREADS.",
                    &RunBenchWhiten);

}  // namespace
}  // namespace roformer
