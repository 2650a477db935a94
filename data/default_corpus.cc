#include "data/default_corpus.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/error.h"

namespace roformer {
namespace fs = std::filesystem;

namespace {

// Decodes one well-formed UTF-8 sequence at s[i]; returns its length (0 when ill-formed).
size_t DecodeUtf8(std::string_view s, size_t i, uint32_t* cp) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  const unsigned char c = p[i];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len = 0;
  uint32_t v = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2, v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3, v = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4, v = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > n) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((p[i + k] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (p[i + k] & 0x3F);
  }
  if ((len == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) ||
      (len == 4 && (v < 0x10000 || v > 0x10FFFF))) {
    return 0;
  }
  *cp = v;
  return len;
}

bool IsCjkCodePoint(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x20000 && cp <= 0x2FA1F);
}

uint64_t CodePoints(std::string_view s) {
  uint64_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// Concatenates cleaned lines: a space between two ASCII characters (English words) or after a
// paragraph break (blank line, roff request); Chinese text wrapped over lines is joined directly.
void AppendLine(std::string* doc, const std::string& line, bool paragraph_break = false) {
  if (line.empty()) return;
  if (!doc->empty() && (paragraph_break || (static_cast<unsigned char>(doc->back()) < 0x80 &&
                                            static_cast<unsigned char>(line.front()) < 0x80))) {
    doc->push_back(' ');
  }
  doc->append(line);
}

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t b = 0;
  while (b < text.size()) {
    size_t e = text.find('\n', b);
    if (e == std::string_view::npos) e = text.size();
    std::string_view l = text.substr(b, e - b);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    lines.push_back(l);
    b = e + 1;
  }
  return lines;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// gunzip through the gzip binary (zlib is not a link dependency of roformer_core).
bool Gunzip(const std::string& path, std::string* out) {
  std::string quoted = "'";
  for (char c : path) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  quoted += "'";
  const std::string cmd = "gzip -dc -- " + quoted + " 2>/dev/null";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return false;
  out->clear();
  char buf[1 << 16];
  size_t r;
  while ((r = std::fread(buf, 1, sizeof buf, f)) > 0) out->append(buf, r);
  const int status = ::pclose(f);
  return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

const char* RoffSpecial(std::string_view name) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"lq", "\u201c"}, {"rq", "\u201d"}, {"oq", "\u2018"}, {"cq", "\u2019"}, {"em", "\u2014"},
      {"en", "\u2013"}, {"hy", "-"},      {"mi", "-"},      {"aq", "'"},      {"dq", "\""},
      {"bu", "\u2022"}, {"co", "\u00a9"}, {"rg", "\u00ae"}, {"tm", "\u2122"}, {"ga", "`"},
      {"aa", "\u00b4"}, {"ti", "~"},      {"ha", "^"},      {"ba", "|"},      {"rs", "\\"},
      {"R", "\u00ae"},  {"Tm", "\u2122"}};
  for (const auto& [k, v] : kMap) {
    if (name == k) return v;
  }
  return "";
}

// Reads an escape's name after its letter: "(xx", "[name]", or one character. Returns the name
// and advances i past it.
std::string_view EscapeName(std::string_view s, size_t* i) {
  if (*i >= s.size()) return {};
  if (s[*i] == '(') {
    std::string_view n = s.substr(*i + 1, 2);
    *i = std::min(s.size(), *i + 3);
    return n;
  }
  if (s[*i] == '[') {
    size_t e = s.find(']', *i);
    if (e == std::string_view::npos) e = s.size();
    std::string_view n = s.substr(*i + 1, e - *i - 1);
    *i = std::min(s.size(), e + 1);
    return n;
  }
  // One character (possibly a multi-byte UTF-8 one: skip its continuation bytes).
  std::string_view n = s.substr(*i, 1);
  ++*i;
  while (*i < s.size() && (static_cast<unsigned char>(s[*i]) & 0xC0) == 0x80) ++*i;
  return n;
}

// Skips a delimited argument: \w'...' \h'...' \o'...' etc.
void SkipDelimited(std::string_view s, size_t* i) {
  if (*i >= s.size()) return;
  const char d = s[*i];
  const size_t e = s.find(d, *i + 1);
  *i = e == std::string_view::npos ? s.size() : e + 1;
}

