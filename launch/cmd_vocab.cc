// `roformer vocab build --corpus FILE_OR_DIR --size N --out vocab.txt`: WordPiece vocab from a
// corpus (algorithm: data/tokenizer/vocab_builder.h).
#include <glog/logging.h>

#include <iostream>

#include "data/tokenizer/vocab_builder.h"
#include "launch/command.h"
#include "runtime/error.h"
#include "runtime/flags.h"

namespace roformer {
namespace {

int RunVocabBuild(int argc, char** argv) {
  Flags flags(argc, argv, {"corpus", "size", "out", "min-count", "no-lower-case!"});
  if (!flags.positional().empty()) {
    Fail("vocab build: unexpected argument '", flags.positional()[0], "'");
  }
  VocabBuildOptions opt;
  long long size = flags.GetInt("size", opt.size);
  if (size < 5 || size > 10'000'000)
    Fail("vocab build: --size must be in [5, 10000000], got ", size);
  opt.size = static_cast<int>(size);
  opt.min_pair_count = flags.GetInt("min-count", opt.min_pair_count);
  opt.do_lower_case = !flags.GetBool("no-lower-case");
  std::string out = flags.Require("out");
  VocabBuilder builder(opt);
  for (const std::string& c : flags.GetAll("corpus")) builder.AddPath(c);
  if (flags.GetAll("corpus").empty()) Fail("missing required flag --corpus");
  std::vector<std::string> vocab = builder.Build();
  VocabBuilder::Write(vocab, out);
  LOG(INFO) << "vocab build: " << builder.num_lines() << " lines, " << builder.num_distinct_words()
            << " distinct words -> " << vocab.size() << " tokens in " << out;
  if (static_cast<int>(vocab.size()) < opt.size) {
    LOG(WARNING) << "vocab build: corpus exhausted before --size " << opt.size << " (no pair seen "
                 << opt.min_pair_count << "+ times)";
  }
  return 0;
}

RegisterCommand reg(
    "vocab build", "build a WordPiece vocab.txt from a text corpus",
    "roformer vocab build --corpus FILE_OR_DIR [--corpus ...] --size N --out vocab.txt\n"
    "    [--min-count 2] [--no-lower-case]\n"
    "Lines (split on '\\n' only) are BERT-basic-tokenized; the vocab is: special tokens\n"
    "(Chinese BERT layout [PAD]=0 [unused1..99] [UNK]=100 [CLS] [SEP] [MASK] when\n"
    "N >= 1000, else [PAD] [UNK] [CLS] [SEP] [MASK]), every character seen by\n"
    "frequency, their '##' twins, then merged pieces (most frequent adjacent pair\n"
    "first, ties lexicographic) until N tokens. Deterministic.",
    &RunVocabBuild);

}  // namespace
}  // namespace roformer
