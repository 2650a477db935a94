// `roformer data prepare`, `roformer data default`, `roformer bench data`.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "data/corpus_shards.h"
#include "data/default_corpus.h"
#include "data/tokenizer/tokenizer.h"
#include "launch/command.h"
#include "runtime/error.h"
#include "runtime/flags.h"

namespace roformer {
namespace {

std::string Commas(uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string out;
  out.reserve(digits.size() + digits.size() / 3);
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string JsonEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o += c;
    }
  }
  return o;
}

int RunDataPrepare(int argc, char** argv) {
  Flags flags(argc, argv,
              {"corpus", "vocab", "out", "blank-line-docs!", "eval-fraction", "force!", "threads",
               "shard-tokens", "cased!"});
  if (!flags.positional().empty()) Fail("unexpected argument '", flags.positional()[0], "'");
  std::vector<std::string> inputs = flags.GetAll("corpus");
  if (inputs.empty()) Fail("missing required flag --corpus");
  const std::string vocab_path = flags.Require("vocab");
  const std::string out = flags.Require("out");
  CorpusOptions opt;
  opt.doc_per_line = !flags.GetBool("blank-line-docs");
  opt.eval_fraction = flags.GetDouble("eval-fraction", 0.01);
  opt.overwrite = flags.GetBool("force");
  opt.threads = static_cast<int>(flags.GetInt("threads", 0));
  const long long shard_tokens = flags.GetInt("shard-tokens", 1LL << 28);
  if (shard_tokens <= 0) Fail("flag --shard-tokens: must be positive");
  opt.max_shard_tokens = static_cast<uint64_t>(shard_tokens);

  Tokenizer tokenizer(Vocab::Load(vocab_path), !flags.GetBool("cased"));
  const CorpusStats st = PrepareCorpus(inputs, tokenizer, out, opt);
  std::cout << "corpus:             " << Commas(st.input_files) << " file(s), "
            << Fixed(st.input_bytes / 1e6, 2) << " MB\n"
            << "documents:          " << Commas(st.documents) << " (train "
            << Commas(st.train_documents) << ", eval " << Commas(st.eval_documents) << "; "
            << Commas(st.dropped_documents) << " without tokens dropped, " << Commas(st.empty_lines)
            << " empty lines skipped)\n"
            << "sentences:          " << Commas(st.sentences) << "\n"
            << "characters:         " << Commas(st.characters) << "\n"
            << "tokens:             " << Commas(st.tokens) << " (max "
            << Commas(st.max_document_tokens) << " per document)\n"
            << "invalid UTF-8 bytes: " << Commas(st.invalid_utf8_bytes) << "\n"
            << "[UNK] rate:         " << Fixed(100.0 * st.unk_rate(), 4) << "% ("
            << Commas(st.unk_tokens) << " tokens)\n"
            << "shards:             " << st.shards << " in " << out << "\n"
            << "time:               " << Fixed(st.seconds, 2) << " s ("
            << Fixed(st.mb_per_second(), 2) << " MB/s)\n";
  return 0;
}

RegisterCommand reg_prepare(
    "data prepare", "tokenize a text corpus into binary token shards",
    "roformer data prepare --corpus FILE_OR_DIR [--corpus ...] --vocab VOCAB --out DIR\n"
    "    [--blank-line-docs] [--eval-fraction 0.01] [--force] [--threads N] [--shard-tokens N]\n"
    "    [--cased]\n"
    "Input: UTF-8 text files (a directory means its *.txt, sorted by name), one document per "
    "line,\n"
    "or with --blank-line-docs documents separated by blank lines. Sentences (for SOP) end at\n"
    "。！？!?；… (and at newlines with --blank-line-docs). Writes DIR/manifest.txt, index.bin and\n"
    "shard-*.bin atomically (DIR.tmp renamed to DIR); --force replaces an existing DIR. Documents\n"
    "whose salted index hash falls under --eval-fraction are held out for evaluation. Output is\n"
    "byte-identical for the same input, vocab and flags.",
    &RunDataPrepare);

int RunDataDefault(int argc, char** argv) {
  Flags flags(argc, argv, {"out", "shared", "fortunes-dir", "man-dir"});
  if (!flags.positional().empty()) Fail("unexpected argument '", flags.positional()[0], "'");
  DefaultCorpusOptions opt;
  const std::string out = flags.Require("out");
  if (flags.Has("shared")) {
    opt.shared_data_dir = flags.Get("shared");
    if (!std::filesystem::is_directory(opt.shared_data_dir)) {
      Fail("flag --shared: ", opt.shared_data_dir, " is not a directory");
    }
  } else if (std::filesystem::is_directory("../shared/data/corpus")) {
    opt.shared_data_dir = "../shared/data";
  }
  if (flags.Has("fortunes-dir")) opt.fortunes_dir = flags.Get("fortunes-dir");
  if (flags.Has("man-dir")) opt.man_dir = flags.Get("man-dir");
  const auto t0 = std::chrono::steady_clock::now();
  const DefaultCorpusStats st = BuildDefaultCorpus(out, opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& s : st.sources) {
    std::cout << s.name << std::string(s.name.size() < 15 ? 15 - s.name.size() : 1, ' ');
    if (!s.found) {
      std::cout << "not found (" << s.location << ")\n";
      continue;
    }
    std::cout << Commas(s.characters) << " characters, " << Commas(s.documents) << " documents, "
              << Commas(s.files) << " files";
    if (s.skipped_files) std::cout << " (" << Commas(s.skipped_files) << " unreadable skipped)";
    if (s.invalid_utf8_bytes)
      std::cout << ", " << Commas(s.invalid_utf8_bytes) << " invalid UTF-8 bytes dropped";
    std::cout << " [" << s.location << "]\n";
  }
  std::cout << "total          " << Commas(st.characters) << " characters, " << Commas(st.documents)
            << " documents, " << Fixed(st.bytes / 1e6, 2) << " MB -> " << st.path << " ("
            << Fixed(secs, 1) << " s)\n";
  return 0;
}