std::vector<std::string> ListFortuneFiles(const DefaultCorpusOptions& o, std::string* where) {
  std::vector<std::string> files;
  auto add_dir = [&files](const fs::path& dir) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.is_symlink() || !e.is_regular_file()) continue;
      if (e.path().extension() == ".dat") continue;
      files.push_back(e.path().string());
    }
  };
  if (!o.fortunes_dir.empty()) {
    *where = o.fortunes_dir;
    add_dir(o.fortunes_dir);
  } else {
    std::ifstream list("/var/lib/dpkg/info/fortunes-zh.list");
    if (list) {
      *where = "dpkg -L fortunes-zh";
      std::string line;
      while (std::getline(list, line)) {
        if (line.find("/fortunes") == std::string::npos || line.ends_with(".dat")) continue;
        std::error_code ec;
        if (fs::is_symlink(line, ec) || !fs::is_regular_file(line, ec)) continue;
        if (line.find("/usr/share/games/") != 0 && line.find("/usr/share/fortune") != 0) continue;
        files.push_back(line);
      }
    }
    if (files.empty()) {
      *where = "/usr/share/games/fortunes";
      for (const char* dir : {"/usr/share/games/fortunes/zh", "/usr/share/fortune/zh"}) {
        std::error_code ec;
        if (fs::is_directory(dir, ec)) add_dir(dir);
      }
      for (const char* name : {"chinese", "song100", "tang300"}) {
        const std::string p = std::string("/usr/share/games/fortunes/") + name;
        std::error_code ec;
        if (fs::is_regular_file(p, ec)) files.push_back(p);
      }
    }
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  return files;
}

// Streams documents to <path>.tmp; Commit() fsyncs and renames.
class LineWriter {
 public:
  explicit LineWriter(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) Fail(tmp_, ": cannot create: ", std::strerror(errno));
  }
  ~LineWriter() {
    if (f_) {
      std::fclose(f_);
      ::unlink(tmp_.c_str());
    }
  }
  void Line(const std::string& s) {
    if (std::fwrite(s.data(), 1, s.size(), f_) != s.size() || std::fputc('\n', f_) == EOF) {
      Fail(tmp_, ": write failed: ", std::strerror(errno));
    }
    bytes_ += s.size() + 1;
  }
  void Commit() {
    if (std::fflush(f_) != 0 || ::fsync(fileno(f_)) != 0) {
      Fail(tmp_, ": flush failed: ", std::strerror(errno));
    }
    std::fclose(f_);
    f_ = nullptr;
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
      Fail(path_, ": rename failed: ", std::strerror(errno));
    }
  }
  uint64_t bytes() const { return bytes_; }

 private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
  uint64_t bytes_ = 0;
};

}  // namespace

bool HasCjk(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    const size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) {
      ++i;
      continue;
    }
    if (IsCjkCodePoint(cp)) return true;
    i += n;
  }
  return false;
}

std::string CleanText(std::string_view s, uint64_t* invalid) {
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    const size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) {
      if (invalid) ++*invalid;
      ++i;
      continue;
    }
    const bool ws = cp < 0x20 || cp == 0x7F || cp == ' ' || (cp >= 0x80 && cp < 0xA0);
    if (ws) {
      space = !out.empty();
    } else {
      if (space) out.push_back(' ');
      space = false;
      out.append(s.substr(i, n));
    }
    i += n;
  }
  return out;
}

std::string StripAnsi(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\x1b') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 1 < s.size() && s[i + 1] == '[') {
      size_t j = i + 2;
      while (j < s.size() && !(s[j] >= 0x40 && s[j] <= 0x7E)) ++j;
      i = j;  // the final byte is skipped by the loop increment
    } else {
      ++i;  // ESC + one character
    }
  }
  return out;
}

std::vector<std::string> ParseFortunes(std::string_view text) {
  const std::string plain = StripAnsi(text);
  std::vector<std::string> docs;
  std::string doc;
  auto finish = [&]() {
    if (!doc.empty() && HasCjk(doc)) docs.push_back(doc);
    doc.clear();
  };
  bool paragraph = false;
  for (std::string_view line : SplitLines(plain)) {
    if (line == "%") {
      finish();
      paragraph = false;
      continue;
    }
    std::string text = CleanText(line);
    if (text.empty()) {
      paragraph = true;
      continue;
    }
    AppendLine(&doc, text, paragraph);
    paragraph = false;
  }
  finish();
  return docs;
}

std::string StripRoffLine(std::string_view s) {
  if (s.empty() || s[0] == '.' || s[0] == '\'') return "";
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c != '\\') {
      out.push_back(c);
      ++i;
      continue;
    }
    if (++i >= s.size()) break;
    const char e = s[i++];
    switch (e) {
      case '"':
      case '#':
        return out;  // comment to end of line
      case 'f':
      case 'n':
      case 'g':
      case 'k':
      case 'F':
      case 'm':
      case 'M':
      case 'Y':
      case 'V':
        EscapeName(s, &i);  // font / register / colour: no text
        break;
      case '*':
      case '(':
      case '[': {
        if (e != '*') i -= 1;  // \(xx and \[name] start at the delimiter
        out += RoffSpecial(EscapeName(s, &i));
        break;
      }
      case 's':  // \s+1 \s-2 \s0 \s(12 \s[12]
        if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
        if (i < s.size() && (s[i] == '(' || s[i] == '[')) {
          EscapeName(s, &i);
        } else {
          while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
        }
        break;
      case 'h':
      case 'v':
      case 'w':
      case 'l':
      case 'L':
      case 'D':
      case 'x':
      case 'b':
      case 'o':
      case 'X':
      case 'Z':
      case 'R':
      case 'N':
      case 'H':
      case 'S':
      case 'A':
      case 'B':
      case 'C':
        SkipDelimited(s, &i);
        break;
      case '-':
        out.push_back('-');
        break;
      case 'e':
      case '\\':
        out.push_back('\\');
        break;
      case ' ':
      case '~':
      case '0':
      case 't':
        out.push_back(' ');
        break;
      case '&':
      case '|':
      case '^':
      case ',':
      case '/':
      case ')':
      case 'c':
      case 'p':
      case 'z':
      case 'd':
      case 'u':
      case 'r':
      case '%':
      case ':':
      case '{':
      case '}':
        break;
      default:
        out.push_back(e);  // \. \' \` and unknown escapes: the character itself
        break;
    }
  }
  return out;
}

