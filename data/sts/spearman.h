// Correlation metrics for STS evaluation, with scipy.stats semantics (the reference code scores
// with scipy.stats.spearmanr(labels, sims)):
//   * RankData: 1-based ranks, ties get the average of the ranks they span (rankdata "average").
//   * Spearman: Pearson correlation of the average ranks.
//   * Pearson: sum(xc*yc) / sqrt(sum(xc^2) sum(yc^2)) on centred values, clipped to [-1, 1].
// Both return NaN (like scipy, which also warns) when either input is constant, has fewer than 2
// elements, or contains NaN. Length mismatch is an Error.
#pragma once

#include <span>
#include <vector>

namespace roformer::sts {

std::vector<double> RankData(std::span<const double> x);
double Pearson(std::span<const double> x, std::span<const double> y);
double Spearman(std::span<const double> x, std::span<const double> y);

// dot(a, b) / (max(|a|, 1e-8) * max(|b|, 1e-8)), accumulated in double; the clip matches the
// reference code's L2 normalisation, so zero vectors give 0 instead of NaN.
double CosineSimilarity(const float* a, const float* b, int dim);

}  // namespace roformer::sts
