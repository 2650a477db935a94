// MinCostAssignment (data/clue/hungarian.h) against brute force over all assignments, plus known
// cases (the ChID use: maximise the summed blank x candidate scores with distinct candidates).
#include "data/clue/hungarian.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

namespace roformer {
namespace {

double Cost(const std::vector<double>& c, int cols, const std::vector<int>& a) {
  double s = 0;
  for (size_t r = 0; r < a.size(); ++r)
    if (a[r] >= 0) s += c[r * cols + a[r]];
  return s;
}

// Minimum over injective maps of min(rows, cols) rows/cols (brute force over column
// permutations; rows > cols handled by choosing which rows go unassigned via the permutation).
double BruteForce(const std::vector<double>& c, int rows, int cols) {
  const int n = std::max(rows, cols);
  std::vector<int> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  double best = 1e300;
  do {
    double s = 0;
    for (int r = 0; r < rows; ++r)
      if (perm[r] < cols) s += c[r * cols + perm[r]];
    best = std::min(best, s);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

void ExpectValid(const std::vector<int>& a, int rows, int cols) {
  ASSERT_EQ(static_cast<int>(a.size()), rows);
  std::vector<int> used(cols, 0);
  int assigned = 0;
  for (int x : a) {
    if (x < 0) continue;
    ASSERT_LT(x, cols);
    EXPECT_EQ(used[x]++, 0) << "column " << x << " used twice";
    ++assigned;
  }
  EXPECT_EQ(assigned, std::min(rows, cols));
}

TEST(Hungarian, KnownSquare) {
  // Classic 3x3: optimum 0->1, 1->0, 2->2 with cost 1 + 2 + 2 = 5.
  const std::vector<double> c = {4, 1, 3, 2, 0, 5, 3, 2, 2};
  const std::vector<int> a = MinCostAssignment(c, 3, 3);
  EXPECT_EQ(a, (std::vector<int>{1, 0, 2}));
  EXPECT_DOUBLE_EQ(Cost(c, 3, a), 5);
}

TEST(Hungarian, ChidStyleBeatsGreedyArgmax) {
  // Two blanks, three candidates: both blanks prefer candidate 0; the per-blank argmax would give
  // the same idiom twice. Joint optimum: blank 0 -> 0 (9 + 7 = 16 beats 8 + 8).
  const std::vector<double> score = {9, 1, 8, 8, 0, 7};
  const std::vector<int> a = MaxScoreAssignment(score, 2, 3);
  EXPECT_EQ(a, (std::vector<int>{0, 2}));
}

TEST(Hungarian, RandomAgainstBruteForce) {
  std::mt19937 gen(42);
  std::uniform_real_distribution<double> u(-5, 5);
  std::uniform_int_distribution<int> small(0, 3);
  for (int trial = 0; trial < 300; ++trial) {
    const int rows = 1 + trial % 6, cols = 1 + (trial / 6) % 6;
    std::vector<double> c(static_cast<size_t>(rows) * cols);
    // Half the trials use small integers so ties are frequent.
    for (double& x : c) x = trial % 2 ? u(gen) : small(gen);
    const std::vector<int> a = MinCostAssignment(c, rows, cols);
    ExpectValid(a, rows, cols);
    EXPECT_NEAR(Cost(c, cols, a), BruteForce(c, rows, cols), 1e-9)
        << "trial " << trial << " (" << rows << "x" << cols << ")";
  }
}

TEST(Hungarian, LargerSquareIsOptimalAgainstPairwiseSwaps) {
  // 60x60: no swap of two rows' columns may lower the cost (a necessary optimality condition
  // checkable without brute force), and the result is a permutation.
  std::mt19937 gen(7);
  std::uniform_real_distribution<double> u(0, 100);
  const int n = 60;
  std::vector<double> c(n * n);
  for (double& x : c) x = u(gen);
  const std::vector<int> a = MinCostAssignment(c, n, n);
  ExpectValid(a, n, n);
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j)
      EXPECT_LE(c[i * n + a[i]] + c[j * n + a[j]], c[i * n + a[j]] + c[j * n + a[i]] + 1e-9);
}

TEST(Hungarian, Empty) {
  EXPECT_TRUE(MinCostAssignment({}, 0, 3).empty());
  EXPECT_EQ(MinCostAssignment({}, 2, 0), (std::vector<int>{-1, -1}));
}

}  // namespace
}  // namespace roformer
