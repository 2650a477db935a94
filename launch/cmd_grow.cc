// `roformer grow`: function-preserving growth of a pretraining checkpoint (model/growth/).
#include <google/protobuf/text_format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "data/pretrain_batch_source.h"
#include "data/tokenizer/tokenizer.h"
#include "launch/command.h"
#include "model/growth/grow_checkpoint.h"
#include "model/roformer_model.h"
#include "model/synthetic_batches.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/flags.h"

namespace roformer {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) Fail(path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// --to accepts a full Config textproto (only the fields it sets override the source run's config)
// or a bare ModelConfig textproto.
config::Config LoadTarget(const std::string& path) {
  const std::string text = ReadFile(path);
  google::protobuf::TextFormat::Parser quiet;
  quiet.RecordErrorsTo(nullptr);
  config::Config cfg;
  if (quiet.ParseFromString(text, &cfg)) return cfg;
  config::ModelConfig mc;
  if (quiet.ParseFromString(text, &mc)) {
    *cfg.mutable_model() = mc;
    return cfg;
  }
  return LoadConfigFile(path);  // throws with file:line:column and the field
}

std::vector<int> ParsePositions(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size()) Fail("--insert-layers: '", item, "' is not an integer");
    out.push_back(v);
  }
  return out;
}

std::unique_ptr<RoFormerModel> ModelFrom(const config::ModelConfig& mc,
                                         const std::vector<LoadedTensor>& tensors) {
  auto m = std::make_unique<RoFormerModel>(mc, TpRegion(), /*with_optimizer_state=*/false);
  LoadedIntoStore(tensors, &m->store(), /*with_optimizer=*/false);
  return m;
}

