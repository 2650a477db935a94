// Shared set-up of `roformer embed`, `whiten fit`, `sts` and `bench embed`: the data-parallel grid
// (every rank embeds a slice, see data/sts/embedder.h) and the encoder + embedder from flags.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>

#include "data/sts/embedder.h"
#include "launch/launcher_env.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/grid.h"

namespace roformer {

// Flags every embedding command takes.
inline const char* const kEmbedFlags[] = {"ckpt",  "vocab",  "pooling", "max-len",
                                          "batch", "cased!", "dp"};

// DP = the world size the launcher announces (Open MPI, MPICH/PMI), or --dp; 1 without mpirun.
inline std::unique_ptr<Grid> MakeEmbedGrid(const Flags& flags) {
  GridOptions go;
  go.dp = static_cast<int>(flags.GetInt("dp", LauncherWorldSize()));
  if (go.dp <= 0) Fail("--dp must be > 0");
  return Grid::Create(go);
}

struct EmbedSetup {
  sts::Encoder encoder;
  std::unique_ptr<sts::Embedder> embedder;
};

inline EmbedSetup MakeEmbedSetup(const Flags& flags, const std::string& default_pooling = "") {
  EmbedSetup s;
  s.encoder = sts::LoadEncoder(flags.Require("ckpt"), flags.Get("vocab"), !flags.GetBool("cased"));
  sts::EmbedderOptions opt;
  const std::string pooling =
      default_pooling.empty() ? flags.Require("pooling") : flags.Get("pooling", default_pooling);
  opt.pooling = sts::ParsePooling(pooling);
  opt.max_len = static_cast<int>(flags.GetInt("max-len", 64));
  opt.batch = static_cast<int>(flags.GetInt("batch", 64));
  s.embedder =
      std::make_unique<sts::Embedder>(s.encoder.model.get(), s.encoder.tokenizer.get(), opt);
  return s;
}

inline constexpr const char kEmbedFlagsHelp[] =
    "  --ckpt CKPT        checkpoint root or step directory (`roformer ckpt inspect` shows it)\n"
    "  --vocab V          vocab.txt (default: the path the checkpoint recorded; checked against "
    "its hash)\n"
    "  --pooling P        cls | pooler (SOP pooler: dense + tanh on [CLS]) | last-avg | "
    "first-last-avg\n"
    "                     (mean over real tokens of (layer-1 output + last layer) / 2)\n"
    "  --max-len 64       tokens per sentence incl. [CLS]/[SEP] (truncated)\n"
    "  --batch 64         sentences per forward pass (sorted by length, padded per batch)\n"
    "  --cased            do not lower-case (Chinese BERT vocabs are uncased)\n"
    "  --dp N             data-parallel ranks (default: the mpirun world size); each embeds a "
    "slice\n";

}  // namespace roformer
