// Staged pretraining plans (runtime/schedule.proto): parsing, resolving every stage's effective
// config, and checking the whole plan before anything runs, so a bad plan fails at once with the
// plan file, stage and field, instead of hours later at a stage boundary.
//
// Step semantics (what `roformer schedule` and the Trainer do with a resolved plan):
//  * one global optimizer-step counter and one consumed-samples counter for the whole run; stage i
//    covers [first_step, end_step) and its Trainer runs with train.steps = end_step;
//  * the LR schedule of stage i counts from first_step (TrainerOptions::lr_schedule_start): it
//    warms up again from ~0 over its own train.warmup_steps and decays over the stage's length;
//  * Adam's bias-correction count (step - skipped) is kept across stages and growth, as Staged
//    Training does (anchors-growth.md §3.10): mapped moments stay bias-corrected like the small
//    model's, and new parameters' m = v = 0 take their first, large (~3 lr) updates during the
//    re-warmup, when lr is small;
//  * checkpoints record the stage index in TrainState::growth_stage. A checkpoint of stage i at
//    end_step is the boundary: the next invocation grows it (same step, stage i + 1) and goes on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/growth/grow_checkpoint.h"
#include "runtime/config.pb.h"
#include "runtime/schedule.pb.h"

namespace roformer {

struct ResolvedStage {
  int index = 0;
  std::string name;
  std::string where;   // "<plan>: stage <i> (\"<name>\")" for messages
  config::Config cfg;  // effective config; train.steps = end_step (global)
  int64_t first_step = 0, end_step = 0;
  // Entering this stage grows the previous stage's model (shape fields differ); stage 0: false.
  bool grows = false;
  schedule::GrowthOptions growth;
};

struct StagePlan {
  std::string path;
  std::vector<ResolvedStage> stages;
  int64_t total_steps() const { return stages.empty() ? 0 : stages.back().end_step; }
};

// Parses a plan file (syntax errors and unknown fields name file:line:column) and resolves it.
// `vocab_size` > 0 fills model.vocab_size where the plan leaves it 0 (the data.vocab size).
// `base_overrides` (`path.to.field=value`, the --set syntax) apply to the plan's `base`: after
// base_config and base, before the stages.
StagePlan LoadStagePlan(const std::string& path, int vocab_size,
                        const std::vector<std::string>& base_overrides = {});

// Resolves and checks a parsed plan. `origin` names the plan in messages; `base_dir` is where a
// relative base_config is looked up. Throws Error naming the stage and field for: no stages, a
// stage without exactly one of steps/tokens, train.steps set in a stage, an invalid config
// (ValidateConfig), TP not dividing the heads / FFN / batch, a model that shrinks or changes
// architecture (RealFormer, LN placement, scale, eps, vocab, ...), a non-integer width factor,
// insert positions that do not fit, growth options on a stage that does not grow, a change of
// data.vocab, seed or checkpoint.dir.
StagePlan ResolveStagePlan(const schedule::Plan& plan, const std::string& origin,
                           const std::string& base_dir, int vocab_size,
                           const std::vector<std::string>& base_overrides = {});

// True when the two models differ in a field that changes a tensor shape (then a boundary grows).
bool ModelShapeDiffers(const config::ModelConfig& a, const config::ModelConfig& b);

// The growth operator's options for entering `stage` (seed 0 -> derived from `train_seed`, `step`).
GrowthOptions StageGrowthOptions(const ResolvedStage& stage, uint64_t train_seed, int64_t step);

// Where a checkpoint's state lies in the plan: the stage it belongs to and whether it is that
// stage's end (then the next stage must be entered). Throws Error when the checkpoint cannot come
// from this plan (stage index beyond the plan, step outside the stage's range, model shape
// differing from the stage's: the plan was edited since the run started).
struct PlanPosition {
  int stage = 0;
  bool at_end = false;
};
PlanPosition LocateInPlan(const StagePlan& plan, int growth_stage, int64_t step,
                          const config::ModelConfig& ckpt_model, const std::string& ckpt_dir);

}  // namespace roformer