int RunGrow(int argc, char** argv) {
  Flags flags(argc, argv,
              {"from", "to", "out", "seed", "noise-scale", "insert-layers", "vocab", "corpus",
               "set", "eval-samples", "seq-len"});
  if (!flags.positional().empty()) Fail("unexpected argument '", flags.positional()[0], "'");
  const std::string from = flags.Require("from"), to_path = flags.Require("to"),
                    out = flags.Require("out");

  LoadedCheckpoint ck = LoadCheckpoint(from, /*with_optimizer=*/true);
  if (!ck.manifest.has_model()) Fail(ck.dir, ": checkpoint manifest has no model config");
  config::Config src_cfg;
  if (!ck.manifest.config_text().empty()) {
    google::protobuf::TextFormat::Parser quiet;
    quiet.RecordErrorsTo(nullptr);
    if (!quiet.ParseFromString(ck.manifest.config_text(), &src_cfg)) src_cfg.Clear();
  }
  *src_cfg.mutable_model() = ck.manifest.model();
  config::Config out_cfg = src_cfg;
  out_cfg.MergeFrom(LoadTarget(to_path));
  ApplyOverrides(&out_cfg, flags.GetAll("set"));
  if (out_cfg.model().vocab_size() == 0) {
    out_cfg.mutable_model()->set_vocab_size(src_cfg.model().vocab_size());
  }
  ValidateConfig(out_cfg, to_path);

  TrainState st = ck.state;
  GrowthOptions opt;
  // Default seed: a function of the run seed and the step, so successive growths draw differently.
  opt.seed = static_cast<uint64_t>(
      flags.GetInt("seed", static_cast<long long>(st.seed * 1000003ull + st.step)));
  opt.noise_scale = flags.GetDouble("noise-scale", 0.1);
  opt.insert_positions = ParsePositions(flags.Get("insert-layers"));
  opt.tp = out_cfg.parallel().tp();
  GrowthResult res = GrowCheckpoint(ck.tensors, src_cfg.model(), out_cfg.model(), opt);
  *out_cfg.mutable_model() = res.model;
  for (const std::string& n : res.notes) std::printf("grow: %s\n", n.c_str());

  // Fixed evaluation batch: held-out corpus samples with --corpus (and --vocab or the run's
  // data.vocab), else synthetic tokens over the model's vocab.
  const config::ModelConfig& sm = src_cfg.model();
  const int seq_len = static_cast<int>(
      flags.GetInt("seq-len", std::min({src_cfg.train().seq_len(), sm.max_position_embeddings(),
                                        res.model.max_position_embeddings()})));
  const int samples = static_cast<int>(flags.GetInt("eval-samples", 8));
  if (seq_len < 2 || samples < 1) Fail("--seq-len must be >= 2 and --eval-samples >= 1");
  Batch batch;
  std::string eval_what;
  std::filesystem::path scratch;
  if (flags.Has("corpus")) {
    const std::string vocab_path = flags.Get("vocab", src_cfg.data().vocab());
    if (vocab_path.empty()) Fail("--corpus needs --vocab (the run's config names no data.vocab)");
    Tokenizer tok(Vocab::Load(vocab_path), src_cfg.data().do_lower_case());
    if (tok.vocab().size() != sm.vocab_size()) {
      Fail("--vocab ", vocab_path, " has ", tok.vocab().size(), " entries, the model ",
           sm.vocab_size());
    }
    // A text corpus is tokenised into a scratch directory (prepared shards are read in place).
    scratch =
        std::filesystem::temp_directory_path() / ("roformer-grow-" + std::to_string(::getpid()));
    auto corpus = OpenOrPrepareCorpus(flags.Get("corpus"), tok, scratch.string(),
                                      src_cfg.data().eval_fraction());
    PretrainOptions po = PretrainOptionsFromConfig(src_cfg);
    po.max_seq_len = seq_len;
    PretrainBatchSource data(corpus, tok.vocab(), po);
    const bool held_out = data.eval_samples_available() > 0;
    data.Fill(0, samples, held_out, &batch);
    eval_what = std::to_string(samples) + (held_out ? " held-out" : " training") +
                " corpus samples of " + std::to_string(seq_len) + " tokens";
  } else {
    SyntheticBatchSource data(sm.vocab_size(), seq_len, /*seed=*/1234);
    data.Fill(0, samples, /*eval=*/true, &batch);
    eval_what =
        std::to_string(samples) + " synthetic samples of " + std::to_string(seq_len) + " tokens";
  }
  LossStats before, after;
  {
    auto small = ModelFrom(sm, ck.tensors);
    before = small->ForwardBackward(batch, DropoutContext{}, /*backward=*/false);
  }
  {
    auto big = ModelFrom(res.model, res.tensors);
    after = big->ForwardBackward(batch, DropoutContext{}, /*backward=*/false);
  }
  if (!scratch.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(scratch, ec);
  }
  const double diff = std::fabs(after.mlm_loss - before.mlm_loss);
  std::printf("eval (%s, dropout off):\n", eval_what.c_str());
  std::printf("mlm loss before %.9g\nmlm loss after  %.9g\n", before.mlm_loss, after.mlm_loss);
  std::printf("|delta| %.3g (relative %.3g); sop loss %.9g -> %.9g\n", diff,
              diff / std::max(1e-30, std::fabs(before.mlm_loss)), before.sop_loss, after.sop_loss);

  // Save with the target's placements and vocab padding (tp = 1 store of the logical tensors).
  bool with_opt = false;
  for (const LoadedTensor& t : res.tensors) with_opt = with_opt || t.kind != ckpt::PARAM;
  st.growth_stage += 1;
  SaveOptions so;
  so.keep = 0;
  so.vocab.path = ck.manifest.vocab().path();
  so.vocab.tokens_hash = ck.manifest.vocab().tokens_hash();
  so.metadata["grown_from"] = ck.dir;
  for (size_t i = 0; i < res.notes.size(); ++i) {
    so.metadata["growth_" + std::to_string(i)] = res.notes[i];
  }
  so.metadata["growth_seed"] = std::to_string(opt.seed);
  const std::string dir = SaveGrowthResult(out, res, out_cfg, st, so);
  std::printf("wrote %s (step %lld, growth stage %d, %s)\n", dir.c_str(),
              static_cast<long long>(st.step), st.growth_stage,
              with_opt ? "Adam m/c_out, v/c_out^2; new entries m = v = 0" : "no optimizer state");
  std::printf(
      "note: continue with the TARGET model's LR schedule at step %lld with a short linear "
      "re-warmup (Staged Training: 150-200 steps): new entries start with m = v = 0 and split "
      "readers move their summed weight faster. `roformer schedule` does this (stage LR schedules "
      "count from the stage start); `roformer pretrain` resumes with the grown model config but "
      "does not re-warm up.\n",
      static_cast<long long>(st.step));
  return 0;
}

RegisterCommand reg(
    "grow", "grow a checkpoint to a larger model computing the same function",
    "roformer grow --from CKPT --to TARGET.textproto --out CKPT_ROOT [--seed S] [--noise-scale X]\n"
    "              [--insert-layers POS,...] [--set a.b=c ...] [--corpus SHARDS [--vocab V]]\n"
    "              [--eval-samples N] [--seq-len L]\n"
    "\n"
    "Function-preserving (lossless) growth (model/growth/, anchors-growth.md §3): hidden x k\n"
    "(integer), heads x k with head_dim fixed, or head_dim x k_d (RoPE stride placement), FFN to\n"
    "any larger size, and new layers inserted after the first POS layers (POS = num layers "
    "appends\n"
    "at the top; the default when the target is deeper). --to is a Config (or ModelConfig) "
    "textproto;\n"
    "the fields it sets override the source run's config. Copies get zero-sum random splits of "
    "std\n"
    "X * model.initializer_range (default X = 0.1; 0 = symmetric copies, which never diverge\n"
    "without dropout). Adam moments map as m/c_out, v/c_out^2, new parameters m = v = 0, the step\n"
    "is kept. Prints the MLM loss of a fixed evaluation batch before and after (equal up to fp32\n"
    "rounding with --noise-scale 0) and writes <CKPT_ROOT>/step_<N>.",
    &RunGrow);

}  // namespace
}  // namespace roformer
