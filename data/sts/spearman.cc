#include "data/sts/spearman.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "runtime/error.h"

namespace roformer::sts {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool AnyNaN(std::span<const double> x) {
  return std::any_of(x.begin(), x.end(), [](double v) { return std::isnan(v); });
}

}  // namespace

std::vector<double> RankData(std::span<const double> x) {
  const size_t n = x.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> rank(n);
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && x[order[j]] == x[order[i]]) ++j;
    // Positions i..j-1 (0-based) share the average of 1-based ranks i+1..j.
    const double avg = 0.5 * static_cast<double>(i + 1 + j);
    for (size_t t = i; t < j; ++t) rank[order[t]] = avg;
    i = j;
  }
  return rank;
}

double Pearson(std::span<const double> x, std::span<const double> y) {
  if (x.size() != y.size()) Fail("Pearson: length mismatch ", x.size(), " vs ", y.size());
  const size_t n = x.size();
  if (n < 2 || AnyNaN(x) || AnyNaN(y)) return kNaN;
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= static_cast<double>(n);
  my /= static_cast<double>(n);
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    const double a = x[i] - mx, b = y[i] - my;
    sxy += a * b;
    sxx += a * a;
    syy += b * b;
  }
  if (sxx == 0 || syy == 0) return kNaN;
  const double r = sxy / (std::sqrt(sxx) * std::sqrt(syy));
  return std::clamp(r, -1.0, 1.0);
}

double Spearman(std::span<const double> x, std::span<const double> y) {
  if (x.size() != y.size()) Fail("Spearman: length mismatch ", x.size(), " vs ", y.size());
  if (x.size() < 2 || AnyNaN(x) || AnyNaN(y)) return kNaN;
  const std::vector<double> rx = RankData(x), ry = RankData(y);
  return Pearson(rx, ry);
}

double CosineSimilarity(const float* a, const float* b, int dim) {
  double dot = 0, na = 0, nb = 0;
  for (int i = 0; i < dim; ++i) {
    dot += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  return dot / (std::max(std::sqrt(na), 1e-8) * std::max(std::sqrt(nb), 1e-8));
}

}  // namespace roformer::sts
