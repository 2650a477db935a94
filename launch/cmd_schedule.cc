// `roformer schedule`: a staged pretraining plan (runtime/schedule.proto, model/growth/
// stage_schedule.h) run start to end in one run directory: every stage through the Trainer,
// growing the checkpoint at each boundary where the model gets larger, resuming mid-stage from the
// newest checkpoint when run again (the same command: works under roformer-launch).
#include <glog/logging.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>

#include "data/pretrain_batch_source.h"
#include "data/tokenizer/tokenizer.h"
#include "launch/command.h"
#include "model/device_model.h"
#include "model/flops.h"
#include "model/growth/grow_checkpoint.h"
#include "model/growth/stage_schedule.h"
#include "model/roformer_model.h"
#include "model/trainer.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/gemm_peak.h"
#include "runtime/grid.h"

namespace roformer {
namespace {

namespace fs = std::filesystem;

// Exit status when the next stage needs another TP x DP split of the same number of processes: a
// process holds one Grid (runtime/grid.h: MPI is initialised and finalised once), so the job ends
// after a complete checkpoint and the same command, run again, continues with the new layout.
// Not 0 or 2, so roformer-launch relaunches it (it treats 2 as a user error and stops).
constexpr int kRelaunchForLayout = 75;  // EX_TEMPFAIL

std::string Layout(const config::Config& c) {
  return "tp " + std::to_string(c.parallel().tp()) + " x dp " + std::to_string(c.parallel().dp());
}

class ScheduleRun {
 public:
  ScheduleRun(const StagePlan& plan, std::string run_dir, Tokenizer* tok)
      : plan_(plan), run_dir_(std::move(run_dir)), tok_(tok) {
    const auto& c0 = plan_.stages[0].cfg;
    ckpt_dir_ = c0.checkpoint().dir().empty() ? run_dir_ + "/checkpoints" : c0.checkpoint().dir();
  }

  const std::string& ckpt_dir() const { return ckpt_dir_; }

  // Builds the process grid for `stage`'s layout (once per process).
  void MakeGrid(const ResolvedStage& stage) {
    GridOptions go;
    go.tp = stage.cfg.parallel().tp();
    go.dp = stage.cfg.parallel().dp();
    go.watchdog_timeout_s = stage.cfg.parallel().watchdog_timeout_s();
    go.debug_collectives = stage.cfg.parallel().debug_collectives();
    try {
      grid_ = Grid::Create(go);
    } catch (const Error& e) {
      Fail(stage.where, ": ", e.what());
    }
    grid_layout_ = stage.cfg.parallel();
    if (grid_->distributed()) LOG(INFO) << "grid: " << grid_->Describe();
  }
  bool has_grid() const { return grid_ != nullptr; }
  bool rank0() const { return grid_->world_rank() == 0; }
  int world_size() const { return grid_->world_size(); }
  bool SameLayout(const ResolvedStage& s) const {
    return s.cfg.parallel().tp() == grid_layout_.tp() && s.cfg.parallel().dp() == grid_layout_.dp();
  }

  // Runs `fn` on world rank 0 only; an Error there becomes an Error on every rank (the others
  // would otherwise wait forever at the next collective).
  void OnRank0(const std::function<void()>& fn) {
    std::string err;
    if (rank0()) {
      try {
        fn();
      } catch (const Error& e) {
        err = e.what();
      }
    }
    int32_t failed = err.empty() ? 0 : 1;
    grid_->world().AllReduce(std::span<int32_t>(&failed, 1), ReduceOp::kMax);
    if (!err.empty()) throw Error(err);
    if (failed) Fail("rank 0 failed (see its error)");
  }

