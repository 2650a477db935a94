#include "data/clue/clue_metrics.h"

#include <algorithm>

#include "runtime/error.h"

namespace roformer {

namespace {

std::u32string DecodeUtf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    char32_t cp;
    int n;
    if (c < 0x80) {
      cp = c;
      n = 1;
    } else if ((c >> 5) == 0x6) {
      cp = c & 0x1F;
      n = 2;
    } else if ((c >> 4) == 0xE) {
      cp = c & 0x0F;
      n = 3;
    } else if ((c >> 3) == 0x1E) {
      cp = c & 0x07;
      n = 4;
    } else {
      // Invalid lead byte: keep it as U+FFFD rather than failing (predictions are user text).
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    if (i + n > s.size()) {
      out.push_back(0xFFFD);
      break;
    }
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += n;
  }
  return out;
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string EncodeUtf8(const std::u32string& s) {
  std::string out;
  for (char32_t c : s) AppendUtf8(c, &out);
  return out;
}

// Python's str.isspace() set (what unicode.strip() and str.split() use).
bool IsPySpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

char32_t PyLower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0x80) return c;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 &&
      c != 0x17F) {
    // Latin Extended-A is mostly (upper, lower) pairs; the parity flips at U+0139..U+0148 and
    // U+0179..U+017E.
    const bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (c == 0x178) return 0xFF;
    if (odd_upper ? (c % 2 == 1) : (c % 2 == 0)) return c + 1;
    return c;
  }
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
  return c;
}

bool IsCmrcCjk(char32_t c) { return c >= 0x4E00 && c <= 0x9FA5; }

bool IsAsciiDigit(char32_t c) { return c >= '0' && c <= '9'; }

// Longest common contiguous run of tokens (the script's find_lcs).
size_t LongestCommonRun(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<size_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  size_t best = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < b.size(); ++j) {
      cur[j + 1] = a[i] == b[j] ? prev[j] + 1 : 0;
      best = std::max(best, cur[j + 1]);
    }
    std::swap(prev, cur);
  }
  return best;
}

}  // namespace

double Accuracy(const std::vector<int>& pred, const std::vector<int>& gold) {
  if (pred.size() != gold.size()) {
    Fail("accuracy: ", pred.size(), " predictions for ", gold.size(), " gold labels");
  }
  int64_t n = 0, right = 0;
  for (size_t i = 0; i < gold.size(); ++i) {
    if (gold[i] < 0) continue;
    ++n;
    right += pred[i] == gold[i] ? 1 : 0;
  }
  return n == 0 ? 0.0 : static_cast<double>(right) / static_cast<double>(n);
}

bool IsCmrcPunctuation(char32_t c) {
  static constexpr char32_t kList[] = {
      U'-',      U':',      U'_',      U'*',      U'^',      U'/',      U'\\',     U'~',
      U'`',      U'+',      U'=',      U'\uFF0C', U'\u3002', U'\uFF1A', U'\uFF1F', U'\uFF01',
      U'\u201C', U'\u201D', U'\uFF1B', U'\u2019', U'\u300A', U'\u300B', U'\u00B7', U'\u3001',
      U'\u300C', U'\u300D', U'\uFF08', U'\uFF09', U'\uFF0D', U'\uFF5E', U'\u300E', U'\u300F'};
  for (char32_t k : kList) {
    if (k == c) return true;
  }
  return false;
}

