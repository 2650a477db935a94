// `roformer eval-mlm`: held-out MLM loss/accuracy of a checkpoint at any sequence length.
//
// RoPE has no learned positions (the sin/cos table is computed from max_position_embeddings), so a
// model trained at length 64 can be evaluated at 1024 exactly by building a larger table: no
// parameter changes shape. This is how the length-extrapolation experiment (seeds.md §7.4) measures
// Attention-O (sqrt_d) vs Attention-E (log_n) beyond the training length.
#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "data/corpus_shards.h"
#include "data/pretrain_batch_source.h"
#include "data/pretrain_samples.h"
#include "data/tokenizer/tokenizer.h"
#include "launch/command.h"
#include "model/hf_interop.h"
#include "model/roformer_model.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/json.h"

namespace roformer {
namespace {

namespace fs = std::filesystem;

int RunEvalMlm(int argc, char** argv) {
  Flags flags(argc, argv,
              {"ckpt", "corpus", "vocab", "seq-len", "samples", "seed", "micro-batch", "set"});
  if (!flags.positional().empty()) Fail("unexpected argument '", flags.positional()[0], "'");
  const std::string ckpt_path = flags.Require("ckpt"), corpus_dir = flags.Require("corpus"),
                    vocab_path = flags.Require("vocab");
  const long long seq_len = flags.GetInt("seq-len", 0);
  if (!flags.Has("seq-len")) Fail("--seq-len is required");
  if (seq_len < 8 || seq_len > 65536) Fail("--seq-len ", seq_len, ": must be in [8, 65536]");
  const long long samples = flags.GetInt("samples", 256);
  if (samples <= 0) Fail("--samples ", samples, ": must be > 0");
  const long long micro = flags.GetInt("micro-batch", 8);
  if (micro <= 0) Fail("--micro-batch ", micro, ": must be > 0");
  const long long seed = flags.GetInt("seed", 12345);
  if (seed < 0) Fail("--seed ", seed, ": must be >= 0");

  const auto t0 = std::chrono::steady_clock::now();
  LoadedCheckpoint ck = LoadCheckpoint(ckpt_path, /*with_optimizer=*/false);
  if (!ck.manifest.has_model()) Fail(ck.dir, ": checkpoint manifest has no model config");
  const config::ModelConfig trained = ck.manifest.model();

  // The evaluation config: the checkpoint's model, the defaults elsewhere, then --set (e.g.
  // model.attention_scale=log_n to apply the scale at inference only, train.mask_prob,
  // data.pack_documents=false). The RoPE table is then widened to the evaluation length.
  config::Config cfg = ConfigForModel(trained, ck.dir + "/manifest.pb");
  ApplyOverrides(&cfg, flags.GetAll("set"));
  if (cfg.model().max_position_embeddings() < seq_len)
    cfg.mutable_model()->set_max_position_embeddings(static_cast<int>(seq_len));
  cfg.mutable_train()->set_seq_len(static_cast<int>(seq_len));
  ValidateConfig(cfg, "eval-mlm (checkpoint " + ck.dir + " + --set)");

  Tokenizer tokenizer(Vocab::Load(vocab_path), cfg.data().do_lower_case());
  const Vocab& vocab = tokenizer.vocab();
  if (vocab.size() != cfg.model().vocab_size()) {
    Fail("--vocab ", vocab_path, " has ", vocab.size(), " entries but the checkpoint model has ",
         cfg.model().vocab_size());
  }
  if (ck.manifest.has_vocab() && !ck.manifest.vocab().tokens_hash().empty() &&
      ck.manifest.vocab().tokens_hash() != VocabTokensHash(vocab.tokens())) {
    Fail("--vocab ", vocab_path, " (", VocabTokensHash(vocab.tokens()),
         ") is not the vocab the checkpoint was trained with (", ck.manifest.vocab().tokens_hash(),
         ", ", ck.manifest.vocab().path(), ")");
  }
  if (!fs::exists(fs::path(corpus_dir) / "manifest.txt")) {
    Fail("--corpus ", corpus_dir,
         ": not a prepared corpus directory (no manifest.txt); run `roformer data prepare` first");
  }
  ShardedCorpus corpus = ShardedCorpus::Open(corpus_dir);
  corpus.CheckVocab(vocab);
  if (corpus.eval_documents().empty())
    Fail("--corpus ", corpus_dir, ": has no held-out documents (eval_fraction 0)");

  PretrainOptions po = PretrainOptionsFromConfig(cfg);
  po.max_seq_len = static_cast<int>(seq_len);
  po.seed = static_cast<uint64_t>(seed);
  PretrainSampleBuilder builder(&corpus, vocab, po, SampleSplit::kEval);

  RoFormerModel model(cfg.model(), TpRegion(), /*with_optimizer_state=*/false);
  RestoreInto(ck, &model.store(), /*with_optimizer=*/false, /*allow_unused=*/false);

  double mlm_sum = 0, sop_sum = 0;
  int64_t mlm_n = 0, mlm_ok = 0, sop_n = 0, sop_ok = 0, real_tokens = 0, full_rows = 0;
  Batch b;
  for (long long first = 0; first < samples; first += micro) {
    const int count = static_cast<int>(std::min(micro, samples - first));
    builder.FillBatch(static_cast<uint64_t>(first), count, &b);
    for (int r = 0; r < count; ++r) {
      int n = 0;
      for (int t = 0; t < b.seq_len; ++t)
        n += b.attention_mask[static_cast<size_t>(r) * b.seq_len + t];
      real_tokens += n;
      if (n == b.seq_len) ++full_rows;
    }
    LossStats s = model.ForwardBackward(b, DropoutContext{}, /*backward=*/false);
    mlm_sum += s.mlm_loss * s.mlm_count;
    mlm_n += s.mlm_count;
    mlm_ok += s.mlm_correct;
    sop_sum += s.sop_loss * s.sop_count;
    sop_n += s.sop_count;
    sop_ok += s.sop_correct;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  Json out = Json::Object();
  out.set("ckpt", Json(ck.dir));
  out.set("step", Json(static_cast<long long>(ck.state.step)));
  out.set("attention_scale", Json(cfg.model().attention_scale()));
  out.set("trained_max_position_embeddings", Json(trained.max_position_embeddings()));
  out.set("seq_len", Json(seq_len));
  out.set("sequences", Json(samples));
  // Distinct starting chunks of the held-out split at this length; --samples beyond it start a
  // second (differently permuted and masked) pass over the same text.
  out.set("eval_chunks", Json(static_cast<long long>(builder.epoch_size())));
  out.set("eval_documents", Json(static_cast<long long>(corpus.eval_documents().size())));
  out.set("pack_documents", Json(po.pack_following_documents));
  out.set("mean_real_tokens", Json(static_cast<double>(real_tokens) / samples));
  out.set("fill", Json(static_cast<double>(real_tokens) / (samples * seq_len)));
  out.set("full_sequences", Json(static_cast<long long>(full_rows)));
  out.set("masked_tokens", Json(static_cast<long long>(mlm_n)));
  out.set("mlm_loss", Json(mlm_n ? mlm_sum / mlm_n : 0.0));
  out.set("mlm_acc", Json(mlm_n ? static_cast<double>(mlm_ok) / mlm_n : 0.0));
  out.set("sop_loss", Json(sop_n ? sop_sum / sop_n : 0.0));
  out.set("sop_acc", Json(sop_n ? static_cast<double>(sop_ok) / sop_n : 0.0));
  out.set("seed", Json(seed));
  out.set("seconds", Json(seconds));
  std::cout << out.Dump() << std::endl;
  return 0;
}

RegisterCommand reg(
    "eval-mlm", "held-out MLM loss/accuracy of a checkpoint at any sequence length",
    "roformer eval-mlm --ckpt DIR --corpus SHARDS --vocab V --seq-len N [--samples K]\n"
    "                  [--seed S] [--micro-batch M] [--set path=value ...]\n"
    "Loads the model of checkpoint DIR (a root or a step directory), builds K (default 256)\n"
    "held-out MLM + SOP samples of length N from the eval documents of the prepared corpus\n"
    "SHARDS (`roformer data prepare`; packing the following documents so long sequences are\n"
    "full; --set data.pack_documents=false to pack within one document), runs the forward pass\n"
    "with dropout off and prints one JSON line: mlm_loss, mlm_acc, sop_loss, sop_acc, the mean\n"
    "number of real tokens per sequence (mean_real_tokens, fill = mean / N), the distinct\n"
    "held-out chunks at this length (eval_chunks) and the masked positions scored.\n"
    "model.max_position_embeddings is raised to N when smaller: RoPE's sin/cos table is\n"
    "computed, so this is exact. --set applies to the checkpoint's config (e.g.\n"
    "model.attention_scale=log_n, train.mask_prob=0.15). Samples are a pure function of\n"
    "(--seed, index) (default seed 12345): the same command prints the same numbers.",
    &RunEvalMlm);

}  // namespace
}  // namespace roformer
