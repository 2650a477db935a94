#include "model/multitask.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <sstream>

#include "model/finetune.h"
#include "runtime/comm.h"
#include "runtime/error.h"
#include "runtime/grad_reducer.h"
#include "runtime/philox.h"

namespace roformer {

std::vector<double> ParseNumberList(const std::string& text, const std::string& field) {
  std::vector<double> out;
  if (text.empty()) return out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const char* s = item.c_str();
    char* end = nullptr;
    const double v = std::strtod(s, &end);
    while (end && (*end == ' ' || *end == '\t')) ++end;
    if (end == s || !end || *end != '\0' || !std::isfinite(v))
      Fail(field, ": '", item, "' is not a number (expected comma-separated numbers, e.g. 1,0.5)");
    out.push_back(v);
  }
  return out;
}

LossWeightingOptions MakeLossWeightingOptions(const config::MultitaskConfig& cfg, int num_tasks,
                                              const std::vector<int>& num_classes,
                                              const std::vector<std::vector<double>>& priors,
                                              const std::string& field) {
  LossWeightingOptions o;
  o.scheme = ParseWeightingScheme(cfg.weighting());
  std::vector<double> w = ParseNumberList(cfg.weights(), field + ".weights");
  if (!w.empty() && static_cast<int>(w.size()) != num_tasks)
    Fail(field, ".weights: ", w.size(), " weights for ", num_tasks, " tasks");
  for (double a : w)
    if (a < 0) Fail(field, ".weights: weight ", a, " < 0");
  // Empty means 1 per task (the plain sum), not LossWeighting's 1/n: pretraining's historical
  // objective is MLM + SOP.
  o.fixed_weights = w.empty() ? std::vector<double>(num_tasks, 1.0) : w;
  if (cfg.init_batches() < 0) Fail(field, ".init_batches must be >= 0, got ", cfg.init_batches());
  if (cfg.init_batches() == 0) {
    if (static_cast<int>(num_classes.size()) != num_tasks)
      Fail(field, ".init_batches = 0 needs the class count of every task");
    for (int k : num_classes)
      if (k < 2)
        Fail(field, ".init_batches = 0 (theory: log K) needs classification tasks, got K = ", k);
    o.num_classes = num_classes;
  } else {
    o.num_classes.assign(num_tasks, 0);
    o.init_batches = cfg.init_batches();
  }
  if (o.scheme == WeightingScheme::kPrior) {
    if (static_cast<int>(priors.size()) != num_tasks)
      Fail(field, ".weighting = prior: no label prior for the tasks");
    o.label_priors = priors;
  }
  if (!std::isfinite(cfg.gamma())) Fail(field, ".gamma must be finite");
  o.gamma = cfg.gamma();
  if (!(cfg.uncertainty_lr() >= 0)) Fail(field, ".uncertainty_lr must be >= 0");
  o.uncertainty_lr = cfg.uncertainty_lr();
  return o;
}

bool IsUnitFixedWeighting(const config::MultitaskConfig& cfg) {
  if (cfg.weighting() != "fixed") return false;
  for (double a : ParseNumberList(cfg.weights(), "multitask.weights"))
    if (a != 1.0) return false;
  return true;
}

double SharedGradNorm(const ParamStore& store, const std::vector<char>& shared,
                      const GradReducer& reducer, bool sharded_dp, Communicator* dp,
                      Communicator* tp) {
  const bool split_tp = tp != nullptr && tp->size() > 1;
  const float* g = store.grads().data();
  const std::vector<FlatRange> owned = reducer.OwnedRanges();
  double parts[2] = {0, 0};  // TP-sharded, TP-replicated
  const auto& infos = store.infos();
  for (size_t t = 0; t < infos.size(); ++t) {
    if (!shared[t]) continue;
    const ParamInfo& info = infos[t];
    double s = 0;
    for (const FlatRange& r : owned) {
      const int64_t b = std::max(r.begin, info.offset);
      const int64_t e = std::min(r.end, info.offset + info.numel);
      for (int64_t i = b; i < e; ++i) s += static_cast<double>(g[i]) * g[i];
    }
    parts[info.placement == Placement::kReplicated ? 1 : 0] += s;
  }
  if (sharded_dp && dp != nullptr && dp->size() > 1) dp->AllReduce(std::span<double>(parts, 2));
  if (split_tp) {
    // Replicated gradients are identical on every TP rank: count them once.
    if (tp->rank() != 0) parts[1] = 0;
    tp->AllReduce(std::span<double>(parts, 2));
  }
  return std::sqrt(parts[0] + parts[1]);
}

