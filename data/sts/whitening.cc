#include "data/sts/whitening.h"

#include <cblas.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>

#include "runtime/error.h"
#include "runtime/safetensors.h"

// LAPACK (Debian liblapack / OpenBLAS), Fortran calling convention with the hidden string lengths
// gfortran appends.
extern "C" void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda,
                        double* w, double* work, const int* lwork, int* iwork, const int* liwork,
                        int* info, size_t jobz_len, size_t uplo_len);

namespace roformer::sts {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; whitening Save/Load copies raw bytes");

constexpr int64_t kBlockRows = 512;

void CheckDim(int dim) {
  if (dim <= 0) Fail("whitening: vector dimension must be positive, got ", dim);
}

}  // namespace

CovarianceAccumulator::CovarianceAccumulator(int dim) {
  CheckDim(dim);
  dim_ = dim;
  mean_.assign(dim, 0.0);
  m2_.assign(static_cast<size_t>(dim) * dim, 0.0);
}

void CovarianceAccumulator::Add(const float* x, int64_t n_rows, int dim) {
  CheckDim(dim);
  if (n_rows < 0) Fail("CovarianceAccumulator::Add: negative row count ", n_rows);
  if (dim_ == 0) *this = CovarianceAccumulator(dim);
  if (dim != dim_) Fail("CovarianceAccumulator::Add: dim ", dim, " != accumulator dim ", dim_);
  const size_t d = static_cast<size_t>(dim);
  for (int64_t r0 = 0; r0 < n_rows; r0 += kBlockRows) {
    const int64_t rows = std::min(kBlockRows, n_rows - r0);
    const float* xb = x + static_cast<size_t>(r0) * d;
    std::vector<double> bmean(d, 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = xb + static_cast<size_t>(r) * d;
      for (size_t j = 0; j < d; ++j) {
        if (!std::isfinite(row[j])) {
          Fail("CovarianceAccumulator::Add: non-finite value at row ", n_ + r0 + r, " column ", j);
        }
        bmean[j] += row[j];
      }
    }
    for (size_t j = 0; j < d; ++j) bmean[j] /= static_cast<double>(rows);
    block_.resize(static_cast<size_t>(rows) * d);
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = xb + static_cast<size_t>(r) * d;
      double* c = block_.data() + static_cast<size_t>(r) * d;
      for (size_t j = 0; j < d; ++j) c[j] = static_cast<double>(row[j]) - bmean[j];
    }
    // M2 += C^T C (upper triangle), then the Chan cross term d d^T n_a n_b / n.
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, static_cast<int>(rows), 1.0,
                block_.data(), dim, 1.0, m2_.data(), dim);
    const double na = static_cast<double>(n_), nb = static_cast<double>(rows), n = na + nb;
    if (n_ > 0) {
      std::vector<double> delta(d);
      for (size_t j = 0; j < d; ++j) delta[j] = bmean[j] - mean_[j];
      cblas_dsyr(CblasRowMajor, CblasUpper, dim, na * nb / n, delta.data(), 1, m2_.data(), dim);
      for (size_t j = 0; j < d; ++j) mean_[j] += delta[j] * (nb / n);
    } else {
      mean_ = bmean;
    }
    n_ += rows;
  }
}

void CovarianceAccumulator::Merge(const CovarianceAccumulator& other) {
  if (other.n_ == 0) {
    if (dim_ == 0 && other.dim_ != 0) *this = CovarianceAccumulator(other.dim_);
    if (other.dim_ != 0 && other.dim_ != dim_) {
      Fail("CovarianceAccumulator::Merge: dim ", other.dim_, " != ", dim_);
    }
    return;
  }
  if (n_ == 0) {
    if (dim_ != 0 && dim_ != other.dim_) {
      Fail("CovarianceAccumulator::Merge: dim ", other.dim_, " != ", dim_);
    }
    dim_ = other.dim_;
    n_ = other.n_;
    mean_ = other.mean_;
    m2_ = other.m2_;
    return;
  }
  if (other.dim_ != dim_) Fail("CovarianceAccumulator::Merge: dim ", other.dim_, " != ", dim_);
  const size_t d = static_cast<size_t>(dim_);
  const double na = static_cast<double>(n_), nb = static_cast<double>(other.n_), n = na + nb;
  std::vector<double> delta(d);
  for (size_t j = 0; j < d; ++j) delta[j] = other.mean_[j] - mean_[j];
  for (size_t i = 0; i < d; ++i) {
    for (size_t j = i; j < d; ++j) m2_[i * d + j] += other.m2_[i * d + j];
  }
  cblas_dsyr(CblasRowMajor, CblasUpper, dim_, na * nb / n, delta.data(), 1, m2_.data(), dim_);
  for (size_t j = 0; j < d; ++j) mean_[j] += delta[j] * (nb / n);
  n_ += other.n_;
}

