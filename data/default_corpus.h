// The built-in default pretraining corpus, assembled on a fresh Debian machine without network:
//   fortunes-zh  (/usr/share/games/fortunes/{chinese,tang300,song100}: '%'-separated fortunes and
//                 Tang/Song poems with ANSI colour codes),
//   manpages-zh  (/usr/share/man/zh_CN/**/*.gz: roff, gunzipped with `gzip -dc`, macros and inline
//                 escapes stripped, only lines with CJK text kept; one document per page),
//   and, when present, every *.txt under <shared>/corpus/ (one unit per line; read in place).
// Output: <cache_dir>/default-corpus.txt, one document per line, valid UTF-8, written atomically.
// Deterministic: sources and files are read in sorted order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace roformer {

struct DefaultCorpusOptions {
  // Root of the shared data (…/shared/data); its corpus/*.txt are appended. "" = skip.
  std::string shared_data_dir;
  // Directory of fortune files; "" = the files dpkg lists for fortunes-zh (or the usual paths).
  std::string fortunes_dir;
  std::string man_dir = "/usr/share/man/zh_CN";
};

struct DefaultCorpusSource {
  std::string name;      // "fortunes-zh", "manpages-zh", "shared-corpus"
  std::string location;  // where it was looked for
  bool found = false;
  uint64_t files = 0;
  uint64_t documents = 0;
  uint64_t characters = 0;  // code points written (newlines excluded)
  uint64_t invalid_utf8_bytes = 0;
  uint64_t skipped_files = 0;  // unreadable / failed to decompress
};

struct DefaultCorpusStats {
  std::string path;  // the corpus file written
  std::vector<DefaultCorpusSource> sources;
  uint64_t documents = 0;
  uint64_t characters = 0;
  uint64_t bytes = 0;
};

// Builds <cache_dir>/default-corpus.txt. Throws Error when no source yields any text.
DefaultCorpusStats BuildDefaultCorpus(const std::string& cache_dir,
                                      const DefaultCorpusOptions& options = {});

// ---- building blocks (exposed for tests) ----
// Removes ANSI escape sequences (CSI "\x1b[...X" and two-byte "\x1bX").
std::string StripAnsi(std::string_view s);
// Fortune file text -> documents ('%' lines separate fortunes; lines joined; CJK-only kept).
std::vector<std::string> ParseFortunes(std::string_view text);
// Roff source -> the page's text as one document ("" when it has no CJK line).
std::string RoffToText(std::string_view roff);
// One roff text line with inline escapes (\fB \(lq \- \& \e \s-1 \*(xx ...) resolved; "" for a
// request/macro line (starting with '.' or '\'').
std::string StripRoffLine(std::string_view line);
// Drops ill-formed UTF-8 (counted in *invalid), turns control characters and any whitespace run
// into one space, and trims.
std::string CleanText(std::string_view s, uint64_t* invalid = nullptr);
bool HasCjk(std::string_view utf8);

}  // namespace roformer