TaskSampler::TaskSampler(const std::string& mode, std::vector<double> ratios,
                         std::vector<int64_t> train_sizes, int batch, uint64_t seed,
                         const std::string& field)
    : ratios_(std::move(ratios)), sizes_(std::move(train_sizes)), batch_(batch), seed_(seed) {
  const int n = static_cast<int>(sizes_.size());
  if (n == 0) Fail(field, ": no tasks");
  if (mode == "mixed") {
    mode_ = Mode::kMixed;
  } else if (mode == "round_robin") {
    mode_ = Mode::kRoundRobin;
  } else if (mode == "proportional") {
    mode_ = Mode::kProportional;
  } else {
    Fail(field, ".sampling must be mixed | round_robin | proportional, got '", mode, "'");
  }
  for (int64_t s : sizes_)
    if (s <= 0) Fail(field, ": a task has no training examples");
  if (ratios_.empty()) {
    for (int64_t s : sizes_) ratios_.push_back(static_cast<double>(s));
  }
  if (static_cast<int>(ratios_.size()) != n)
    Fail(field, ".ratios: ", ratios_.size(), " ratios for ", n, " tasks");
  for (double r : ratios_)
    if (!(r > 0) || !std::isfinite(r)) Fail(field, ".ratios: ratio ", r, " must be > 0");
  if (batch_ < 1) Fail(field, ": batch must be >= 1");
  if (mode_ == Mode::kMixed) {
    if (batch_ < n) Fail(field, ".sampling = mixed: batch ", batch_, " < ", n, " tasks");
    // Largest remainder, then at least one example per task (taken from the largest counts).
    const double total = std::accumulate(ratios_.begin(), ratios_.end(), 0.0);
    mixed_counts_.assign(n, 0);
    std::vector<std::pair<double, int>> rem;
    int given = 0;
    for (int i = 0; i < n; ++i) {
      const double exact = batch_ * ratios_[i] / total;
      mixed_counts_[i] = static_cast<int>(std::floor(exact));
      given += mixed_counts_[i];
      rem.push_back({-(exact - mixed_counts_[i]), i});
    }
    std::sort(rem.begin(), rem.end());
    for (int k = 0; given < batch_; ++k, ++given) ++mixed_counts_[rem[k % n].second];
    for (int i = 0; i < n; ++i) {
      while (mixed_counts_[i] < 1) {
        const int big = static_cast<int>(
            std::max_element(mixed_counts_.begin(), mixed_counts_.end()) - mixed_counts_.begin());
        --mixed_counts_[big];
        ++mixed_counts_[i];
      }
    }
  }
  cached_epoch_.assign(n, -1);
  cached_order_.resize(n);
}

void TaskSampler::CountsAt(int64_t step, std::vector<int>* counts) const {
  const int n = num_tasks();
  counts->assign(n, 0);
  switch (mode_) {
    case Mode::kMixed:
      *counts = mixed_counts_;
      return;
    case Mode::kRoundRobin:
      (*counts)[step % n] = batch_;
      return;
    case Mode::kProportional: {
      const double total = std::accumulate(ratios_.begin(), ratios_.end(), 0.0);
      const double u =
          Uniform01(seed_ ^ 0x6d7461736b73ull /* "mtasks" */, static_cast<uint64_t>(step)) * total;
      double acc = 0;
      int pick = n - 1;
      for (int i = 0; i < n; ++i) {
        acc += ratios_[i];
        if (u < acc) {
          pick = i;
          break;
        }
      }
      (*counts)[pick] = batch_;
      return;
    }
  }
}

void TaskSampler::CursorsAt(int64_t step, std::vector<int64_t>* cursors) const {
  const int n = num_tasks();
  cursors->assign(n, 0);
  if (mode_ == Mode::kMixed) {
    for (int i = 0; i < n; ++i) (*cursors)[i] = step * mixed_counts_[i];
    return;
  }
  if (mode_ == Mode::kRoundRobin) {
    for (int i = 0; i < n; ++i) (*cursors)[i] = batch_ * ((step - i + n - 1) / n);
    return;
  }
  std::vector<int> c;
  for (int64_t s = 0; s < step; ++s) {
    CountsAt(s, &c);
    for (int i = 0; i < n; ++i) (*cursors)[i] += c[i];
  }
}

int64_t TaskSampler::ExampleAt(int task, int64_t position) const {
  const int64_t n = sizes_[task];
  const int64_t epoch = position / n;
  if (cached_epoch_[task] != epoch) {
    cached_order_[task] =
        ShuffledOrder(n, seed_ + static_cast<uint64_t>(task), static_cast<uint64_t>(epoch));
    cached_epoch_[task] = epoch;
  }
  return cached_order_[task][position % n];
}

}  // namespace roformer
