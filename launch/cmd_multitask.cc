// `roformer multitask`: several CLUE classification / multiple-choice tasks fine-tuned together on
// one encoder with a loss-weighting scheme (model/multitask_finetune.h); DP under mpirun.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "launch/command.h"
#include "launch/finetune_flags.h"
#include "launch/launcher_env.h"
#include "model/finetune.h"
#include "model/multitask_finetune.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/grid.h"

namespace roformer {
namespace {

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

int RunMultitaskCommand(int argc, char** argv) {
  Flags flags(argc, argv,
              WithFinetuneConfigFlags({"tasks", "data", "train-splits", "init", "out", "vocab",
                                       "weighting", "max-steps"}));
  if (!flags.positional().empty())
    Fail("multitask: unexpected argument '", flags.positional()[0], "'");
  MultitaskFinetuneArgs a;
  a.tasks = SplitCommas(flags.Require("tasks"));
  a.data_dirs = SplitCommas(flags.Require("data"));
  if (flags.Has("train-splits")) a.train_splits = SplitCommas(flags.Get("train-splits"));
  a.init = flags.Require("init");
  a.out_dir = flags.Require("out");
  a.vocab = flags.Get("vocab");
  ApplyFinetuneConfigFlags(flags, "multitask", &a.cfg);
  if (flags.Has("weighting")) a.cfg.mutable_multitask()->set_weighting(flags.Get("weighting"));
  if (flags.Has("max-steps")) {
    const long long v = flags.GetInt("max-steps", 0);
    if (v <= 0)
      Fail("multitask: --max-steps must be a positive integer, got ", flags.Get("max-steps"));
    a.max_steps = static_cast<int>(v);
  }
  // Data parallel over every rank mpirun started (no TP: fine-tuning models are small).
  GridOptions go;
  go.dp = LauncherWorldSize();
  auto grid = Grid::Create(go);
  a.dp = &grid->dp();
  const bool rank0 = grid->world_rank() == 0;
  const MultitaskFinetuneSummary s = RunMultitaskFinetune(a);
  if (!rank0) return 0;
  if (s.stopped) {
    std::cout << "multitask: stopped after " << s.steps
              << " steps (--max-steps); run again with the same --out to continue\n";
    return 0;
  }
  std::cout << "multitask: " << s.steps << " steps";
  if (s.resumed_from > 0) std::cout << " (resumed from step " << s.resumed_from << ")";
  if (s.best_epoch > 0) {
    std::cout << ", best mean dev " << s.best_mean_dev << " at epoch " << s.best_epoch << " (";
    for (size_t i = 0; i < s.best_dev.size(); ++i) std::cout << (i ? " " : "") << s.best_dev[i];
    std::cout << ")";
  }
  std::cout << "\n";
  for (const std::string& p : s.submissions) std::cout << "wrote " << p << "\n";
  return 0;
}

RegisterCommand reg(
    "multitask", "fine-tune several CLUE tasks on one encoder with loss weighting",
    "roformer multitask --tasks A,B,C --data DIR_A,DIR_B,DIR_C --init CKPT --out DIR\n"
    "    [--train-splits S_A,S_B,S_C] [--weighting fixed|init|prior|realtime|genmean|gradnorm|\n"
    "    uncertainty] [--config F] [--set field=value ...] [--epochs N] [--lr X] [--batch N]\n"
    "    [--micro-batch N] [--max-len N] [--seed N] [--vocab V] [--max-steps K]\n"
    "Supported tasks: classification (afqmc tnews iflytek cmnli ocnli cluewsc2020 csl, a\n"
    "classifier head each) and multiple choice (c3 chid, a per-choice scoring head each); the\n"
    "span task cmrc2018 is refused with an error. The tasks share the encoder. Task defaults\n"
    "(epochs, batch, max_len) come from the first task: give --max-len for C3. The config is a\n"
    "FinetuneConfig (runtime/finetune.proto); its multitask block picks the weighting\n"
    "(multitask.weighting, .weights, .gamma, .init_batches) and the batch mixing\n"
    "(multitask.sampling = mixed | round_robin | proportional, multitask.ratios; default: every\n"
    "task in every step, in proportion to its training size).\n"
    "Each epoch reports every task's dev accuracy; the best epoch by mean dev accuracy is saved\n"
    "to DIR/best/{encoder,head}, and after training each task's test split is predicted with it\n"
    "into DIR/<task>/<CLUE submission file> (validated). DIR/metrics.jsonl has per-task losses,\n"
    "accuracies, weights and gradient norms.\n"
    "Resume: checkpoint_every=N saves DIR/checkpoints every N steps; --max-steps K stops after\n"
    "step K with a checkpoint. Rerunning with the same DIR continues from the newest checkpoint,\n"
    "bit-identical to an uninterrupted run.\n"
    "Data parallel: `mpirun -np N roformer multitask ...` deals each step's micro-batches to the\n"
    "N ranks and sums the per-task gradients; same result as one process (up to summation order).\n"
    "Docs: docs/multitask.md.",
    &RunMultitaskCommand);

}  // namespace
}  // namespace roformer
