#include "data/clue/hungarian.h"

#include <glog/logging.h>

#include <cmath>
#include <limits>

namespace roformer {
namespace {

// Shortest augmenting paths with row/column potentials (the e-maxx formulation): a[1..n][1..m],
// n <= m. Each of the n phases adds one row and runs a Dijkstra-like scan over the columns in
// O(n m), so the whole is O(n^2 m). Returns the column (0-based) of each row.
std::vector<int> Solve(const std::vector<double>& a, int n, int m) {
  const double kInf = std::numeric_limits<double>::infinity();
  std::vector<double> u(n + 1, 0.0), v(m + 1, 0.0), minv(m + 1);
  std::vector<int> p(m + 1, 0), way(m + 1, 0);  // p[j]: row matched to column j (0 = none)
  std::vector<char> used(m + 1);
  for (int i = 1; i <= n; ++i) {
    p[0] = i;
    int j0 = 0;
    std::fill(minv.begin(), minv.end(), kInf);
    std::fill(used.begin(), used.end(), 0);
    do {
      used[j0] = 1;
      const int i0 = p[j0];
      double delta = kInf;
      int j1 = 0;
      for (int j = 1; j <= m; ++j) {
        if (used[j]) continue;
        const double cur = a[static_cast<size_t>(i0 - 1) * m + (j - 1)] - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      CHECK_GT(j1, 0) << "MinCostAssignment: non-finite cost";
      for (int j = 0; j <= m; ++j) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {  // flip the augmenting path
      const int j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int> row_to_col(n, -1);
  for (int j = 1; j <= m; ++j) {
    if (p[j] > 0) row_to_col[p[j] - 1] = j - 1;
  }
  return row_to_col;
}

}  // namespace

std::vector<int> MinCostAssignment(const std::vector<double>& cost, int rows, int cols) {
  CHECK_GE(rows, 0);
  CHECK_GE(cols, 0);
  CHECK_EQ(cost.size(), static_cast<size_t>(rows) * cols);
  for (double c : cost) CHECK(std::isfinite(c)) << "MinCostAssignment: non-finite cost";
  if (rows == 0 || cols == 0) return std::vector<int>(rows, -1);
  if (rows <= cols) return Solve(cost, rows, cols);
  // More rows than columns: assign every column to a row on the transposed problem.
  std::vector<double> t(cost.size());
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      t[static_cast<size_t>(c) * rows + r] = cost[static_cast<size_t>(r) * cols + c];
  const std::vector<int> col_to_row = Solve(t, cols, rows);
  std::vector<int> out(rows, -1);
  for (int c = 0; c < cols; ++c) out[col_to_row[c]] = c;
  return out;
}

std::vector<int> MaxScoreAssignment(const std::vector<double>& score, int rows, int cols) {
  std::vector<double> neg(score.size());
  for (size_t i = 0; i < score.size(); ++i) neg[i] = -score[i];
  return MinCostAssignment(neg, rows, cols);
}

}  // namespace roformer
