#include "data/sts/sts_data.h"

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "runtime/error.h"

namespace roformer::sts {
namespace {

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Printable(std::string_view s) {
  std::string out(s.substr(0, 40));
  if (s.size() > 40) out += "...";
  return out;
}

}  // namespace

std::vector<StsPair> ParseStsTsv(std::string_view text, const std::string& origin) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::vector<StsPair> pairs;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;  // blank line
    std::string_view f[3];
    size_t start = 0;
    int nf = 0;
    for (;;) {
      const size_t tab = line.find('\t', start);
      const std::string_view field =
          line.substr(start, tab == std::string_view::npos ? std::string_view::npos : tab - start);
      if (nf < 3) f[nf] = field;
      ++nf;
      if (tab == std::string_view::npos) break;
      start = tab + 1;
    }
    if (nf != 3) {
      Fail(origin, ":", line_no, ": expected 3 tab-separated fields (text1, text2, label), got ",
           nf);
    }
    if (f[0].empty() || f[1].empty()) {
      Fail(origin, ":", line_no, ": empty ", f[0].empty() ? "text1" : "text2");
    }
    const std::string_view ls = TrimSpaces(f[2]);
    double label = 0;
    auto [ptr, ec] = std::from_chars(ls.data(), ls.data() + ls.size(), label);
    if (ls.empty() || ec != std::errc() || ptr != ls.data() + ls.size() || !std::isfinite(label)) {
      Fail(origin, ":", line_no, ": label '", Printable(f[2]), "' is not a number");
    }
    if (label < 0 || label > 5) {
      Fail(origin, ":", line_no, ": label ", label, " is outside [0, 5]");
    }
    pairs.push_back({std::string(f[0]), std::string(f[1]), label});
  }
  return pairs;
}

std::vector<StsPair> ReadStsFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, ": cannot open STS file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) Fail(path, ": read error");
  std::vector<StsPair> pairs = ParseStsTsv(ss.str(), path);
  if (pairs.empty()) Fail(path, ": no sentence pairs");
  return pairs;
}

}  // namespace roformer::sts
