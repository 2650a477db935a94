// `roformer bench embed`: sentence-embedding throughput (tokenize + encoder + pooling) and the
// whitening fit time on the resulting vectors.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "data/sts/embedder.h"
#include "data/sts/whitening.h"
#include "launch/command.h"
#include "launch/embed_common.h"
#include "runtime/error.h"
#include "runtime/flags.h"

namespace roformer {
namespace {

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Random sentences of single CJK characters the vocab knows, lengths uniform in [lo, hi]
// characters (LCQMC/STS-B sentences are 5-40 characters).
std::vector<std::string> SyntheticSentences(const Vocab& v, int64_t n, int lo, int hi,
                                            uint64_t seed) {
  std::vector<std::string> chars;
  for (const auto& t : v.tokens()) {
    // 3-byte UTF-8 in U+4E00..U+9FFF.
    if (t.size() == 3 && static_cast<unsigned char>(t[0]) >= 0xE4 &&
        static_cast<unsigned char>(t[0]) <= 0xE9) {
      chars.push_back(t);
    }
  }
  if (chars.empty()) Fail("bench embed: the vocab has no CJK characters; give --input FILE");
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> len(lo, hi);
  std::uniform_int_distribution<size_t> pick(0, chars.size() - 1);
  std::vector<std::string> out(n);
  for (auto& s : out) {
    const int m = len(rng);
    for (int i = 0; i < m; ++i) s += chars[pick(rng)];
  }
  return out;
}

int RunBenchEmbed(int argc, char** argv) {
  std::vector<std::string> spec(std::begin(kEmbedFlags), std::end(kEmbedFlags));
  spec.insert(spec.end(), {"n", "input", "seed", "min-chars", "max-chars"});
  Flags flags(argc, argv, spec);
  if (!flags.positional().empty()) Fail("bench embed: unexpected '", flags.positional()[0], "'");
  const long long n = flags.GetInt("n", 100000);
  if (n < 2) Fail("bench embed: --n must be >= 2");
  EmbedSetup s = MakeEmbedSetup(flags, "first-last-avg");
  std::vector<std::string> sentences;
  std::string source = "synthetic";
  if (flags.Has("input")) {
    source = flags.Get("input");
    std::vector<std::string> in = sts::ReadSentences(source);
    sentences.reserve(n);
    for (long long i = 0; i < n; ++i) sentences.push_back(in[i % in.size()]);
  } else {
    const int lo = static_cast<int>(flags.GetInt("min-chars", 5));
    const int hi = static_cast<int>(flags.GetInt("max-chars", 40));
    if (lo < 0 || hi < lo) Fail("bench embed: need 0 <= --min-chars <= --max-chars");
    sentences = SyntheticSentences(s.encoder.tokenizer->vocab(), n, lo, hi,
                                   static_cast<uint64_t>(flags.GetInt("seed", 1)));
  }
  const int H = s.embedder->dim();
  const ModelDims& d = s.encoder.model->dims();
  int64_t params = 0;
  for (const auto& info : s.encoder.model->store().infos()) params += info.numel;

  auto t0 = std::chrono::steady_clock::now();
  std::vector<float> emb = s.embedder->Embed(sentences);
  const double embed_s = Since(t0);
  const sts::EmbedStats& st = s.embedder->stats();

  t0 = std::chrono::steady_clock::now();
  sts::CovarianceAccumulator acc(H);
  const int64_t chunk = 8192;
  for (int64_t r = 0; r < n; r += chunk) {
    acc.Add(emb.data() + r * H, std::min<int64_t>(chunk, n - r), H);
  }
  const double acc_s = Since(t0);
  t0 = std::chrono::steady_clock::now();
  sts::WhiteningKernel kern = sts::FitWhitening(acc);
  const double fit_s = Since(t0);

  std::printf(
      "{\"bench\":\"embed\",\"ckpt\":\"%s\",\"source\":\"%s\",\"pooling\":\"%s\","
      "\"hidden\":%d,\"layers\":%d,\"heads\":%d,\"intermediate\":%d,\"vocab\":%d,\"params\":%lld,"
      "\"threads\":%d,\"n\":%lld,\"max_len\":%d,\"batch\":%d,\"tokens\":%lld,"
      "\"padding_efficiency\":%.4f,\"truncated\":%lld,\"embed_s\":%.3f,"
      "\"sentences_per_s\":%.1f,\"tokens_per_s\":%.1f,\"tokenize_s\":%.3f,\"forward_s\":%.3f,"
      "\"pool_s\":%.3f,\"whiten_accumulate_s\":%.4f,\"whiten_fit_s\":%.4f,\"num_floored\":%d}\n",
      s.encoder.ckpt_dir.c_str(), source.c_str(), sts::PoolingName(s.embedder->options().pooling),
      H, d.layers, d.heads, d.intermediate, d.vocab, static_cast<long long>(params),
      omp_get_max_threads(), n, s.embedder->max_len(), s.embedder->options().batch,
      static_cast<long long>(st.tokens),
      double(st.tokens) / double(std::max<int64_t>(1, st.padded)),
      static_cast<long long>(st.truncated), embed_s, n / embed_s, st.tokens / embed_s,
      st.tokenize_s, st.forward_s, st.pool_s, acc_s, fit_s, kern.num_floored);
  return 0;
}

RegisterCommand reg(
    "bench embed", "sentence-embedding throughput and whitening fit time",
    std::string("roformer bench embed --ckpt CKPT [--n 100000] [--input FILE] [--pooling "
                "first-last-avg]\n"
                "                     [--max-len 64] [--batch 64] [--min-chars 5] [--max-chars "
                "40] [--seed 1]\n"
                "Embeds n sentences (FILE cycled, or random CJK strings of the vocab's "
                "characters) and fits the\n"
                "whitening kernel on them; prints one JSON line (sentences/s, tokens/s, "
                "tokenize/forward/pool\n"
                "seconds, padding efficiency, accumulate and fit seconds). Threads: "
                "OMP_NUM_THREADS.\n") +
        kEmbedFlagsHelp,
    &RunBenchEmbed);

}  // namespace
}  // namespace roformer
