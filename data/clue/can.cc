#include "data/clue/can.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "runtime/error.h"

namespace roformer {

double TopKEntropy(const double* row, int64_t c, int k) {
  k = static_cast<int>(std::clamp<int64_t>(k, 1, c));
  if (k <= 1) return 0.0;
  std::vector<double> top(row, row + c);
  std::partial_sort(top.begin(), top.begin() + k, top.end(), std::greater<double>());
  double s = 0;
  for (int i = 0; i < k; ++i) s += top[i];
  if (s <= 0) return 1.0;  // no mass at all: maximally uncertain
  double h = 0;
  for (int i = 0; i < k; ++i) {
    const double p = top[i] / s;
    if (p > 0) h -= p * std::log(p);
  }
  return h / std::log(static_cast<double>(k));
}

CanResult ApplyCan(const std::vector<double>& probs, int64_t n, int64_t c,
                   const std::vector<double>& prior, const CanOptions& opt) {
  if (n < 0 || c <= 0 || static_cast<int64_t>(probs.size()) != n * c) {
    Fail("CAN: probability matrix has ", probs.size(), " values, expected ", n, " x ", c);
  }
  if (static_cast<int64_t>(prior.size()) != c) {
    Fail("CAN: prior has ", prior.size(), " classes, predictions have ", c);
  }
  if (opt.iterations < 0) Fail("CAN: iterations must be >= 0");
  CanResult r;
  r.n = n;
  r.c = c;
  r.probs = probs;
  r.uncertainty.resize(n);
  r.confident.resize(n);
  std::vector<int64_t> conf, unconf;
  for (int64_t i = 0; i < n; ++i) {
    r.uncertainty[i] = TopKEntropy(&probs[i * c], c, opt.k);
    r.confident[i] = r.uncertainty[i] < opt.tau ? 1 : 0;
    (r.confident[i] ? conf : unconf).push_back(i);
  }
  r.num_confident = static_cast<int64_t>(conf.size());
  r.num_uncertain = static_cast<int64_t>(unconf.size());
  if (unconf.empty() || opt.iterations == 0) return r;

  const int64_t m = r.num_confident;
  const double rows = static_cast<double>(m + 1);
  auto powa = [&](double x) { return opt.alpha == 1.0 ? x : std::pow(x, opt.alpha); };
  // First-iteration column sums of the confident rows (after the alpha power) are shared by all
  // uncertain samples; later iterations depend on j and are recomputed.
  std::vector<double> conf_colsum(c, 0.0);
  for (int64_t i : conf) {
    for (int64_t k = 0; k < c; ++k) conf_colsum[k] += powa(probs[i * c + k]);
  }

#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t u = 0; u < r.num_uncertain; ++u) {
    const int64_t j = unconf[u];
    std::vector<double> y(c), scale(c);
    for (int64_t k = 0; k < c; ++k) y[k] = powa(probs[j * c + k]);
    if (opt.iterations == 1) {
      // Only the last row is needed: scale columns by prior / column mean, then normalise.
      double sum = 0;
      for (int64_t k = 0; k < c; ++k) {
        const double mean = (conf_colsum[k] + y[k]) / rows;
        y[k] = mean > 0 ? y[k] / mean * prior[k] : 0.0;
        sum += y[k];
      }
      if (sum > 0) {
        for (int64_t k = 0; k < c; ++k) y[k] /= sum;
      }
    } else {
      std::vector<double> L((m + 1) * c);
      for (int64_t a = 0; a < m; ++a) {
        std::copy_n(&probs[conf[a] * c], c, &L[a * c]);
      }
      std::copy_n(&probs[j * c], c, &L[m * c]);
      for (int it = 0; it < opt.iterations; ++it) {
        if (opt.alpha != 1.0) {
          for (double& v : L) v = std::pow(v, opt.alpha);
        }
        std::fill(scale.begin(), scale.end(), 0.0);
        for (int64_t a = 0; a <= m; ++a) {
          for (int64_t k = 0; k < c; ++k) scale[k] += L[a * c + k];
        }
        for (int64_t k = 0; k < c; ++k) {
          const double mean = scale[k] / rows;
          scale[k] = mean > 0 ? prior[k] / mean : 0.0;
        }
        for (int64_t a = 0; a <= m; ++a) {
          double sum = 0;
          for (int64_t k = 0; k < c; ++k) {
            L[a * c + k] *= scale[k];
            sum += L[a * c + k];
          }
          if (sum > 0) {
            for (int64_t k = 0; k < c; ++k) L[a * c + k] /= sum;
          }
        }
      }
      std::copy_n(&L[m * c], c, y.begin());
    }
    std::copy_n(y.begin(), c, &r.probs[j * c]);
  }
  return r;
}

std::vector<double> PriorFromLabels(const std::vector<int>& labels, int num_classes) {
  if (num_classes <= 0) Fail("CAN prior: num_classes must be positive");
  std::vector<double> prior(num_classes, 0.0);
  int64_t n = 0;
  for (int l : labels) {
    if (l < 0) continue;
    if (l >= num_classes) Fail("CAN prior: label ", l, " outside [0, ", num_classes, ")");
    prior[l] += 1;
    ++n;
  }
  if (n == 0) Fail("CAN prior: no training labels");
  for (double& p : prior) p /= static_cast<double>(n);
  return prior;
}

std::vector<int> ArgmaxRows(const std::vector<double>& probs, int64_t n, int64_t c) {
  std::vector<int> out(n, 0);
  for (int64_t i = 0; i < n; ++i) {
    const double* row = &probs[i * c];
    out[i] = static_cast<int>(std::max_element(row, row + c) - row);
  }
  return out;
}

CanReport CanAccuracy(const std::vector<double>& probs_before, const CanResult& after,
                      const std::vector<int>& labels) {
  if (static_cast<int64_t>(labels.size()) != after.n) {
    Fail("CAN: ", labels.size(), " labels for ", after.n, " predictions");
  }
  const std::vector<int> before = ArgmaxRows(probs_before, after.n, after.c);
  const std::vector<int> now = ArgmaxRows(after.probs, after.n, after.c);
  CanReport rep;
  int64_t right_b = 0, right_a = 0, right_conf = 0, unc_b = 0, unc_a = 0;
  for (int64_t i = 0; i < after.n; ++i) {
    if (after.confident[i] == 0 && before[i] != now[i]) ++rep.changed;
    if (labels[i] < 0) continue;
    ++rep.count;
    const bool b = before[i] == labels[i], a = now[i] == labels[i];
    right_b += b;
    right_a += a;
    if (after.confident[i]) {
      ++rep.confident;
      right_conf += b;
    } else {
      ++rep.uncertain;
      unc_b += b;
      unc_a += a;
    }
  }
  auto frac = [](int64_t x, int64_t n) { return n ? static_cast<double>(x) / n : 0.0; };
  rep.acc_before = frac(right_b, rep.count);
  rep.acc_after = frac(right_a, rep.count);
  rep.acc_confident = frac(right_conf, rep.confident);
  rep.acc_uncertain_before = frac(unc_b, rep.uncertain);
  rep.acc_uncertain_after = frac(unc_a, rep.uncertain);
  return rep;
}

}  // namespace roformer