std::vector<double> CovarianceAccumulator::scatter() const {
  const size_t d = static_cast<size_t>(dim_);
  std::vector<double> s(d * d);
  for (size_t i = 0; i < d; ++i) {
    for (size_t j = i; j < d; ++j) s[i * d + j] = s[j * d + i] = m2_[i * d + j];
  }
  return s;
}

std::vector<double> CovarianceAccumulator::covariance(int ddof) const {
  if (ddof < 0) Fail("covariance: ddof must be >= 0, got ", ddof);
  if (n_ - ddof <= 0) {
    Fail("covariance: need more than ", ddof, " vectors, have ", n_);
  }
  std::vector<double> s = scatter();
  const double inv = 1.0 / static_cast<double>(n_ - ddof);
  for (double& v : s) v *= inv;
  return s;
}

WhiteningKernel FitWhitening(const CovarianceAccumulator& stats, const WhiteningOptions& opt) {
  if (stats.dim() <= 0 || stats.count() == 0) Fail("whitening fit: no vectors were accumulated");
  if (!(opt.rel_floor > 0) || opt.rel_floor >= 1) {
    Fail("whitening fit: rel_floor must be in (0, 1), got ", opt.rel_floor);
  }
  const int n = stats.dim();
  const size_t d = static_cast<size_t>(n);
  std::vector<double> a = stats.covariance(opt.ddof);  // symmetric: row- and column-major agree
  std::vector<double> w(d);
  const char jobz = 'V', uplo = 'U';
  int info = 0, lwork = -1, liwork = -1, iwork_query = 0;
  double work_query = 0;
  dsyevd_(&jobz, &uplo, &n, a.data(), &n, w.data(), &work_query, &lwork, &iwork_query, &liwork,
          &info, 1, 1);
  if (info != 0) Fail("whitening fit: LAPACK dsyevd workspace query failed (info ", info, ")");
  lwork = static_cast<int>(work_query) + 1;
  liwork = iwork_query;
  std::vector<double> work(static_cast<size_t>(lwork));
  std::vector<int> iwork(static_cast<size_t>(std::max(liwork, 1)));
  dsyevd_(&jobz, &uplo, &n, a.data(), &n, w.data(), work.data(), &lwork, iwork.data(), &liwork,
          &info, 1, 1);
  if (info != 0) {
    Fail("whitening fit: LAPACK dsyevd failed (info ", info, ") on a ", n, "x", n, " covariance");
  }
  const double lmax = w[d - 1];
  if (!(lmax > 0) || !std::isfinite(lmax)) {
    Fail("whitening fit: covariance of ", stats.count(),
         " vectors is zero (all vectors identical?); cannot whiten");
  }
  WhiteningKernel k;
  k.dim = n;
  k.count = stats.count();
  k.mu = stats.mean();
  k.eigenvalues.resize(d);
  k.W.resize(d * d);
  const double floor = opt.rel_floor * lmax;
  // dsyevd: ascending eigenvalues, eigenvector j in column j of the column-major `a`.
  for (size_t c = 0; c < d; ++c) {
    const size_t j = d - 1 - c;
    double lam = w[j];
    if (lam < floor) {
      lam = floor;
      ++k.num_floored;
    }
    k.eigenvalues[c] = lam;
    const double s = 1.0 / std::sqrt(lam);
    for (size_t i = 0; i < d; ++i) k.W[i * d + c] = a[j * d + i] * s;
  }
  return k;
}

WhiteningKernel FitWhitening(const float* x, int64_t n, int dim, const WhiteningOptions& opt) {
  CovarianceAccumulator acc(dim);
  acc.Add(x, n, dim);
  return FitWhitening(acc, opt);
}

void WhiteningKernel::Apply(const float* x, int n, int k, float* out, bool l2_normalize) const {
  if (dim <= 0 || mu.size() != static_cast<size_t>(dim) ||
      W.size() != static_cast<size_t>(dim) * dim) {
    Fail("WhiteningKernel::Apply: kernel is empty or inconsistent (dim ", dim, ")");
  }
  if (k < 0) k = dim;
  if (k == 0 || k > dim) Fail("WhiteningKernel::Apply: k must be in [1, ", dim, "], got ", k);
  if (n < 0) Fail("WhiteningKernel::Apply: negative row count ", n);
  const size_t d = static_cast<size_t>(dim), kk = static_cast<size_t>(k);
  const int block = static_cast<int>(kBlockRows);
  std::vector<double> c, y;
  for (int r0 = 0; r0 < n; r0 += block) {
    const int rows = std::min(block, n - r0);
    c.resize(static_cast<size_t>(rows) * d);
    y.resize(static_cast<size_t>(rows) * kk);
    for (int r = 0; r < rows; ++r) {
      const float* row = x + static_cast<size_t>(r0 + r) * d;
      for (size_t j = 0; j < d; ++j) c[r * d + j] = static_cast<double>(row[j]) - mu[j];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, k, dim, 1.0, c.data(), dim,
                W.data(), dim, 0.0, y.data(), k);
    for (int r = 0; r < rows; ++r) {
      const double* yr = y.data() + static_cast<size_t>(r) * kk;
      float* o = out + static_cast<size_t>(r0 + r) * kk;
      double scale = 1.0;
      if (l2_normalize) {
        double ss = 0;
        for (size_t j = 0; j < kk; ++j) ss += yr[j] * yr[j];
        scale = 1.0 / std::max(std::sqrt(ss), 1e-8);
      }
      for (size_t j = 0; j < kk; ++j) o[j] = static_cast<float>(yr[j] * scale);
    }
  }
}