  // Grows the checkpoint at the end of stage i - 1 into stage i (same step, growth_stage = i).
  // Every rank computes the growth (a pure function of the checkpoint and the seed) and the hashes
  // are compared; rank 0 writes it.
  void Grow(const ResolvedStage& stage) {
    const std::string dir = FindLatestCheckpoint(ckpt_dir_);
    LoadedCheckpoint ck = LoadCheckpoint(dir, /*with_optimizer=*/true);
    if (ck.state.growth_stage != stage.index - 1 || ck.state.step != stage.first_step) {
      Fail(dir, ": expected the end of stage ", stage.index - 1, " (step ", stage.first_step,
           ") to grow into ", stage.where, ", found stage ", ck.state.growth_stage, " step ",
           ck.state.step);
    }
    const GrowthOptions opt = StageGrowthOptions(stage, ck.state.seed, ck.state.step);
    GrowthResult res;
    try {
      res = GrowCheckpoint(ck.tensors, ck.manifest.model(), stage.cfg.model(), opt);
    } catch (const Error& e) {
      Fail(stage.where, ": ", e.what());
    }
    const int64_t hash = GrowthResultHash(res);
    int64_t lo = hash, hi = hash;
    grid_->world().AllReduce(std::span<int64_t>(&lo, 1), ReduceOp::kMin);
    grid_->world().AllReduce(std::span<int64_t>(&hi, 1), ReduceOp::kMax);
    if (lo != hi) {
      Fail(stage.where, ": the grown checkpoint differs across ranks (crc32c ", lo, " vs ", hi,
           "): growth must be deterministic; not saving it");
    }
    for (const std::string& n : res.notes) LOG(INFO) << "grow into " << stage.where << ": " << n;
    char hex[16];
    std::snprintf(hex, sizeof(hex), "%08x", static_cast<uint32_t>(hash));
    LOG(INFO) << "grown checkpoint crc32c " << hex << ", identical on all " << world_size()
              << " rank(s)";
    TrainState st = ck.state;
    st.growth_stage = stage.index;
    OnRank0([&] {
      // The grown checkpoint replaces the pre-growth one (same step); keep the small model's final
      // state beside the run for evaluation and baselines (hard links: no extra space).
      const ResolvedStage& prev = plan_.stages[stage.index - 1];
      const fs::path keep = fs::path(run_dir_) / "stages" /
                            ("stage" + std::to_string(prev.index) + "-" + prev.name + "-end");
      if (!fs::exists(keep)) {
        const fs::path tmp = keep.string() + ".tmp";
        fs::remove_all(tmp);
        fs::create_directories(tmp);
        for (const auto& e : fs::directory_iterator(dir)) {
          std::error_code ec;
          fs::create_hard_link(e.path(), tmp / e.path().filename(), ec);
          if (ec) fs::copy_file(e.path(), tmp / e.path().filename());
        }
        fs::rename(tmp, keep);
        LOG(INFO) << "kept the pre-growth checkpoint as " << keep.string();
      }
      SaveOptions so;
      so.keep = stage.cfg.checkpoint().keep();
      so.vocab.path = ck.manifest.vocab().path();
      so.vocab.tokens_hash = ck.manifest.vocab().tokens_hash();
      so.metadata["grown_from_stage"] = std::to_string(stage.index - 1);
      for (size_t i = 0; i < res.notes.size(); ++i) {
        so.metadata["growth_" + std::to_string(i)] = res.notes[i];
      }
      so.metadata["growth_seed"] = std::to_string(opt.seed);
      so.metadata["growth_crc32c"] = hex;
      // Same step as the pre-growth checkpoint: this replaces it atomically (the grown state is a
      // pure function of it, so nothing is lost).
      const std::string out = SaveGrowthResult(ckpt_dir_, res, stage.cfg, st, so);
      LOG(INFO) << "grown checkpoint " << out << " (step " << st.step << ", stage " << stage.index
                << ")";
    });
  }