std::u32string CmrcNormalize(std::string_view utf8) {
  std::u32string s = DecodeUtf8(utf8);
  for (char32_t& c : s) c = PyLower(c);
  size_t b = 0, e = s.size();
  while (b < e && IsPySpace(s[b])) ++b;
  while (e > b && IsPySpace(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::vector<std::u32string> CmrcWordTokenize(const std::u32string& run) {
  static const std::u32string kAlone = U"?!;@#$%&()[]{}<>\"";
  std::vector<std::u32string> out;
  std::u32string cur;
  auto flush = [&] {
    if (!cur.empty()) out.push_back(cur);
    cur.clear();
  };
  for (size_t i = 0; i < run.size(); ++i) {
    const char32_t c = run[i];
    if (IsPySpace(c)) {
      flush();
      continue;
    }
    if (c == U'.' && i + 2 < run.size() && run[i + 1] == U'.' && run[i + 2] == U'.') {
      flush();
      out.push_back(U"...");
      i += 2;
      continue;
    }
    if (kAlone.find(c) != std::u32string::npos ||
        ((c == U',' || c == U':') && !(i + 1 < run.size() && IsAsciiDigit(run[i + 1])))) {
      flush();
      out.push_back(std::u32string(1, c));
      continue;
    }
    cur.push_back(c);
  }
  flush();
  // Sentence-final period: split "word." -> "word", "." (not "..." and not a lone ".").
  if (!out.empty()) {
    std::u32string& last = out.back();
    if (last.size() > 1 && last.back() == U'.' && last[last.size() - 2] != U'.') {
      last.pop_back();
      out.push_back(U".");
    }
  }
  return out;
}

std::vector<std::string> CmrcMixedSegmentation(std::string_view text, bool remove_punctuation) {
  const std::u32string s = CmrcNormalize(text);
  std::vector<std::string> segs;
  std::u32string run;
  auto flush = [&] {
    if (run.empty()) return;
    for (const std::u32string& t : CmrcWordTokenize(run)) segs.push_back(EncodeUtf8(t));
    run.clear();
  };
  for (char32_t c : s) {
    const bool punct = IsCmrcPunctuation(c);
    if (remove_punctuation && punct) continue;
    if (IsCmrcCjk(c) || punct) {
      flush();
      segs.push_back(EncodeUtf8(std::u32string(1, c)));
    } else {
      run.push_back(c);
    }
  }
  flush();
  return segs;
}

std::string CmrcRemovePunctuation(std::string_view text) {
  const std::u32string s = CmrcNormalize(text);
  std::string out;
  for (char32_t c : s) {
    if (!IsCmrcPunctuation(c)) AppendUtf8(c, &out);
  }
  return out;
}

double CmrcF1(const std::vector<std::string>& answers, std::string_view prediction) {
  const std::vector<std::string> pred = CmrcMixedSegmentation(prediction, true);
  double best = 0;
  for (const std::string& a : answers) {
    const std::vector<std::string> ans = CmrcMixedSegmentation(a, true);
    const size_t lcs = LongestCommonRun(ans, pred);
    if (lcs == 0) continue;
    const double p = static_cast<double>(lcs) / static_cast<double>(pred.size());
    const double r = static_cast<double>(lcs) / static_cast<double>(ans.size());
    best = std::max(best, 2 * p * r / (p + r));
  }
  return best;
}

double CmrcExactMatch(const std::vector<std::string>& answers, std::string_view prediction) {
  const std::string pred = CmrcRemovePunctuation(prediction);
  for (const std::string& a : answers) {
    if (CmrcRemovePunctuation(a) == pred) return 1.0;
  }
  return 0.0;
}

CmrcScore CmrcEvaluate(const std::vector<std::vector<std::string>>& answers,
                       const std::vector<std::string>& predictions) {
  if (answers.size() != predictions.size()) {
    Fail("cmrc2018: ", predictions.size(), " predictions for ", answers.size(), " questions");
  }
  CmrcScore s;
  s.count = static_cast<int64_t>(answers.size());
  double em = 0, f1 = 0;
  for (size_t i = 0; i < answers.size(); ++i) {
    em += CmrcExactMatch(answers[i], predictions[i]);
    f1 += CmrcF1(answers[i], predictions[i]);
  }
  if (s.count > 0) {
    s.em = 100.0 * em / static_cast<double>(s.count);
    s.f1 = 100.0 * f1 / static_cast<double>(s.count);
  }
  return s;
}

}  // namespace roformer