void WhiteningKernel::Save(const std::string& path) const {
  if (dim <= 0 || mu.size() != static_cast<size_t>(dim) ||
      W.size() != static_cast<size_t>(dim) * dim ||
      eigenvalues.size() != static_cast<size_t>(dim)) {
    Fail("WhiteningKernel::Save(", path, "): kernel is empty or inconsistent (dim ", dim, ")");
  }
  safetensors::Writer w;
  const int64_t d = dim;
  w.Add("mu", safetensors::DType::kF64, {d}, mu.data(), mu.size() * sizeof(double));
  w.Add("W", safetensors::DType::kF64, {d, d}, W.data(), W.size() * sizeof(double));
  w.Add("eigenvalues", safetensors::DType::kF64, {d}, eigenvalues.data(),
        eigenvalues.size() * sizeof(double));
  w.SetMetadata("format", "roformer-whitening");
  w.SetMetadata("version", "1");
  w.SetMetadata("count", std::to_string(count));
  w.SetMetadata("num_floored", std::to_string(num_floored));
  w.WriteFile(path);
}

namespace {

std::vector<double> ReadF64(const safetensors::Reader& r, const std::string& name,
                            const std::vector<int64_t>& shape) {
  const safetensors::TensorInfo& info = r.info(name);
  if (info.dtype != safetensors::DType::kF64) {
    Fail(r.origin(), ": tensor '", name, "' has dtype ", safetensors::DTypeName(info.dtype),
         ", expected F64");
  }
  if (info.shape != shape) {
    Fail(r.origin(), ": tensor '", name, "' has shape ", safetensors::ShapeString(info.shape),
         ", expected ", safetensors::ShapeString(shape));
  }
  std::span<const uint8_t> raw = r.raw(name);
  std::vector<double> v(raw.size() / sizeof(double));
  std::memcpy(v.data(), raw.data(), v.size() * sizeof(double));
  for (double x : v) {
    if (!std::isfinite(x)) Fail(r.origin(), ": tensor '", name, "' contains non-finite values");
  }
  return v;
}

int64_t MetaInt(const safetensors::Reader& r, const std::string& key) {
  auto it = r.metadata().find(key);
  if (it == r.metadata().end()) return 0;
  try {
    size_t pos = 0;
    const long long v = std::stoll(it->second, &pos);
    if (pos != it->second.size() || v < 0) throw std::invalid_argument(key);
    return v;
  } catch (const std::exception&) {
    Fail(r.origin(), ": metadata '", key, "' is not a non-negative integer: '", it->second, "'");
  }
}

}  // namespace

WhiteningKernel WhiteningKernel::Load(const std::string& path) {
  safetensors::Reader r = safetensors::Reader::Open(path);
  auto fmt = r.metadata().find("format");
  if (fmt == r.metadata().end() || fmt->second != "roformer-whitening") {
    Fail(path, ": not a whitening kernel (metadata format != \"roformer-whitening\")");
  }
  auto ver = r.metadata().find("version");
  if (ver == r.metadata().end() || ver->second != "1") {
    Fail(path, ": unsupported whitening kernel version '",
         ver == r.metadata().end() ? "" : ver->second, "' (expected 1)");
  }
  const safetensors::TensorInfo& mi = r.info("mu");
  if (mi.shape.size() != 1 || mi.shape[0] <= 0 || mi.shape[0] > (1 << 16)) {
    Fail(path, ": tensor 'mu' has shape ", safetensors::ShapeString(mi.shape),
         ", expected [dim] with 0 < dim <= 65536");
  }
  WhiteningKernel k;
  k.dim = static_cast<int>(mi.shape[0]);
  const int64_t d = k.dim;
  k.mu = ReadF64(r, "mu", {d});
  k.W = ReadF64(r, "W", {d, d});
  k.eigenvalues = ReadF64(r, "eigenvalues", {d});
  k.count = MetaInt(r, "count");
  k.num_floored = static_cast<int>(std::min<int64_t>(MetaInt(r, "num_floored"), d));
  return k;
}

}  // namespace roformer::sts
