// `roformer pretrain`: MLM + SOP pretraining of a RoFormer / RealFormer encoder.
#include <glog/logging.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "data/pretrain_batch_source.h"
#include "data/tokenizer/tokenizer.h"
#include "launch/command.h"
#include "model/device_model.h"
#include "model/roformer_model.h"
#include "model/trainer.h"
#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/gemm_peak.h"
#include "runtime/grid.h"

namespace roformer {
namespace {

namespace fs = std::filesystem;

int RunPretrain(int argc, char** argv) {
  Flags flags(argc, argv, {"config", "set", "run-dir", "no-resume!", "force!", "max-steps"});
  if (!flags.positional().empty()) Fail("unexpected argument '", flags.positional()[0], "'");
  config::Config cfg = ResolveConfig(flags.Get("config"), flags.GetAll("set"));
  RequireDeviceModel(cfg.train().device());
  const std::string run_dir = flags.Get("run-dir", "runs/pretrain");

  GridOptions go;
  go.tp = cfg.parallel().tp();
  go.dp = cfg.parallel().dp();
  go.watchdog_timeout_s = cfg.parallel().watchdog_timeout_s();
  go.debug_collectives = cfg.parallel().debug_collectives();
  auto grid = Grid::Create(go);
  if (grid->distributed()) LOG(INFO) << "grid: " << grid->Describe();
  const bool rank0 = grid->world_rank() == 0;
  // Runs `fn` on world rank 0 only; an Error there becomes an Error on every rank (instead of the
  // others waiting forever at the next collective).
  auto on_rank0 = [&](const std::function<void()>& fn) {
    std::string err;
    if (rank0) {
      try {
        fn();
      } catch (const Error& e) {
        err = e.what();
      }
    }
    int32_t failed = err.empty() ? 0 : 1;
    grid->world().AllReduce(std::span<int32_t>(&failed, 1), ReduceOp::kMax);
    if (!err.empty()) throw Error(err);
    if (failed) Fail("rank 0 failed (see its error)");
  };

  if (cfg.data().vocab().empty()) {
    Fail(
        "data.vocab is empty: set it to a WordPiece vocab.txt (e.g. the Chinese BERT vocab) or "
        "build one with `roformer vocab build --corpus ... --size N --out vocab.txt`");
  }
  Tokenizer tokenizer(Vocab::Load(cfg.data().vocab()), cfg.data().do_lower_case());
  const int vocab_size = tokenizer.vocab().size();
  if (cfg.model().vocab_size() == 0) {
    cfg.mutable_model()->set_vocab_size(vocab_size);
  } else if (cfg.model().vocab_size() != vocab_size) {
    Fail("model.vocab_size = ", cfg.model().vocab_size(), " but data.vocab ", cfg.data().vocab(),
         " has ", vocab_size, " entries");
  }

  // Run directory: resume by default; --no-resume refuses to overwrite unless --force.
  const std::string ckpt_dir =
      cfg.checkpoint().dir().empty() ? run_dir + "/checkpoints" : cfg.checkpoint().dir();
  const bool has_state =
      fs::exists(run_dir + "/metrics.jsonl") || !FindLatestCheckpoint(ckpt_dir).empty();
  if (flags.GetBool("no-resume") && has_state) {
    if (!flags.GetBool("force")) {
      Fail("--no-resume: run directory ", run_dir,
           " already holds a run (metrics.jsonl / checkpoints); add --force to delete them and "
           "start over, or choose another --run-dir");
    }
  }
  on_rank0([&] {
    if (flags.GetBool("no-resume") && has_state) {
      fs::remove(run_dir + "/metrics.jsonl");
      fs::remove_all(run_dir + "/tensorboard");
      fs::remove_all(ckpt_dir);
    }
    fs::create_directories(run_dir);
    // Text corpora are prepared once, by rank 0; the others open the result.
    OpenOrPrepareCorpus(cfg.data().corpus(), tokenizer, run_dir + "/data",
                        cfg.data().eval_fraction());
  });
  auto corpus = OpenOrPrepareCorpus(cfg.data().corpus(), tokenizer, run_dir + "/data",
                                    cfg.data().eval_fraction());
  PretrainBatchSource data(corpus, tokenizer.vocab(), PretrainOptionsFromConfig(cfg));

  RoFormerModel model(HostModelConfig(cfg), TpRegion(&grid->tp()));
  model.InitWeights(cfg.train().seed());
  if (rank0) {
    std::ofstream out(run_dir + "/config.textproto");
    out << ConfigToText(cfg);
  }
  TrainerOptions to;
  to.run_dir = rank0 ? run_dir : "";
  to.world = &grid->world();
  to.tp = &grid->tp();
  to.dp = &grid->dp();
  to.checkpoint_dir = ckpt_dir;
  to.gemm_peak_gflops = MeasureSgemmPeakGflops();
  to.vocab.path = cfg.data().vocab();
  to.vocab.size = vocab_size;
  to.vocab.padded_size = model.dims().vocab_padded;
  to.vocab.tokens_hash = VocabTokensHash(tokenizer.vocab().tokens());
  const ModelDims& d = model.dims();
  LOG(INFO) << "model: L=" << d.layers << " H=" << d.hidden << " A=" << d.heads
            << " FFN=" << d.intermediate << " E=" << d.embedding << " vocab " << d.vocab
            << " (padded " << d.vocab_padded << "), " << model.store().size() << " parameters"
            << (cfg.model().realformer() ? ", RealFormer" : "")
            << (cfg.model().pre_ln() ? ", Pre-LN" : ", Post-LN") << ", scale "
            << cfg.model().attention_scale();
  LOG(INFO) << "data: " << corpus->num_documents() << " documents, " << corpus->num_tokens()
            << " tokens; " << data.train_epoch_size() << " training samples per epoch, "
            << data.eval_samples_available() << " held-out";
  LOG(INFO) << "sgemm peak measured at start-up: " << to.gemm_peak_gflops << " GFLOP/s";
  Trainer trainer(cfg, &model, &data, to);
  if (!flags.GetBool("no-resume")) trainer.ResumeFromLatest();
  if (trainer.step() >= cfg.train().steps()) {
    LOG(INFO) << "run " << run_dir << " already finished (" << trainer.step() << " steps)";
    return 0;
  }
  const int64_t max_steps = flags.GetInt("max-steps", -1);
  trainer.Run(max_steps);
  if (trainer.step() < cfg.train().steps()) {
    // Stopped by --max-steps: leave a checkpoint so the next invocation continues from here.
    trainer.SaveCheckpointNow();
    trainer.WaitForCheckpoint();  // checkpoint.async: commit before exiting
    LOG(INFO) << "stopped after " << trainer.step() << " of " << cfg.train().steps()
              << " steps (--max-steps); run again with the same --run-dir to continue";
    return 0;
  }
  LOG(INFO) << "done: " << trainer.step() << " steps; metrics in " << run_dir << "/metrics.jsonl";
  return 0;
}

RegisterCommand reg(
    "pretrain", "MLM + SOP pretraining (resumes from --run-dir)",
    "roformer pretrain [--config FILE.textproto] [--set path=value ...] [--run-dir DIR]\n"
    "                  [--no-resume [--force]] [--max-steps K]\n"
    "Trains on data.corpus (text, or a directory from `roformer data prepare`) with data.vocab.\n"
    "Logs step, loss, MLM/SOP accuracy, lr, grad norm, tokens/s, GFLOP/s, MFU and ETA every\n"
    "train.log_every steps (and as JSON lines in DIR/metrics.jsonl); evaluates on held-out\n"
    "documents every train.eval_every steps; checkpoints every checkpoint.every steps into\n"
    "DIR/checkpoints (or checkpoint.dir). Running again with the same --run-dir resumes from the\n"
    "newest complete checkpoint; --no-resume starts over and refuses to delete an existing run\n"
    "unless --force. --max-steps K stops this invocation after K more steps (with a checkpoint)\n"
    "without changing the schedule, which still spans train.steps.",
    &RunPretrain);

}  // namespace
}  // namespace roformer