RegisterCommand reg_default(
    "data default", "assemble the built-in default corpus (fortunes-zh, manpages-zh, shared)",
    "roformer data default --out DIR [--shared ../shared/data] [--fortunes-dir D] [--man-dir D]\n"
    "Writes DIR/default-corpus.txt (one document per line) from Debian's fortunes-zh and\n"
    "manpages-zh (roff stripped) plus every *.txt in SHARED/corpus/ when it exists (default\n"
    "../shared/data when present), and prints the characters per source. Then run\n"
    "`roformer data prepare --corpus DIR/default-corpus.txt --vocab V --out SHARDS`.",
    &RunDataDefault);

int RunBenchData(int argc, char** argv) {
  Flags flags(argc, argv, {"corpus", "vocab", "reps", "threads", "max-mb", "cased!"});
  if (!flags.positional().empty()) Fail("unexpected argument '", flags.positional()[0], "'");
  std::vector<std::string> inputs = flags.GetAll("corpus");
  if (inputs.empty()) Fail("missing required flag --corpus");
  const int reps = static_cast<int>(flags.GetInt("reps", 5));
  if (reps < 1) Fail("flag --reps: must be >= 1");
  const int threads = static_cast<int>(flags.GetInt("threads", 1));
  if (threads < 1) Fail("flag --threads: must be >= 1");
  const double max_mb = flags.GetDouble("max-mb", 0);
  Tokenizer tokenizer(Vocab::Load(flags.Require("vocab")), !flags.GetBool("cased"));

  // Load the text (lines = documents), optionally capped.
  std::string text;
  for (const auto& path : ListCorpusFiles(inputs)) {
    std::ifstream in(path, std::ios::binary);
    if (!in) Fail(path, ": cannot open");
    std::ostringstream ss;
    ss << in.rdbuf();
    text += ss.str();
    if (!text.empty() && text.back() != '\n') text.push_back('\n');
    if (max_mb > 0 && text.size() >= max_mb * 1e6) break;
  }
  if (max_mb > 0 && text.size() > max_mb * 1e6) {
    size_t cut = text.find('\n', static_cast<size_t>(max_mb * 1e6));
    if (cut != std::string::npos) text.resize(cut + 1);
  }
  std::vector<std::string_view> lines;
  for (size_t b = 0; b < text.size();) {
    size_t e = text.find('\n', b);
    if (e == std::string::npos) e = text.size();
    if (e > b) lines.emplace_back(text.data() + b, e - b);
    b = e + 1;
  }
  if (lines.empty()) Fail(inputs[0], ": corpus is empty");

  std::vector<double> secs;
  uint64_t tokens = 0;
  int64_t invalid = 0;
  for (int r = 0; r < reps; ++r) {
    uint64_t tok = 0;
    int64_t bad = 0;
    const int64_t n = static_cast<int64_t>(lines.size());
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(dynamic, 256) num_threads(threads) reduction(+ : tok, bad)
    for (int64_t i = 0; i < n; ++i) {
      int64_t b = 0;
      tok += tokenizer.Encode(lines[i], &b).size();
      bad += b;
    }
    secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    tokens = tok;
    invalid = bad;
  }
  std::vector<double> sorted = secs;
  std::sort(sorted.begin(), sorted.end());
  const double best = sorted.front();
  const double median =
      reps % 2 ? sorted[reps / 2] : 0.5 * (sorted[reps / 2 - 1] + sorted[reps / 2]);
  const double mb = text.size() / 1e6;
  std::cout << "tokenized " << Fixed(mb, 2) << " MB (" << Commas(lines.size()) << " lines, "
            << Commas(tokens) << " tokens) x" << reps << " with " << threads << " thread(s): best "
            << Fixed(mb / best, 2) << " MB/s, median " << Fixed(mb / median, 2) << " MB/s\n";
  std::string corpus_names;
  for (const auto& in : inputs) corpus_names += (corpus_names.empty() ? "" : ",") + in;
  std::cout << "{\"bench\":\"data\",\"corpus\":\"" << JsonEscape(corpus_names)
            << "\",\"bytes\":" << text.size() << ",\"lines\":" << lines.size()
            << ",\"tokens\":" << tokens << ",\"invalid_utf8_bytes\":" << invalid
            << ",\"reps\":" << reps << ",\"threads\":" << threads
            << ",\"best_s\":" << Fixed(best, 4) << ",\"median_s\":" << Fixed(median, 4)
            << ",\"best_mb_s\":" << Fixed(mb / best, 2)
            << ",\"median_mb_s\":" << Fixed(mb / median, 2) << "}" << std::endl;
  return 0;
}

RegisterCommand reg_bench(
    "bench data", "tokenization throughput (MB/s) on a corpus",
    "roformer bench data --corpus FILE_OR_DIR --vocab VOCAB [--reps 5] [--threads 1] [--max-mb N]\n"
    "Loads the text into memory, tokenizes every line (Tokenizer::Encode) --reps times, timed "
    "with\n"
    "steady_clock, and reports the best and median MB/s; the last line is one JSON object.",
    &RunBenchData);

}  // namespace
}  // namespace roformer
