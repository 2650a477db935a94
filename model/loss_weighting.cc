#include "model/loss_weighting.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <utility>

#include "runtime/error.h"

namespace roformer {
namespace {

constexpr std::pair<const char*, WeightingScheme> kSchemes[] = {
    {"fixed", WeightingScheme::kFixed},
    {"init", WeightingScheme::kInit},
    {"prior", WeightingScheme::kPrior},
    {"realtime", WeightingScheme::kRealtime},
    {"genmean", WeightingScheme::kGenMean},
    {"gradnorm", WeightingScheme::kGradNorm},
    {"uncertainty", WeightingScheme::kUncertainty}};

}  // namespace

WeightingScheme ParseWeightingScheme(const std::string& name) {
  for (const auto& [n, s] : kSchemes) {
    if (name == n) return s;
  }
  std::string valid;
  for (const auto& [n, s] : kSchemes) valid += std::string(valid.empty() ? "" : " | ") + n;
  Fail("unknown loss weighting scheme '", name, "' (valid: ", valid, ")");
}

const char* WeightingSchemeName(WeightingScheme scheme) {
  for (const auto& [n, s] : kSchemes) {
    if (s == scheme) return n;
  }
  return "?";
}

LossWeighting::LossWeighting(int num_tasks, LossWeightingOptions options)
    : n_(num_tasks),
      opt_(std::move(options)),
      weights_(std::max(num_tasks, 0), 0.0),
      ones_(std::max(num_tasks, 0), 1.0) {
  if (n_ <= 0) Fail("loss weighting: num_tasks must be >= 1, got ", n_);
  if (!(opt_.eps > 0)) Fail("loss weighting: eps must be > 0");
  switch (opt_.scheme) {
    case WeightingScheme::kFixed:
      if (opt_.fixed_weights.empty()) opt_.fixed_weights.assign(n_, 1.0 / n_);
      if (static_cast<int>(opt_.fixed_weights.size()) != n_)
        Fail("loss weighting fixed: ", opt_.fixed_weights.size(), " weights for ", n_, " tasks");
      for (int i = 0; i < n_; ++i) {
        double a = opt_.fixed_weights[i];
        if (!std::isfinite(a) || a < 0)
          Fail("loss weighting fixed: task ", i, " weight ", a, " < 0");
      }
      break;
    case WeightingScheme::kInit:
      if (opt_.init_batches < 1) Fail("loss weighting init: init_batches must be >= 1");
      if (opt_.num_classes.empty()) opt_.num_classes.assign(n_, 0);
      if (static_cast<int>(opt_.num_classes.size()) != n_)
        Fail("loss weighting init: ", opt_.num_classes.size(), " num_classes for ", n_, " tasks");
      init_.assign(n_, 1.0);
      init_sum_.assign(n_, 0.0);
      for (int i = 0; i < n_; ++i) {
        int k = opt_.num_classes[i];
        if (k == 1 || k < 0)
          Fail("loss weighting init: task ", i, " num_classes ", k, " (need 0 or >= 2)");
        if (k >= 2) init_[i] = std::log(static_cast<double>(k));
      }
      break;
    case WeightingScheme::kPrior:
      if (static_cast<int>(opt_.label_priors.size()) != n_)
        Fail("loss weighting prior: ", opt_.label_priors.size(), " label priors for ", n_,
             " tasks");
      prior_entropy_.assign(n_, 0.0);
      for (int i = 0; i < n_; ++i) {
        double sum = 0;
        for (double p : opt_.label_priors[i]) {
          if (!std::isfinite(p) || p < 0)
            Fail("loss weighting prior: task ", i, " probability ", p);
          sum += p;
        }
        if (!(sum > 0)) Fail("loss weighting prior: task ", i, " prior sums to 0");
        double h = 0;
        for (double p : opt_.label_priors[i]) {
          double q = p / sum;  // normalise counts or slightly-off probabilities
          if (q > 0) h -= q * std::log(q);
        }
        if (!(h > 0)) Fail("loss weighting prior: task ", i, " prior has zero entropy (one label)");
        prior_entropy_[i] = h;
      }
      break;
    case WeightingScheme::kGenMean:
      if (!std::isfinite(opt_.gamma)) Fail("loss weighting genmean: gamma must be finite");
      break;
    case WeightingScheme::kGradNorm:
      last_norms_.assign(n_, 1.0);
      break;
    case WeightingScheme::kUncertainty:
      if (opt_.init_log_var.empty()) opt_.init_log_var.assign(n_, 0.0);
      if (static_cast<int>(opt_.init_log_var.size()) != n_)
        Fail("loss weighting uncertainty: ", opt_.init_log_var.size(), " log variances for ", n_,
             " tasks");
      s_ = opt_.init_log_var;
      m_.assign(n_, 0.0);
      v_.assign(n_, 0.0);
      break;
    case WeightingScheme::kRealtime:
      break;
  }
}

void LossWeighting::CheckLosses(const std::vector<double>& losses) const {
  if (static_cast<int>(losses.size()) != n_)
    Fail("loss weighting: ", losses.size(), " losses for ", n_, " tasks");
  for (int i = 0; i < n_; ++i) {
    double l = losses[i];
    if (!std::isfinite(l)) Fail("loss weighting: task ", i, " loss is not finite (", l, ")");
    // The normalising schemes divide by / take logs of L_i, so they need positive losses.
    if (opt_.scheme != WeightingScheme::kFixed && opt_.scheme != WeightingScheme::kUncertainty &&
        l < 0)
      Fail("loss weighting ", WeightingSchemeName(opt_.scheme), ": task ", i, " loss ", l, " < 0");
  }
}

void LossWeighting::ComputeWeights(const std::vector<double>& losses,
                                   const std::vector<double>& grad_norms) {
  CheckLosses(losses);
  const double eps = opt_.eps;
  switch (opt_.scheme) {
    case WeightingScheme::kFixed:
      for (int i = 0; i < n_; ++i) weights_[i] = opt_.fixed_weights[i];
      break;
    case WeightingScheme::kInit:
      for (int i = 0; i < n_; ++i) {
        double init = init_[i];
        // Still estimating: use the running mean including this batch.
        if (opt_.num_classes[i] == 0 && steps_ < opt_.init_batches)
          init = (init_sum_[i] + losses[i]) / static_cast<double>(steps_ + 1);
        weights_[i] = 1.0 / std::max(init, eps);
      }
      break;
    case WeightingScheme::kPrior:
      for (int i = 0; i < n_; ++i) weights_[i] = 1.0 / prior_entropy_[i];
      break;
    case WeightingScheme::kRealtime:
      for (int i = 0; i < n_; ++i) weights_[i] = 1.0 / std::max(losses[i], eps);
      break;
    case WeightingScheme::kGenMean: {
      const double g = opt_.gamma;
      double gm;
      if (g == 0) {
        double logsum = 0;
        for (double l : losses) logsum += std::log(std::max(l, eps));
        gm = std::exp(logsum / n_);
      } else {
        // G = M ((1/n) Σ (L_i/M)^γ)^{1/γ} with M = max (γ>0) or min (γ<0) keeps the powers in range
        // for large |γ|.
        double m = g > 0 ? *std::max_element(losses.begin(), losses.end())
                         : *std::min_element(losses.begin(), losses.end());
        m = std::max(m, eps);
        double s = 0;
        for (double l : losses) s += std::pow(std::max(l, eps) / m, g);
        gm = m * std::pow(s / n_, 1.0 / g);
      }
      for (int i = 0; i < n_; ++i)
        weights_[i] = std::pow(std::max(losses[i], eps) / gm, g - 1.0) / n_;
      break;
    }
    case WeightingScheme::kGradNorm:
      if (static_cast<int>(grad_norms.size()) != n_)
        Fail("loss weighting gradnorm: ", grad_norms.size(), " gradient norms for ", n_, " tasks");
      for (int i = 0; i < n_; ++i) {
        double g = grad_norms[i];
        if (!std::isfinite(g) || g < 0)
          Fail("loss weighting gradnorm: task ", i, " gradient norm ", g);
        // A zero shared gradient has no direction to normalise; it contributes nothing.
        weights_[i] = g > 0 ? 1.0 / g : 0.0;
      }
      break;
    case WeightingScheme::kUncertainty:
      for (int i = 0; i < n_; ++i) weights_[i] = std::exp(-s_[i]);
      break;
  }
}

bool LossWeighting::NeedsCurrentLosses() const {
  switch (opt_.scheme) {
    case WeightingScheme::kRealtime:
    case WeightingScheme::kGenMean:
      return true;
    case WeightingScheme::kInit:
      if (steps_ >= opt_.init_batches) return false;
      for (int k : opt_.num_classes) {
        if (k == 0) return true;
      }
      return false;
    default:
      return false;
  }
}

const std::vector<double>& LossWeighting::LossFreeWeights() {
  if (NeedsCurrentLosses() || NeedsGradNorms())
    Fail("loss weighting ", WeightingSchemeName(opt_.scheme),
         ": the weights need this step's losses or gradient norms");
  ComputeWeights(ones_, {});
  return weights_;
}

const std::vector<double>& LossWeighting::Weights(const std::vector<double>& losses,
                                                  const std::vector<double>& grad_norms) {
  ComputeWeights(losses, grad_norms);
  return weights_;
}

const std::vector<double>& LossWeighting::Step(const std::vector<double>& losses,
                                               const std::vector<double>& grad_norms) {
  ComputeWeights(losses, grad_norms);
  if (opt_.scheme == WeightingScheme::kInit && steps_ < opt_.init_batches) {
    for (int i = 0; i < n_; ++i) {
      if (opt_.num_classes[i] != 0) continue;
      init_sum_[i] += losses[i];
      init_[i] = init_sum_[i] / static_cast<double>(steps_ + 1);
    }
  } else if (opt_.scheme == WeightingScheme::kGradNorm) {
    for (int i = 0; i < n_; ++i) last_norms_[i] = grad_norms[i];
  } else if (opt_.scheme == WeightingScheme::kUncertainty) {
    const double t = static_cast<double>(steps_ + 1);
    for (int i = 0; i < n_; ++i) {
      double grad = 1.0 - std::exp(-s_[i]) * losses[i];
      if (opt_.uncertainty_adam) {
        m_[i] = opt_.adam_beta1 * m_[i] + (1 - opt_.adam_beta1) * grad;
        v_[i] = opt_.adam_beta2 * v_[i] + (1 - opt_.adam_beta2) * grad * grad;
        double mh = m_[i] / (1 - std::pow(opt_.adam_beta1, t));
        double vh = v_[i] / (1 - std::pow(opt_.adam_beta2, t));
        s_[i] -= opt_.uncertainty_lr * mh / (std::sqrt(vh) + opt_.adam_eps);
      } else {
        s_[i] -= opt_.uncertainty_lr * grad;
      }
    }
  }
  ++steps_;
  return weights_;
}

std::string LossWeighting::SerializeState() const {
  // An ostringstream rather than string concatenation (GCC 12 -Wrestrict false positive).
  std::ostringstream out;
  out << WeightingSchemeName(opt_.scheme) << ' ' << n_ << ' ' << steps_;
  char buf[32];
  for (const std::vector<double>* v : {&init_, &init_sum_, &last_norms_, &s_, &m_, &v_}) {
    out << ' ' << v->size();
    for (double x : *v) {
      std::snprintf(buf, sizeof(buf), " %.17g", x);
      out << buf;
    }
  }
  return out.str();
}

void LossWeighting::RestoreState(const std::string& text) {
  std::istringstream in(text);
  std::string scheme;
  int n = 0;
  long steps = 0;
  in >> scheme >> n >> steps;
  if (!in || scheme != WeightingSchemeName(opt_.scheme) || n != n_)
    Fail("loss weighting: saved state '", text.substr(0, 40), "' is not for ",
         WeightingSchemeName(opt_.scheme), " with ", n_, " tasks");
  for (std::vector<double>* v : {&init_, &init_sum_, &last_norms_, &s_, &m_, &v_}) {
    size_t k = 0;
    in >> k;
    if (!in || k != v->size()) Fail("loss weighting: malformed saved state");
    for (double& x : *v) in >> x;
  }
  if (!in) Fail("loss weighting: malformed saved state");
  steps_ = steps;
}

std::vector<double> LossWeighting::LogVarGrad(const std::vector<double>& losses) const {
  if (opt_.scheme != WeightingScheme::kUncertainty)
    Fail("loss weighting: LogVarGrad needs the uncertainty scheme");
  CheckLosses(losses);
  std::vector<double> g(n_);
  for (int i = 0; i < n_; ++i) g[i] = 1.0 - std::exp(-s_[i]) * losses[i];
  return g;
}

double LossWeighting::CombinedLoss(const std::vector<double>& losses) const {
  CheckLosses(losses);
  const double eps = opt_.eps;
  double total = 0;
  switch (opt_.scheme) {
    case WeightingScheme::kFixed:
      for (int i = 0; i < n_; ++i) total += opt_.fixed_weights[i] * losses[i];
      return total;
    case WeightingScheme::kInit:
      for (int i = 0; i < n_; ++i) {
        double init = init_[i];
        if (opt_.num_classes[i] == 0 && steps_ == 0) init = losses[i];
        total += losses[i] / std::max(init, eps);
      }
      return total;
    case WeightingScheme::kPrior:
      for (int i = 0; i < n_; ++i) total += losses[i] / prior_entropy_[i];
      return total;
    case WeightingScheme::kRealtime:
      for (double l : losses) total += std::log(std::max(l, eps));
      return total;
    case WeightingScheme::kGenMean: {
      const double g = opt_.gamma;
      if (g == 0) {
        for (double l : losses) total += std::log(std::max(l, eps));
        return std::exp(total / n_);
      }
      double m = g > 0 ? *std::max_element(losses.begin(), losses.end())
                       : *std::min_element(losses.begin(), losses.end());
      m = std::max(m, eps);
      for (double l : losses) total += std::pow(std::max(l, eps) / m, g);
      return m * std::pow(total / n_, 1.0 / g);
    }
    case WeightingScheme::kGradNorm:
      for (int i = 0; i < n_; ++i) total += last_norms_[i] > 0 ? losses[i] / last_norms_[i] : 0.0;
      return total;
    case WeightingScheme::kUncertainty:
      for (int i = 0; i < n_; ++i) total += std::exp(-s_[i]) * losses[i] + s_[i];
      return total;
  }
  return total;
}

}  // namespace roformer
