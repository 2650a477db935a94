// `roformer embed`: sentence embeddings (one sentence per line in, safetensors [N, H] out), with
// an optional whitening kernel from `roformer whiten fit`.
#include <chrono>
#include <cstdio>
#include <vector>

#include "data/sts/embedder.h"
#include "data/sts/whitening.h"
#include "launch/command.h"
#include "launch/embed_common.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/safetensors.h"

namespace roformer {
namespace {

int RunEmbed(int argc, char** argv) {
  std::vector<std::string> spec(std::begin(kEmbedFlags), std::end(kEmbedFlags));
  spec.insert(spec.end(), {"input", "out", "whiten", "k"});
  Flags flags(argc, argv, spec);
  if (!flags.positional().empty()) Fail("embed: unexpected argument '", flags.positional()[0], "'");
  const std::string input = flags.Require("input"), out = flags.Require("out");
  if (flags.Has("k") && !flags.Has("whiten")) Fail("embed: --k needs --whiten KERNEL");
  auto grid = MakeEmbedGrid(flags);
  const auto t0 = std::chrono::steady_clock::now();
  EmbedSetup s = MakeEmbedSetup(flags);
  std::vector<std::string> sentences = sts::ReadSentences(input);
  const int H = s.embedder->dim();
  const int64_t n = static_cast<int64_t>(sentences.size());
  std::vector<float> emb = sts::EmbedDistributed(*s.embedder, sentences, &grid->dp());
  int cols = H;
  std::vector<float> result;
  if (flags.Has("whiten")) {
    sts::WhiteningKernel kern = sts::WhiteningKernel::Load(flags.Get("whiten"));
    if (kern.dim != H) {
      Fail("embed: ", flags.Get("whiten"), " was fitted on ", kern.dim,
           "-dim vectors but the model's hidden size is ", H);
    }
    const long long k = flags.GetInt("k", -1);
    if (k == 0 || k > H || k < -1) Fail("embed: --k must be in [1, ", H, "] (or -1 = all)");
    cols = k < 0 ? H : static_cast<int>(k);
    result.resize(size_t(n) * cols);
    kern.Apply(emb.data(), static_cast<int>(n), cols, result.data(), /*l2_normalize=*/true);
  } else {
    result = std::move(emb);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (grid->world_rank() == 0) {
    safetensors::Writer w;
    w.AddFloat("embeddings", {n, cols}, result);
    w.SetMetadata("ckpt", s.encoder.ckpt_dir);
    w.SetMetadata("vocab", s.encoder.vocab_path);
    w.SetMetadata("input", input);
    w.SetMetadata("pooling", sts::PoolingName(s.embedder->options().pooling));
    w.SetMetadata("max_len", std::to_string(s.embedder->max_len()));
    w.SetMetadata("whiten", flags.Get("whiten", "none"));
    if (flags.Has("whiten")) {
      w.SetMetadata("k", std::to_string(cols));
      w.SetMetadata("l2_normalized", "true");
    }
    w.WriteFile(out);
    const auto& st = s.embedder->stats();
    std::printf(
        "{\"out\":\"%s\",\"sentences\":%lld,\"dim\":%d,\"pooling\":\"%s\",\"truncated\":%lld,"
        "\"seconds\":%.3f}\n",
        out.c_str(), static_cast<long long>(n), cols,
        sts::PoolingName(s.embedder->options().pooling), static_cast<long long>(st.truncated),
        secs);
  }
  return 0;
}

RegisterCommand reg(
    "embed", "sentence embeddings (cls / pooler / last-avg / first-last-avg), optionally whitened",
    std::string("roformer embed --ckpt CKPT --input FILE --pooling P --out EMB.safetensors\n"
                "               [--vocab V] [--max-len 64] [--batch 64] [--whiten KERNEL "
                "--k K]\n"
                "FILE: one sentence per line (blank lines skipped), or an STS .tsv (text1, text2 "
                "of each pair).\n"
                "Writes \"embeddings\" [N, H] float32 in input order (dropout off). With --whiten "
                "(a kernel from\n"
                "`roformer whiten fit`): (x - mu) W[:, :K], L2-normalised, [N, K] (K default: "
                "all).\n"
                "Under mpirun each rank embeds a contiguous slice; rank 0 writes the file.\n") +
        kEmbedFlagsHelp,
    &RunEmbed);

}  // namespace
}  // namespace roformer
