// CAN (Classification with Alternating Normalization; kexue.fm 8728, arXiv 2109.13449) as
// post-processing of predicted class probabilities, following seeds.md §6 (the post's version):
//   uncertainty(p) = top-k entropy of the renormalised top-k probabilities / log k  (in [0, 1]);
//   confident = uncertainty < tau; confident rows are returned unchanged;
//   for each uncertain row j *separately*: L = [confident rows; p_j]; repeat `iterations` times:
//     L = L^alpha (elementwise); L[:, c] *= prior[c] / mean_r L[r, c]; L[r, :] /= sum_c L[r, c];
//   and p_j := last row of L. Every j starts from the original confident rows.
// Defaults are the author's CLUE choice: k=3, tau=0.9, 1 iteration, alpha=1. The prior is the
// class frequency of the *training* labels (PriorFromLabels).
//
// Edge cases (not covered by the post, our choice): k is clamped to [1, C]; with k == 1 the
// normalised entropy is 0/0 and every sample counts as confident (CAN is then the identity). A
// column whose mean is 0 stays 0; a row whose sum is 0 is left as is.
#pragma once

#include <cstdint>
#include <vector>

namespace roformer {

struct CanOptions {
  int k = 3;
  double tau = 0.9;
  int iterations = 1;
  double alpha = 1.0;
};

struct CanResult {
  int64_t n = 0, c = 0;
  std::vector<double> probs;        // [n, c] row-major, after CAN
  std::vector<double> uncertainty;  // [n] normalised top-k entropy of the input rows
  std::vector<char> confident;      // [n] 1 when uncertainty < tau
  int64_t num_confident = 0, num_uncertain = 0;
};

// probs: [n, c] row-major probability rows (each should sum to 1); prior: [c].
CanResult ApplyCan(const std::vector<double>& probs, int64_t n, int64_t c,
                   const std::vector<double>& prior, const CanOptions& opt = {});

// Normalised top-k entropy of one row (the uncertainty used above).
double TopKEntropy(const double* row, int64_t c, int k);

// Class frequencies of `labels` (entries < 0 are ignored). Error if no label is in range.
std::vector<double> PriorFromLabels(const std::vector<int>& labels, int num_classes);

// Row-wise argmax of a [n, c] matrix.
std::vector<int> ArgmaxRows(const std::vector<double>& probs, int64_t n, int64_t c);

struct CanReport {
  int64_t count = 0, confident = 0, uncertain = 0;
  double acc_before = 0, acc_after = 0;                      // over all labelled samples
  double acc_confident = 0;                                  // confident subset (unchanged)
  double acc_uncertain_before = 0, acc_uncertain_after = 0;  // uncertain subset
  int64_t changed = 0;  // uncertain samples whose argmax changed
};
// Accuracies (fractions) of the argmax before/after CAN; labels < 0 are skipped.
CanReport CanAccuracy(const std::vector<double>& probs_before, const CanResult& after,
                      const std::vector<int>& labels);

}  // namespace roformer
