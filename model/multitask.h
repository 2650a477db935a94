// Multi-task plumbing shared by pretraining (MLM + SOP, model/trainer.cc) and multi-task CLUE
// fine-tuning (model/multitask_finetune.cc): the `multitask` config block turned into
// LossWeighting options (model/loss_weighting.h), the norm of a task's gradient over the SHARED
// parameters only (global under TP and DP), and the task sampler of mixed batches.
//
// Sampling is a pure function of (seed, step): every DP rank and a resumed run see the same tasks
// and the same examples, with no sampler state to checkpoint.
//   mixed         every step takes counts_i examples of every task, counts split from the batch by
//                 the ratios (largest remainder, at least 1 each). The weighting schemes that
//                 compare tasks (realtime, genmean, gradnorm, ...) see every task in every step.
//   round_robin   step t takes the whole batch from task t mod n.
//   proportional  step t takes the whole batch from task i drawn with probability ratio_i / Σ
//                 from a Philox counter keyed by (seed, t).
// A task's examples are consumed in a per-task shuffled order (ShuffledOrder of (seed + task,
// epoch of that task)), so its cursor (examples consumed before step t) determines them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/loss_weighting.h"
#include "runtime/config.pb.h"
#include "runtime/param_store.h"

namespace roformer {

class Communicator;
class GradReducer;

// Comma-separated numbers ("1,0.5"); "" gives {}. Error names `field` on a bad entry.
std::vector<double> ParseNumberList(const std::string& text, const std::string& field);

// Options for `num_tasks` tasks from the config block (`field` prefixes error messages, e.g.
// "multitask"). num_classes[i]: K of task i (for init_batches = 0, the log K theory); priors[i]:
// label counts or probabilities of task i (needed by "prior" only, may be empty otherwise).
LossWeightingOptions MakeLossWeightingOptions(const config::MultitaskConfig& cfg, int num_tasks,
                                              const std::vector<int>& num_classes,
                                              const std::vector<std::vector<double>>& priors,
                                              const std::string& field = "multitask");

// True when the config is the default: fixed weights that are all 1 (pretraining keeps its
// historical single-pass, bit-identical loss = MLM + SOP path).
bool IsUnitFixedWeighting(const config::MultitaskConfig& cfg);

// L2 norm of the reduced gradients (store->grads() after GradReducer::FinishBackward) restricted
// to the tensors with shared[i] != 0 (index into store.infos()), identical on every rank: with
// ZeRO-1 (sharded_dp) only the reducer's owned ranges are summed and all-reduced over `dp`;
// with `tp` (size > 1) TP-sharded tensors are summed over TP and replicated ones counted once —
// the placement rule of GradReducer::GlobalGradNorm.
double SharedGradNorm(const ParamStore& store, const std::vector<char>& shared,
                      const GradReducer& reducer, bool sharded_dp, Communicator* dp,
                      Communicator* tp);

class TaskSampler {
 public:
  enum class Mode { kMixed, kRoundRobin, kProportional };
  // `mode`: "mixed" | "round_robin" | "proportional" (Error naming `field` + ".sampling").
  // ratios: one per task, > 0 (empty = proportional to train_sizes).
  TaskSampler(const std::string& mode, std::vector<double> ratios, std::vector<int64_t> train_sizes,
              int batch, uint64_t seed, const std::string& field = "multitask");

  int num_tasks() const { return static_cast<int>(sizes_.size()); }
  Mode mode() const { return mode_; }
  const std::vector<double>& ratios() const { return ratios_; }
  // Examples of each task in step `step` (size n; zero for tasks absent from the step).
  void CountsAt(int64_t step, std::vector<int>* counts) const;
  // Examples of each task consumed by steps [0, step) (O(step) for proportional).
  void CursorsAt(int64_t step, std::vector<int64_t>* cursors) const;
  // Index into task `task`'s training examples of its `position`-th consumed example.
  int64_t ExampleAt(int task, int64_t position) const;

 private:
  Mode mode_;
  std::vector<double> ratios_;
  std::vector<int64_t> sizes_;
  int batch_;
  uint64_t seed_;
  std::vector<int> mixed_counts_;
  // Cache of one shuffled epoch per task (ExampleAt is called in order).
  mutable std::vector<int64_t> cached_epoch_;
  mutable std::vector<std::vector<int64_t>> cached_order_;
};

}  // namespace roformer
