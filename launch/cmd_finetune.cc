// `roformer finetune`: CLUE fine-tuning of a pretrained (or randomly initialised) encoder
// (model/finetune.h).
#include <glog/logging.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "launch/command.h"
#include "launch/finetune_flags.h"
#include "launch/launcher_env.h"
#include "model/finetune.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/grid.h"

namespace roformer {
namespace {

int RunFinetuneCommand(int argc, char** argv) {
  Flags flags(
      argc, argv,
      WithFinetuneConfigFlags({"task", "data", "init", "out", "optimizer", "vocab", "from-scratch!",
                               "can!", "can-k", "can-tau", "can-iters", "can-alpha"}));
  if (!flags.positional().empty())
    Fail("finetune: unexpected argument '", flags.positional()[0], "'");
  FinetuneArgs a;
  a.task = flags.Require("task");
  a.data_dir = flags.Require("data");
  a.out_dir = flags.Require("out");
  a.init = flags.Get("init");
  a.vocab = flags.Get("vocab");
  a.from_scratch = flags.GetBool("from-scratch");
  // Dedicated flags win over --config and --set.
  ApplyFinetuneConfigFlags(flags, "finetune", &a.cfg);
  if (flags.Has("optimizer")) a.cfg.set_optimizer(flags.Get("optimizer"));
  if (flags.GetBool("can")) a.cfg.mutable_can()->set_enabled(true);
  if (flags.Has("can-k")) a.cfg.mutable_can()->set_k(static_cast<int>(flags.GetInt("can-k", 3)));
  if (flags.Has("can-tau"))
    a.cfg.mutable_can()->set_tau(static_cast<float>(flags.GetDouble("can-tau", 0.9)));
  if (flags.Has("can-iters"))
    a.cfg.mutable_can()->set_iters(static_cast<int>(flags.GetInt("can-iters", 1)));
  if (flags.Has("can-alpha"))
    a.cfg.mutable_can()->set_alpha(static_cast<float>(flags.GetDouble("can-alpha", 1.0)));
  // Data parallel over every rank mpirun started. No TP: CLUE fine-tuning models fit one process,
  // and FinetuneConfig has no parallel block, so world size == DP size by construction.
  GridOptions go;
  go.dp = LauncherWorldSize();
  auto grid = Grid::Create(go);
  if (grid->distributed()) LOG(INFO) << "grid: " << grid->Describe();
  a.dp = &grid->dp();
  const FinetuneSummary s = RunFinetune(a);
  if (grid->world_rank() != 0) return 0;
  std::cout << "finetune " << a.task << ": " << s.steps << " steps";
  if (s.best_epoch > 0) std::cout << ", best dev " << s.best_dev << " at epoch " << s.best_epoch;
  if (s.can_ran) std::cout << ", CAN dev " << s.can_before << " -> " << s.can_after;
  if (!s.submission.empty())
    std::cout << ", submission " << s.submission << " (" << s.submission_entries << " entries)";
  std::cout << "\n";
  return 0;
}

RegisterCommand reg(
    "finetune", "fine-tune on a CLUE task, keep the best dev checkpoint, write the submission",
    "roformer finetune --task NAME --data DIR (--init CKPT | --from-scratch --vocab V) --out DIR\n"
    "    [--config F] [--set field=value ...] [--epochs N] [--lr X] [--batch N]\n"
    "    [--micro-batch N] [--max-len N] [--optimizer adamw|adafactor] [--seed N] [--vocab V]\n"
    "    [--can [--can-k 3] [--can-tau 0.9] [--can-iters 1] [--can-alpha 1]]\n"
    "Tasks: afqmc tnews iflytek cmnli ocnli cluewsc2020 csl cmrc2018 c3 chid. DIR holds the\n"
    "task's CLUE files (train/dev/test names per task; C3 d-/m- pairs; ChID CLUE or FewCLUE\n"
    "format). --config is a text-format FinetuneConfig (runtime/finetune.proto), --set overrides\n"
    "any of its fields (e.g. --set train_split=trial --set can.tau=0.8 --set "
    "model.hidden_size=64);\n"
    "unset sizes take the bert4keras CLUE baseline's per-task values. --init takes a checkpoint\n"
    "(pretraining or `roformer convert`); the vocab defaults to the one it records.\n"
    "--from-scratch trains a randomly initialised model (FinetuneConfig.model) as the\n"
    "no-pretraining baseline. Writes DIR/metrics.jsonl (per-epoch dev metrics), DIR/best/encoder\n"
    "and DIR/best/head (best dev checkpoint), and the CLUE submission file for the test split,\n"
    "validated. --can (classification) applies CAN with the training-label prior: dev accuracy\n"
    "without/with it (and on the confident/uncertain subsets) goes to metrics.jsonl and the test\n"
    "predictions use it.\n"
    "Data parallel: `mpirun -np N roformer finetune ...` splits each step's examples over the N\n"
    "ranks and sums their gradients (the single-process step up to summation order); dev/test\n"
    "inference is sharded too; rank 0 alone writes DIR. Docs: docs/finetune.md.",
    &RunFinetuneCommand);

}  // namespace
}  // namespace roformer
