// `roformer sts`: unsupervised STS evaluation of sentence embeddings (BERT-whitening's protocol,
// seeds.md §3.1): cosine of the (whitened, L2-normalised) pair embeddings vs the gold labels,
// Spearman with scipy semantics.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include "data/sts/embedder.h"
#include "data/sts/spearman.h"
#include "data/sts/sts_data.h"
#include "data/sts/whitening.h"
#include "launch/command.h"
#include "launch/embed_common.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/json.h"

namespace roformer {
namespace {

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// "none" -> 0, "full" -> -1 (all dims), "K" -> K in [1, H].
int ParseWhitenMode(const std::string& m, int H) {
  if (m == "none") return 0;
  if (m == "full") return -1;
  size_t used = 0;
  long long k = 0;
  try {
    k = std::stoll(m, &used);
  } catch (...) {
    used = 0;
  }
  if (used != m.size() || m.empty()) Fail("sts: --whiten '", m, "': expected none, full or K");
  if (k < 1 || k > H) Fail("sts: --whiten ", k, ": K must be in [1, ", H, "] (hidden size)");
  return static_cast<int>(k);
}

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (true) {
    size_t e = s.find(',', b);
    out.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return out;
}

int RunSts(int argc, char** argv) {
  std::vector<std::string> spec(std::begin(kEmbedFlags), std::end(kEmbedFlags));
  spec.insert(spec.end(), {"data", "whiten", "fit", "chunk"});
  Flags flags(argc, argv, spec);
  std::vector<std::string> fit_files = flags.GetAll("fit");
  if (!flags.positional().empty()) {
    if (fit_files.empty()) Fail("sts: unexpected argument '", flags.positional()[0], "'");
    for (const auto& p : flags.positional()) fit_files.push_back(p);  // `--fit a b c`
  }
  const std::string data = flags.Require("data");
  const long long chunk = flags.GetInt("chunk", 8192);
  if (chunk <= 0) Fail("sts: --chunk must be > 0");
  // Parse the data before loading the model: a bad line fails fast.
  std::vector<sts::StsPair> pairs = sts::ReadStsFile(data);
  auto grid = MakeEmbedGrid(flags);
  const auto t0 = std::chrono::steady_clock::now();
  EmbedSetup s = MakeEmbedSetup(flags);
  const int H = s.embedder->dim();
  std::vector<std::string> modes = SplitComma(flags.Get("whiten", "none"));
  std::vector<int> ks;
  bool need_fit = false;
  for (const auto& m : modes) {
    ks.push_back(ParseWhitenMode(m, H));
    need_fit |= ks.back() != 0;
  }
  if (!fit_files.empty() && !need_fit) Fail("sts: --fit needs --whiten full or K");

  const int64_t n = static_cast<int64_t>(pairs.size());
  std::vector<std::string> sentences;
  sentences.reserve(2 * n);
  std::vector<double> labels(n);
  for (int64_t i = 0; i < n; ++i) {
    sentences.push_back(pairs[i].text1);
    sentences.push_back(pairs[i].text2);
    labels[i] = pairs[i].label;
  }
  auto te = std::chrono::steady_clock::now();
  std::vector<float> emb = sts::EmbedDistributed(*s.embedder, sentences, &grid->dp());
  const double embed_s = Since(te);
  // Of --data only (not the fit files), summed over the DP slices.
  int64_t truncated = s.embedder->stats().truncated;
  grid->dp().AllReduce(std::span<int64_t>(&truncated, 1));

  sts::WhiteningKernel kern;
  std::string fit_on = "none";
  int64_t fit_sentences = 0;
  double fit_s = 0;
  if (need_fit) {
    auto tf = std::chrono::steady_clock::now();
    sts::CovarianceAccumulator acc(H);
    if (fit_files.empty()) {
      // The post's protocol: statistics of the evaluation sentences themselves (no labels).
      fit_on = "data";
      acc.Add(emb.data(), 2 * n, H);
    } else {
      fit_on.clear();
      for (const auto& f : fit_files) {
        fit_on += (fit_on.empty() ? "" : ",") + f;
        std::vector<std::string> fs = sts::ReadSentences(f);
        for (size_t b0 = 0; b0 < fs.size(); b0 += chunk) {
          const size_t b1 = std::min(fs.size(), b0 + static_cast<size_t>(chunk));
          std::vector<std::string> part(fs.begin() + b0, fs.begin() + b1);
          std::vector<float> e = sts::EmbedDistributed(*s.embedder, part, &grid->dp());
          acc.Add(e.data(), static_cast<int64_t>(part.size()), H);
        }
      }
    }
    fit_sentences = acc.count();
    kern = sts::FitWhitening(acc);
    fit_s = Since(tf);
  }

  if (grid->world_rank() != 0) return 0;
  for (size_t mi = 0; mi < modes.size(); ++mi) {
    const int k = ks[mi];
    const int cols = k == 0 ? H : (k < 0 ? H : k);
    std::vector<float> y;
    const float* v = emb.data();
    if (k != 0) {
      y.resize(size_t(2 * n) * cols);
      kern.Apply(emb.data(), static_cast<int>(2 * n), cols, y.data(), /*l2_normalize=*/true);
      v = y.data();
    }
    std::vector<double> sims(n);
    for (int64_t i = 0; i < n; ++i) {
      sims[i] = sts::CosineSimilarity(v + (2 * i) * cols, v + (2 * i + 1) * cols, cols);
    }
    Json j = Json::Object();
    j.set("spearman", sts::Spearman(labels, sims));
    j.set("pairs", static_cast<long long>(n));
    j.set("pooling", sts::PoolingName(s.embedder->options().pooling));
    j.set("whiten", modes[mi]);
    j.set("k", k == 0 ? Json() : Json(cols));
    j.set("fit_on", k == 0 ? std::string("none") : fit_on);
    j.set("fit_sentences", k == 0 ? 0LL : static_cast<long long>(fit_sentences));
    j.set("num_floored", k == 0 ? 0 : kern.num_floored);
    j.set("data", data);
    j.set("ckpt", s.encoder.ckpt_dir);
    j.set("max_len", s.embedder->max_len());
    j.set("truncated", static_cast<long long>(truncated));
    j.set("embed_s", embed_s);
    j.set("fit_s", fit_s);
    j.set("total_s", Since(t0));
    std::cout << j.Dump() << "\n";
  }
  return 0;
}

RegisterCommand reg(
    "sts", "unsupervised STS Spearman of sentence embeddings, with optional BERT-whitening",
    std::string(
        "roformer sts --ckpt CKPT --data PAIRS.tsv --pooling P [--whiten none|full|K[,...]]\n"
        "             [--fit FILE [FILE...]] [--vocab V] [--max-len 64] [--batch 64]\n"
        "PAIRS.tsv: text1<TAB>text2<TAB>label per line (a bad line is an error naming "
        "file:line).\n"
        "Prints one JSON object per --whiten mode: {spearman, pairs, pooling, whiten, fit_on, "
        "...}:\n"
        "Spearman (scipy) of the labels vs cosine(a, b) of the pair embeddings; with whitening "
        "the vectors\n"
        "are (x - mu) W[:, :K] and L2-normalised (full: K = hidden size). The whitening is "
        "fitted on the\n"
        "--fit files (sentences, or .tsv pairs), by default on the sentences of --data itself "
        "(fit_on\n"
        "\"data\", the post's protocol: unlabelled evaluation sentences).\n") +
        kEmbedFlagsHelp,
    &RunSts);

}  // namespace
}  // namespace roformer
