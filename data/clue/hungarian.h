// Minimum-cost assignment (the Hungarian / Kuhn-Munkres algorithm with potentials, O(n^2 m) for
// an n x m matrix with n <= m, i.e. O(n^3) on square matrices). Used by ChID decoding: the blanks
// of one CLUE passage share their candidate idioms and no idiom fills two blanks, so the blanks'
// choices are decoded jointly (scipy.optimize.linear_sum_assignment(-logits) in the bert4keras
// baseline, seeds.md §5.2, worth about +6% accuracy over a per-blank argmax).
#pragma once

#include <cstdint>
#include <vector>

namespace roformer {

// cost: [rows, cols] row-major, finite. Returns, for each row, the column assigned to it so that
// no column is used twice and the summed cost is minimal. When rows > cols only `cols` rows can be
// assigned; the others get -1 (the assignment is then minimal over the assigned rows). Ties are
// broken deterministically. rows == 0 or cols == 0 gives all -1.
std::vector<int> MinCostAssignment(const std::vector<double>& cost, int rows, int cols);

// The same maximising the summed score (MinCostAssignment of -score).
std::vector<int> MaxScoreAssignment(const std::vector<double>& score, int rows, int cols);

}  // namespace roformer