std::string RoffToText(std::string_view roff) {
  std::string doc;
  bool paragraph = false;
  for (std::string_view line : SplitLines(roff)) {
    if (line.empty() || line[0] == '.' || line[0] == '\'') {
      paragraph = true;  // requests (.PP .TP .SH ...) and blank lines separate paragraphs
      continue;
    }
    std::string text = CleanText(StripRoffLine(line));
    if (!HasCjk(text)) {
      paragraph = true;
      continue;
    }
    AppendLine(&doc, text, paragraph);
    paragraph = false;
  }
  return doc;
}

DefaultCorpusStats BuildDefaultCorpus(const std::string& cache_dir,
                                      const DefaultCorpusOptions& options) {
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  if (!fs::is_directory(cache_dir, ec)) Fail(cache_dir, ": cannot create cache directory");
  DefaultCorpusStats st;
  st.path = (fs::path(cache_dir) / "default-corpus.txt").string();
  LineWriter out(st.path);
  auto emit = [&](DefaultCorpusSource* src, const std::string& doc) {
    if (doc.empty()) return;
    out.Line(doc);
    ++src->documents;
    src->characters += CodePoints(doc);
  };

  {  // fortunes-zh
    DefaultCorpusSource src;
    src.name = "fortunes-zh";
    for (const auto& path : ListFortuneFiles(options, &src.location)) {
      std::string text;
      try {
        text = ReadFile(path);
      } catch (const Error&) {
        ++src.skipped_files;
        continue;
      }
      ++src.files;
      uint64_t bad = 0;
      CleanText(text, &bad);  // counts the invalid bytes
      src.invalid_utf8_bytes += bad;
      for (const auto& doc : ParseFortunes(text)) emit(&src, doc);
    }
    src.found = src.files > 0;
    st.sources.push_back(src);
  }
  {  // manpages-zh
    DefaultCorpusSource src;
    src.name = "manpages-zh";
    src.location = options.man_dir;
    std::vector<std::string> pages;
    if (!options.man_dir.empty() && fs::is_directory(options.man_dir, ec)) {
      for (auto it = fs::recursive_directory_iterator(options.man_dir, ec);
           it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) break;
        if (it->is_symlink() || !it->is_regular_file()) continue;
        pages.push_back(it->path().string());
      }
    }
    std::sort(pages.begin(), pages.end());
    std::string raw;
    for (const auto& path : pages) {
      if (path.ends_with(".gz")) {
        if (!Gunzip(path, &raw)) {
          ++src.skipped_files;
          continue;
        }
      } else {
        try {
          raw = ReadFile(path);
        } catch (const Error&) {
          ++src.skipped_files;
          continue;
        }
      }
      ++src.files;
      uint64_t bad = 0;
      CleanText(raw, &bad);
      src.invalid_utf8_bytes += bad;
      emit(&src, RoffToText(raw));
    }
    src.found = src.files > 0;
    st.sources.push_back(src);
  }
  {  // shared corpus
    DefaultCorpusSource src;
    src.name = "shared-corpus";
    if (!options.shared_data_dir.empty()) {
      const fs::path dir = fs::path(options.shared_data_dir) / "corpus";
      src.location = dir.string();
      std::vector<std::string> files;
      if (fs::is_directory(dir, ec)) {
        for (const auto& e : fs::directory_iterator(dir, ec)) {
          if (e.path().extension() == ".txt" && e.is_regular_file())
            files.push_back(e.path().string());
        }
      }
      std::sort(files.begin(), files.end());
      for (const auto& path : files) {
        std::ifstream in(path, std::ios::binary);
        if (!in) {
          ++src.skipped_files;
          continue;
        }
        ++src.files;
        std::string line;
        while (std::getline(in, line)) {
          uint64_t bad = 0;
          std::string doc = CleanText(line, &bad);
          src.invalid_utf8_bytes += bad;
          emit(&src, doc);
        }
      }
    } else {
      src.location = "(not given)";
    }
    src.found = src.files > 0;
    st.sources.push_back(src);
  }
  for (const auto& s : st.sources) {
    st.documents += s.documents;
    st.characters += s.characters;
  }
  if (st.documents == 0) {
    Fail("default corpus: no text found (looked in fortunes-zh ", st.sources[0].location,
         ", manpages-zh ", st.sources[1].location, ", shared corpus ", st.sources[2].location,
         "); install fortunes-zh/manpages-zh or pass --shared");
  }
  out.Commit();
  st.bytes = out.bytes();
  return st;
}

}  // namespace roformer
