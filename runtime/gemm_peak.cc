#include "runtime/gemm_peak.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "kernels/cpu/gemm.h"

namespace roformer {

double MeasureSgemmPeakGflops(int n, int reps) {
  std::vector<float> a(static_cast<size_t>(n) * n), b(a.size()), c(a.size());
  // Non-zero, non-trivial operands: timing on zeros can hit fast paths.
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = std::sin(0.001f * static_cast<float>(i));
    b[i] = std::cos(0.0007f * static_cast<float>(i));
  }
  auto run = [&] {
    // Through Sgemm, so the peak is that of the GEMM backend the model uses (gemm.h).
    Sgemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  };
  run();
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    run();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * static_cast<double>(n) / s / 1e9);
  }
  return best;
}

}  // namespace roformer
