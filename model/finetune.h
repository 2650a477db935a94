// CLUE fine-tuning (`roformer finetune`): encoder (RoFormerModel) + a task head (model/heads/),
// trained on a task's train split, evaluated on dev every epoch, best-dev checkpoint kept, test
// split predicted into the CLUE submission file and validated.
//
//   inputs      data/clue/clue_features.h (per-task construction, truncation, CMRC2018 windows)
//   heads       classification: ClassifierHead; C3/ChID: MultipleChoiceHead; CMRC2018: SpanHead
//   training    examples shuffled per epoch from (seed, epoch) (Philox Fisher-Yates, identical
//               everywhere); a step takes `batch` examples in micro-batches of `micro_batch`
//               (gradients accumulated, loss = mean over the step's examples); sequences of a
//               micro-batch are padded to its longest one.
//   optimizer   adamw: AdamW + linear warmup/decay, grad-norm clipping over encoder + head, decay
//               skipped for LayerNorm/bias; adafactor: model/adafactor.h (the baseline's), constant
//               lr. The pretraining-only tensors (cls.* MLM head, sop.*) are never updated.
//   evaluation  dev each epoch: accuracy (classification, C3, ChID with Hungarian decoding of
//               CLUE-format passages), EM/F1 (CMRC2018: best window per question, answer text
//               from the tokens' code-point offsets). The best epoch is the one with the highest
//               primary metric (accuracy / EM, F1 breaking ties); the first wins among equals.
//   checkpoint  <out>/best/encoder: the encoder ParamStore (the pretraining checkpoint's tensors,
//               so `roformer infer`, `convert --to-hf`, `ckpt verify` and another finetune --init
//               read it); <out>/best/head: the head ParamStore ("heads.*" tensors; metadata names
//               the task, head and labels). Both are parameter-only checkpoints (no optimizer).
//   prediction  the best checkpoint is reloaded from disk, dev re-scored (and CAN applied when
//               enabled), the test split predicted to <out>/<submission file> (CLUE 1.1 name;
//               FewCLUE's for single-blank ChID data) and checked with ValidateSubmission.
//   metrics     <out>/metrics.jsonl: one JSON object per line, "event" = config | step (mean
//               loss of the last log_every steps) | epoch | dev_predictions | can | test | done.
//   DP          under mpirun (args.dp of size N > 1; no TP) every rank holds the whole model and
//               reads all data. A step's examples are split between the ranks: when the step has
//               M >= N single-process micro-batches, rank r runs micro-batches [M r / N,
//               M (r+1) / N) with their single-process rows and dropout stream ids (so the result
//               is the single-process one up to summation order, dropout included); otherwise
//               (e.g. batch == micro_batch) the step's examples are cut into N contiguous
//               near-equal shares, one micro-batch each (same math without dropout; with dropout
//               the masks differ from one process's). Every micro-batch carries the 1 / (step's
//               examples) scale, so the summed (all-reduced) gradient is the single-process step
//               mean however unevenly the batch splits; loss/accuracy sums are all-reduced too. The
//               clip norm is then computed on identical gradients and AdamW/AdaFactor run
//               identically on every rank. Dev/test inference: eval_batch chunks dealt round-robin
//               to the ranks, outputs all-reduced (zeros elsewhere), so every rank decodes and
//               scores the same predictions. Rank 0 alone writes metrics.jsonl, checkpoints and
//               prediction files; after training it reloads the best checkpoint and broadcasts it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/finetune.pb.h"

namespace roformer {

class Communicator;

struct FinetuneArgs {
  std::string task;      // CLUE task name or alias
  std::string data_dir;  // the task's directory (train/dev/test files)
  std::string init;      // checkpoint root or step dir (not with from_scratch)
  std::string out_dir;
  std::string vocab;          // vocab.txt; default: the init checkpoint's recorded vocab path
  bool from_scratch = false;  // random init from cfg.model() (the no-pretraining baseline)
  config::FinetuneConfig cfg;
  // Data-parallel communicator (nullptr: one process). Its size is the DP size; rank 0 writes.
  Communicator* dp = nullptr;
};

struct FinetuneSummary {
  int best_epoch = 0;      // 0: no dev evaluation happened
  double best_dev = 0;     // primary metric, percent
  double best_dev_f1 = 0;  // CMRC2018
  int64_t steps = 0;
  std::string submission;  // path written ("" when there was no test split)
  int64_t submission_entries = 0;
  // CAN on dev (percent; only with cfg.can.enabled on a classification task).
  bool can_ran = false;
  double can_before = 0, can_after = 0;
};

FinetuneSummary RunFinetune(const FinetuneArgs& args);

// Text-format FinetuneConfig file (Error naming file:line:col on syntax/unknown fields).
config::FinetuneConfig LoadFinetuneConfig(const std::string& path);
// `path.to.field=value` on a FinetuneConfig (the --set syntax of runtime/config.h).
void ApplyFinetuneOverride(config::FinetuneConfig* cfg, const std::string& assignment);
// Range checks (Error naming the field).
void ValidateFinetuneConfig(const config::FinetuneConfig& cfg);

// The effective hyper-parameters of a task: cfg with every "task default" field (0 / -1 / "")
// replaced by the bert4keras baseline's value for the task (seeds.md §5.2).
config::FinetuneConfig ResolveTaskDefaults(const std::string& task_name,
                                           const config::FinetuneConfig& cfg);

// Deterministic permutation of [0, n) from (seed, epoch): Fisher-Yates over Philox draws.
std::vector<int64_t> ShuffledOrder(int64_t n, uint64_t seed, uint64_t epoch);

}  // namespace roformer
