// BERT-whitening (Su et al. 2021, arXiv 2103.15316; kexue.fm posts 8069/8321; docs: seeds.md §3).
// Sentence vectors x (rows) are mapped to y = (x - mu) W[:, :k] so that the fitted vectors have
// zero mean and identity covariance; W = U Lambda^{-1/2} from the eigendecomposition Sigma = U
// Lambda U^T, columns sorted by descending eigenvalue, so keeping the first k columns is PCA plus
// scaling.
//
// Statistics are streamed in double: each Add() block is centred on its own mean (two-pass inside
// the block, so no catastrophic cancellation from large means) and blocks are combined with Chan et
// al.'s parallel update M2 = M2_a + M2_b + d d^T n_a n_b / n. The textbook streaming formula
// Sigma_{n+1} = n/(n+1) (Sigma_n + mu^T mu) + ... (post 8069) subtracts two large quantities and
// loses precision when |mu| >> spread, which is exactly the anisotropic case whitening targets.
//
// The reference code (bojone/BERT-whitening chn/utils.py) uses np.cov, i.e. 1/(N-1); we default to
// that (ddof = 1). The scale is irrelevant after L2 normalisation, and tests can pick either.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace roformer::sts {

class CovarianceAccumulator {
 public:
  CovarianceAccumulator() = default;
  explicit CovarianceAccumulator(int dim);

  // Adds n_rows row-major vectors of length dim. The first Add (or the constructor) fixes dim;
  // Error on a later mismatch, and on NaN/Inf values (naming the row).
  void Add(const float* x, int64_t n_rows, int dim);
  // Chan parallel merge; equal (up to rounding) to having added the other's rows here. An empty
  // accumulator merges with anything; otherwise dims must match (Error).
  void Merge(const CovarianceAccumulator& other);

  int dim() const { return dim_; }
  int64_t count() const { return n_; }
  // Running mean (dim values).
  const std::vector<double>& mean() const { return mean_; }
  // Sum over rows of (x - mean)(x - mean)^T, dim x dim row-major, full symmetric.
  std::vector<double> scatter() const;
  // scatter / (count - ddof), dim x dim row-major. Error when count - ddof <= 0.
  std::vector<double> covariance(int ddof = 1) const;

 private:
  int dim_ = 0;
  int64_t n_ = 0;
  std::vector<double> mean_;
  std::vector<double> m2_;     // upper triangle valid (row-major i <= j), as dsyrk writes it
  std::vector<double> block_;  // scratch: centred block
};

struct WhiteningOptions {
  int ddof = 1;  // covariance normaliser N - ddof (np.cov default)
  // Eigenvalues below rel_floor * lambda_max (including zero/negative ones from rank-deficient
  // data, e.g. N <= dim) are raised to that floor so W stays finite. Directions affected are the
  // smallest ones and are dropped by any k <= rank.
  double rel_floor = 1e-12;
};

struct WhiteningKernel {
  std::vector<double> mu;           // dim
  std::vector<double> W;            // dim x dim row-major; column j = u_j / sqrt(lambda_j)
  std::vector<double> eigenvalues;  // dim, descending (after flooring)
  int dim = 0;
  int64_t count = 0;    // rows the statistics were fitted on
  int num_floored = 0;  // eigenvalues raised to the floor

  // out[n x k] = (x[n x dim] - mu) W[:, :k], then (optionally) each row divided by
  // max(||row||, 1e-8) as the reference code does. k < 0 means all dim columns; k == 0 or k > dim
  // is an Error.
  void Apply(const float* x, int n, int k, float* out, bool l2_normalize) const;

  // safetensors file: F64 tensors "mu" [dim], "W" [dim, dim], "eigenvalues" [dim]; metadata
  // format = "roformer-whitening", version = "1", count, num_floored. Load validates dtypes and
  // shapes and throws Error naming the file.
  void Save(const std::string& path) const;
  static WhiteningKernel Load(const std::string& path);
};

// Eigendecomposition of the accumulated covariance via LAPACK dsyevd. Error when fewer than
// ddof + 1 rows were added or LAPACK fails.
WhiteningKernel FitWhitening(const CovarianceAccumulator& stats, const WhiteningOptions& opt = {});
// Convenience: statistics of n row vectors, then the fit.
WhiteningKernel FitWhitening(const float* x, int64_t n, int dim, const WhiteningOptions& opt = {});

}  // namespace roformer::sts
