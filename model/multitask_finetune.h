// Multi-task CLUE fine-tuning (`roformer multitask`): several classification tasks (TNEWS,
// IFLYTEK, AFQMC, OCNLI, CMNLI, CSL, CLUEWSC2020) trained together on ONE shared encoder, one
// ClassifierHead per task ("heads.<task>.*" in one head store), the losses combined by
// multitask.weighting (model/loss_weighting.h) and the batches mixed by multitask.sampling
// (model/multitask.h TaskSampler, a pure function of (seed, step)).
//
//   step        the sampler gives each task's example count c_i (mixed: every task, split by the
//               ratios). Each present task runs its own forward + backward (its examples only,
//               loss = mean CE over them) into the gradient buffers, which are copied out as g_i
//               (encoder + heads). No extra compute: the tasks' examples are disjoint. Then
//               w = LossWeighting::Step(L, ‖g_i‖ over the encoder) and the update uses
//               Σ_i w_i g_i (AdamW, warmup + decay, clipping over encoder + heads, pretraining-only
//               tensors frozen, as `roformer finetune`). Tasks absent from a step (round_robin,
//               proportional) keep their last loss/norm in the weighting's inputs (before their
//               first step: log K and 1), but receive no gradient.
//   epoch       ceil(Σ_i N_i / batch) steps, N_i = training examples of task i.
//   evaluation  every epoch, each task's dev accuracy; the best epoch has the highest MEAN dev
//               accuracy over the tasks (first wins among equals); its encoder and heads are saved
//               under <out>/best/{encoder,head} when save_best.
//   metrics     <out>/metrics.jsonl: "event" = config | step (per-task loss, accuracy, weight w_i,
//               gradient norm, every log_every steps) | epoch (per-task dev accuracy, mean) | done.
// Scope: classification tasks only (no multiple-choice / span heads), single process, AdamW; no
// test-set predictions (use `roformer finetune` on the saved encoder for submissions).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/finetune.pb.h"

namespace roformer {

struct MultitaskFinetuneArgs {
  std::vector<std::string> tasks;         // CLUE task names (classification)
  std::vector<std::string> data_dirs;     // one per task
  std::vector<std::string> train_splits;  // one per task; empty = cfg.train_split for all
  std::string init;                       // pretrained checkpoint (root or step dir)
  std::string out_dir;
  std::string vocab;  // default: the checkpoint's recorded vocab
  config::FinetuneConfig cfg;
};

struct MultitaskFinetuneSummary {
  int best_epoch = 0;
  double best_mean_dev = 0;      // percent
  std::vector<double> best_dev;  // per task, at best_epoch (percent)
  std::vector<double> final_w;   // last step's effective weights
  int64_t steps = 0;
};

MultitaskFinetuneSummary RunMultitaskFinetune(const MultitaskFinetuneArgs& args);

}  // namespace roformer
