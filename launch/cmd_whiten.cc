// `roformer whiten fit`: the BERT-whitening kernel (mu, W = U Lambda^{-1/2}) of a model's sentence
// embeddings over one or more files, with streaming statistics (data/sts/whitening.h).
#include <chrono>
#include <cstdio>
#include <vector>

#include "data/sts/embedder.h"
#include "data/sts/whitening.h"
#include "launch/command.h"
#include "launch/embed_common.h"
#include "runtime/error.h"
#include "runtime/flags.h"

namespace roformer {
namespace {

int RunWhitenFit(int argc, char** argv) {
  std::vector<std::string> spec(std::begin(kEmbedFlags), std::end(kEmbedFlags));
  spec.insert(spec.end(), {"input", "out", "chunk"});
  Flags flags(argc, argv, spec);
  std::vector<std::string> inputs = flags.GetAll("input");
  // `--input a b c`: the extra names arrive as positionals.
  for (const auto& p : flags.positional()) inputs.push_back(p);
  if (inputs.empty()) Fail("whiten fit: give --input FILE [FILE...]");
  const std::string out = flags.Require("out");
  const long long chunk = flags.GetInt("chunk", 8192);
  if (chunk <= 0) Fail("whiten fit: --chunk must be > 0");
  auto grid = MakeEmbedGrid(flags);
  const auto t0 = std::chrono::steady_clock::now();
  EmbedSetup s = MakeEmbedSetup(flags);
  const int H = s.embedder->dim();
  sts::CovarianceAccumulator acc(H);
  double embed_s = 0, stats_s = 0;
  for (const auto& path : inputs) {
    // One file's sentences are held as text (small); embeddings stream through in chunks, so
    // memory for vectors stays O(chunk * H) whatever the total.
    std::vector<std::string> sentences = sts::ReadSentences(path);
    for (size_t b0 = 0; b0 < sentences.size(); b0 += chunk) {
      const size_t b1 = std::min(sentences.size(), b0 + static_cast<size_t>(chunk));
      std::vector<std::string> part(sentences.begin() + b0, sentences.begin() + b1);
      auto t1 = std::chrono::steady_clock::now();
      std::vector<float> emb = sts::EmbedDistributed(*s.embedder, part, &grid->dp());
      auto t2 = std::chrono::steady_clock::now();
      acc.Add(emb.data(), static_cast<int64_t>(part.size()), H);
      stats_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count();
      embed_s += std::chrono::duration<double>(t2 - t1).count();
    }
  }
  auto t3 = std::chrono::steady_clock::now();
  sts::WhiteningKernel kern = sts::FitWhitening(acc);
  const double fit_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t3).count();
  if (grid->world_rank() == 0) {
    kern.Save(out);
    const double total =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "{\"out\":\"%s\",\"sentences\":%lld,\"dim\":%d,\"pooling\":\"%s\",\"lambda_max\":%.6g,"
        "\"lambda_min\":%.6g,\"num_floored\":%d,\"embed_s\":%.3f,\"stats_s\":%.4f,\"fit_s\":%.4f,"
        "\"total_s\":%.3f}\n",
        out.c_str(), static_cast<long long>(acc.count()), H,
        sts::PoolingName(s.embedder->options().pooling), kern.eigenvalues.front(),
        kern.eigenvalues.back(), kern.num_floored, embed_s, stats_s, fit_s, total);
  }
  return 0;
}

RegisterCommand reg(
    "whiten fit", "fit a BERT-whitening kernel on a model's sentence embeddings",
    std::string("roformer whiten fit --ckpt CKPT --input FILE [FILE...] --pooling P --out "
                "KERNEL.safetensors\n"
                "                    [--vocab V] [--max-len 64] [--batch 64] [--chunk 8192]\n"
                "FILE: one sentence per line, or an STS .tsv (both sentences of every pair, as "
                "the post fits).\n"
                "Streams the embeddings through double-precision mean/covariance statistics "
                "(--chunk sentences at\n"
                "a time), then W = U Lambda^{-1/2} (np.cov's 1/(N-1)); the kernel file is read by "
                "`embed --whiten`.\n") +
        kEmbedFlagsHelp,
    &RunWhitenFit);

}  // namespace
}  // namespace roformer