  // Runs `stage` from its newest checkpoint (or from scratch: stage 0 without one) until its end
  // or until `*budget` steps (-1 = unlimited) are used. Returns true when the stage is complete.
  bool RunStage(const ResolvedStage& stage, bool fresh, int64_t* budget) {
    config::Config cfg = stage.cfg;
    // A text corpus is prepared once per distinct corpus (stage 0's into <run>/data).
    const std::string cache =
        stage.index == 0 || cfg.data().corpus() == plan_.stages[0].cfg.data().corpus()
            ? run_dir_ + "/data"
            : run_dir_ + "/data-stage" + std::to_string(stage.index);
    OnRank0([&] {
      fs::create_directories(run_dir_);
      OpenOrPrepareCorpus(cfg.data().corpus(), *tok_, cache, cfg.data().eval_fraction());
      std::ofstream out(run_dir_ + "/stage" + std::to_string(stage.index) + ".config.textproto");
      out << "# " << stage.where << ": steps [" << stage.first_step << ", " << stage.end_step
          << ")\n"
          << ConfigToText(cfg);
    });
    auto corpus =
        OpenOrPrepareCorpus(cfg.data().corpus(), *tok_, cache, cfg.data().eval_fraction());
    PretrainBatchSource data(corpus, tok_->vocab(), PretrainOptionsFromConfig(cfg));

    RoFormerModel model(HostModelConfig(cfg), TpRegion(&grid_->tp()));
    if (fresh) model.InitWeights(cfg.train().seed());
    if (gemm_peak_ == 0) gemm_peak_ = MeasureSgemmPeakGflops();
    TrainerOptions to;
    to.run_dir = rank0() ? run_dir_ : "";
    to.world = &grid_->world();
    to.tp = &grid_->tp();
    to.dp = &grid_->dp();
    to.checkpoint_dir = ckpt_dir_;
    to.gemm_peak_gflops = gemm_peak_;
    to.vocab.path = cfg.data().vocab();
    to.vocab.size = tok_->vocab().size();
    to.vocab.padded_size = model.dims().vocab_padded;
    to.vocab.tokens_hash = VocabTokensHash(tok_->vocab().tokens());
    to.growth_stage = stage.index;
    to.lr_schedule_start = stage.first_step;
    const ModelDims& d = model.dims();
    const double masked = cfg.train().mask_prob() * std::max(0, cfg.train().seq_len() - 3);
    const double flops_per_step =
        cfg.train().global_batch() *
        TrainFlopsPerSequence(d, cfg.train().seq_len(), masked, cfg.train().sop());
    Trainer trainer(cfg, &model, &data, to);
    if (!fresh && !trainer.ResumeFromLatest()) {
      Fail(stage.where, ": no checkpoint under ", ckpt_dir_, " to continue from");
    }
    LOG(INFO) << "stage " << stage.index << " (" << stage.name << "): steps [" << stage.first_step
              << ", " << stage.end_step << "), at " << trainer.step() << "; L=" << d.layers
              << " H=" << d.hidden << " A=" << d.heads << " FFN=" << d.intermediate << ", seq "
              << cfg.train().seq_len() << ", batch " << cfg.train().global_batch() << ", lr "
              << cfg.train().lr() << " (warmup " << cfg.train().warmup_steps()
              << " from the stage start), " << Layout(cfg);
    if (rank0()) {
      std::ofstream ev(run_dir_ + "/schedule.jsonl", std::ios::app);
      char buf[512];
      std::snprintf(buf, sizeof(buf),
                    "{\"stage\":%d,\"name\":\"%s\",\"first_step\":%lld,\"end_step\":%lld,"
                    "\"at_step\":%lld,\"grows\":%s,\"hidden\":%d,\"layers\":%d,\"heads\":%d,"
                    "\"intermediate\":%d,\"seq_len\":%d,\"global_batch\":%d,\"tp\":%d,\"dp\":%d,"
                    "\"train_flops_per_step\":%.6g}\n",
                    stage.index, stage.name.c_str(), static_cast<long long>(stage.first_step),
                    static_cast<long long>(stage.end_step), static_cast<long long>(trainer.step()),
                    stage.grows ? "true" : "false", d.hidden, d.layers, d.heads, d.intermediate,
                    cfg.train().seq_len(), cfg.train().global_batch(), cfg.parallel().tp(),
                    cfg.parallel().dp(), flops_per_step);
      ev << buf;
    }
    // The first evaluation of a stage, right after growth / the new sequence length: with the
    // previous stage's final evaluation (same step, same held-out samples when seq_len is the
    // same) it shows the growth was lossless.
    if (stage.index > 0 && trainer.step() == stage.first_step) trainer.Evaluate();
    if (*budget == 0) return false;
    const int64_t before = trainer.step();
    trainer.Run(*budget);
    if (*budget > 0) *budget -= trainer.step() - before;
    if (trainer.step() < stage.end_step) {
      // Stopped by --max-steps: leave a checkpoint so the next invocation continues from here.
      trainer.SaveCheckpointNow();
      trainer.WaitForCheckpoint();
      return false;
    }
    return true;
  }

