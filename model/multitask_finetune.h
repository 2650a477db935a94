// Multi-task CLUE fine-tuning (`roformer multitask`): several classification and multiple-choice
// tasks trained together on ONE shared encoder, one head per task ("heads.<task>.*" in one head
// store), the losses combined by multitask.weighting (model/loss_weighting.h) and the batches mixed
// by multitask.sampling (model/multitask.h TaskSampler, a pure function of (seed, step)).
// A multiple-choice example is a question with all its choices (one sequence per choice); its loss
// is the cross-entropy over the choices, so log K plays the role of log C.
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
//   DP          under mpirun (world = DP, no TP): each task's examples of a step are cut into the
//               single-process micro-batches (same rows, same dropout stream ids), and the step's
//               micro-batches, over all tasks in order, are dealt round-robin to the ranks. Each
//               task's gradient is summed over the ranks (GradReducer, average = false: every
//               micro-batch already carries the 1/c_i scale) and its loss / accuracy counts are
//               all-reduced, so L_i, ‖g_i‖ and w are the single-process values on every rank and
//               only the summation order differs. Dev is scored in eval_batch chunks dealt to the
//               ranks (integer counts all-reduced: the same accuracies everywhere); rank 0 writes
//               metrics, checkpoints (SaveOptions rank/world) and submissions.
//   epoch       ceil(Σ_i N_i / batch) steps, N_i = training examples of task i.
//   evaluation  every epoch, each task's dev accuracy; the best epoch has the highest MEAN dev
//               accuracy over the tasks (first wins among equals); its encoder and heads are saved
//               under <out>/best/{encoder,head} when save_best.
//   resume      every checkpoint_every steps (and when --max-steps stops the run) encoder + heads
//               with Adam m/v go to <out>/checkpoints/{encoder,head}/step_N; the manifest metadata
//               holds the weighting's state, the absent tasks' last loss/norm, the log and epoch
//               accumulators and the best-epoch bookkeeping. The sampler needs only the step
//               (a pure function of (seed, step)). A rerun with the same --out resumes from the
//               newest pair, drops metrics records past it, and continues bit-identically.
//   prediction  after training the best checkpoint (or the final weights without save_best) is
//               reloaded and each task's test split predicted into <out>/<task>/<CLUE submission
//               file>, checked with ValidateSubmission.
//   metrics     <out>/metrics.jsonl: "event" = config | step (per-task loss, accuracy, weight w_i,
//               gradient norm, every log_every steps) | epoch (per-task dev accuracy, mean) |
//               resume | test | done.
// Scope: classification tasks (afqmc tnews iflytek cmnli ocnli cluewsc2020 csl: ClassifierHead)
// and multiple-choice tasks (c3, chid: MultipleChoiceHead, ChID CLUE-format Hungarian decoding as
// in `roformer finetune`); the span task (cmrc2018) is refused with an error naming it. AdamW
// only; no TP.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/finetune.pb.h"

namespace roformer {

class Communicator;

struct MultitaskFinetuneArgs {
  std::vector<std::string> tasks;         // CLUE task names (classification, multiple choice)
  std::vector<std::string> data_dirs;     // one per task
  std::vector<std::string> train_splits;  // one per task; empty = cfg.train_split for all
  std::string init;                       // pretrained checkpoint (root or step dir)
  std::string out_dir;
  std::string vocab;  // default: the checkpoint's recorded vocab
  config::FinetuneConfig cfg;
  // Stop after this many optimizer steps in total (> 0), leaving a checkpoint to resume from.
  int64_t max_steps = -1;
  // Data-parallel communicator (nullptr: one process). Its size is the DP size; rank 0 writes.
  Communicator* dp = nullptr;
};

struct MultitaskFinetuneSummary {
  int best_epoch = 0;
  double best_mean_dev = 0;      // percent
  std::vector<double> best_dev;  // per task, at best_epoch (percent)
  std::vector<double> final_w;   // last step's effective weights
  int64_t steps = 0;
  int64_t resumed_from = 0;  // step of the checkpoint this run resumed from (0: fresh start)
  bool stopped = false;      // --max-steps stopped the run before the last epoch ended
  std::vector<std::string> submissions;  // test submission files written
};

MultitaskFinetuneSummary RunMultitaskFinetune(const MultitaskFinetuneArgs& args);

}  // namespace roformer