 private:
  const StagePlan& plan_;
  std::string run_dir_, ckpt_dir_;
  Tokenizer* tok_;
  std::unique_ptr<Grid> grid_;
  config::ParallelConfig grid_layout_;
  double gemm_peak_ = 0;
};

int RunSchedule(int argc, char** argv) {
  Flags flags(argc, argv,
              {"plan", "set", "run-dir", "no-resume!", "force!", "max-steps", "dry-run!"});
  if (!flags.positional().empty()) Fail("unexpected argument '", flags.positional()[0], "'");
  const std::string plan_path = flags.Require("plan");
  const std::string run_dir = flags.Get("run-dir", "runs/schedule");

  // Every stage uses stage 0's vocab (ResolveStagePlan refuses a change).
  const std::vector<std::string> sets = flags.GetAll("set");
  const StagePlan unresolved = LoadStagePlan(plan_path, 0, sets);
  const config::Config& c0 = unresolved.stages[0].cfg;
  if (c0.data().vocab().empty()) {
    Fail(plan_path, ": data.vocab is empty: set it in `base` (a WordPiece vocab.txt)");
  }
  Tokenizer tokenizer(Vocab::Load(c0.data().vocab()), c0.data().do_lower_case());
  const int vocab_size = tokenizer.vocab().size();
  const StagePlan plan = LoadStagePlan(plan_path, vocab_size, sets);
  for (const ResolvedStage& s : plan.stages) {
    RequireDeviceModel(s.cfg.train().device());
    if (s.cfg.model().vocab_size() != vocab_size) {
      Fail(s.where, ": model.vocab_size = ", s.cfg.model().vocab_size(), " but data.vocab ",
           c0.data().vocab(), " has ", vocab_size, " entries");
    }
  }
  const int n = static_cast<int>(plan.stages.size());
  if (flags.GetBool("dry-run")) {
    for (const ResolvedStage& s : plan.stages) {
      const auto& m = s.cfg.model();
      const auto& t = s.cfg.train();
      std::printf(
          "%s: steps [%lld, %lld) %s H=%d L=%d A=%d FFN=%d seq %d batch %d lr %g warmup "
          "%lld %s, %s\n",
          s.where.c_str(), static_cast<long long>(s.first_step), static_cast<long long>(s.end_step),
          s.grows ? "grow," : "", m.hidden_size(), m.num_hidden_layers(), m.num_attention_heads(),
          m.intermediate_size(), t.seq_len(), t.global_batch(), t.lr(),
          static_cast<long long>(t.warmup_steps()), t.lr_decay().c_str(), Layout(s.cfg).c_str());
    }
    std::printf("plan OK: %d stage(s), %lld steps\n", n,
                static_cast<long long>(plan.total_steps()));
    return 0;
  }

  ScheduleRun run(plan, run_dir, &tokenizer);
  const bool no_resume = flags.GetBool("no-resume");
  const bool has_state =
      fs::exists(run_dir + "/metrics.jsonl") || !FindLatestCheckpoint(run.ckpt_dir()).empty();
  if (no_resume && has_state && !flags.GetBool("force")) {
    Fail("--no-resume: run directory ", run_dir,
         " already holds a run (metrics.jsonl / checkpoints); add --force to delete them and "
         "start over, or choose another --run-dir");
  }
  // Where the run stands: the newest checkpoint's stage index and step.
  int stage = 0;
  bool fresh = true, enter = false;
  const std::string latest = no_resume ? "" : FindLatestCheckpoint(run.ckpt_dir());
  if (!latest.empty()) {
    const ckpt::Manifest man = ReadCheckpointManifest(latest);
    const TrainState st = TrainStateFromManifest(man);
    const PlanPosition pos = LocateInPlan(plan, st.growth_stage, st.step, man.model(), latest);
    fresh = false;
    stage = pos.stage;
    if (pos.at_end) {
      if (pos.stage == n - 1) {
        LOG(INFO) << "schedule " << plan_path << " already finished (" << st.step
                  << " steps, checkpoint " << latest << ")";
        return 0;
      }
      stage = pos.stage + 1;
      enter = true;
    }
  }
  run.MakeGrid(plan.stages[stage]);
  if (no_resume && has_state) {
    run.OnRank0([&] {
      fs::remove(run_dir + "/metrics.jsonl");
      fs::remove(run_dir + "/schedule.jsonl");
      fs::remove_all(run_dir + "/tensorboard");
      fs::remove_all(run_dir + "/stages");
      fs::remove_all(run.ckpt_dir());
    });
  }
  run.OnRank0([&] {
    fs::create_directories(run_dir);
    fs::copy_file(plan_path, run_dir + "/plan.textproto", fs::copy_options::overwrite_existing);
  });
  int64_t budget = flags.GetInt("max-steps", -1);
  for (int s = stage; s < n; ++s) {
    const ResolvedStage& S = plan.stages[s];
    if (enter && budget == 0) {
      LOG(INFO) << "stopped at the end of stage " << s - 1
                << " (--max-steps); run the same command again to continue";
      return 0;
    }
    if (!run.SameLayout(S)) {
      const int need = S.cfg.parallel().tp() * S.cfg.parallel().dp();
      if (need != run.world_size()) {
        Fail(S.where, ": parallel.tp x parallel.dp = ", need, " processes but this job has ",
             run.world_size(), "; the stages before it are complete (checkpoints in ",
             run.ckpt_dir(), "): continue with `mpirun -np ", need, " roformer schedule --plan ",
             plan_path, " --run-dir ", run_dir, "`");
      }
      if (run.rank0())
        LOG(WARNING) << S.where << " runs at " << Layout(S.cfg)
                     << ", this job's process grid is another split of the same " << need
                     << " processes: exiting with status " << kRelaunchForLayout
                     << "; run the same command again to continue (roformer-launch does)";
      return kRelaunchForLayout;
    }
    if (enter && S.grows) run.Grow(S);
    const bool done = run.RunStage(S, fresh && s == 0, &budget);
    if (!done) {
      LOG(INFO) << "stopped in " << S.where << " (--max-steps); run the same command again to "
                << "continue";
      return 0;
    }
    enter = true;
  }
  LOG(INFO) << "schedule " << plan_path << " done: " << plan.total_steps() << " steps; metrics in "
            << run_dir << "/metrics.jsonl";
  return 0;
}

RegisterCommand reg(
    "schedule", "staged pretraining plan: stages, growth at boundaries, resumable",
    "roformer schedule --plan PLAN.textproto [--set path=value ...] [--run-dir DIR] [--max-steps "
    "K]\n"
    "                  [--no-resume [--force]] [--dry-run]\n"
    "Runs the stages of PLAN (runtime/schedule.proto; examples in launch/plans/) one after the\n"
    "other in DIR (default runs/schedule): each stage trains with its own model shape, length\n"
    "(steps or tokens), seq_len, batch sizes, LR schedule and TP x DP layout; where a stage's\n"
    "model is larger, the checkpoint is grown losslessly at the boundary (as `roformer grow`,\n"
    "Adam moments mapped, step kept). The global step and data position run on across stages;\n"
    "each stage's LR schedule counts from its first step (warmup = re-warmup after growth).\n"
    "Checkpoints go to DIR/checkpoints (stage index in the checkpoint); running the same command\n"
    "again resumes mid-stage from the newest one, so it works under roformer-launch. Under\n"
    "mpirun every stage it runs must use tp x dp = the job's processes; when the next stage\n"
    "needs another split of the same count, the job exits with status 75 after a complete\n"
    "checkpoint and continues when run again (roformer-launch relaunches it); another count is\n"
    "an error (exit 2) telling the mpirun -np to continue with. --max-steps K stops after K more\n"
    "steps (with a checkpoint); --dry-run only checks and prints the resolved stages. --set\n"
    "overrides apply to the plan's base config (before the stages' own settings). The grown\n"
    "checkpoint replaces the pre-growth one (same step), which is kept as\n"
    "DIR/stages/stage<i>-<name>-end; DIR/schedule.jsonl records every stage start (shape,\n"
    "layout, estimated training FLOPs per step).",
    &RunSchedule);

}  // namespace
}  // namespace roformer
