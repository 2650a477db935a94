#include "data/tokenizer/vocab_builder.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <queue>
#include <unordered_set>

#include "data/tokenizer/tokenizer.h"
#include "runtime/error.h"

namespace roformer {
namespace {

constexpr int kMaxWordChars = 100;

// Splits a UTF-8 word into code point substrings.
void SplitChars(std::string_view w, std::vector<std::string_view>* out) {
  out->clear();
  size_t i = 0;
  while (i < w.size()) {
    unsigned char c = static_cast<unsigned char>(w[i]);
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    len = std::min(len, w.size() - i);
    out->push_back(w.substr(i, len));
    i += len;
  }
}

struct HeapEntry {
  int64_t count;
  uint64_t pair;
  const std::string* merged;                  // owned by the merged-string cache
  bool operator<(const HeapEntry& o) const {  // max-heap: larger count, then smaller string first
    if (count != o.count) return count < o.count;
    if (*merged != *o.merged) return *merged > *o.merged;
    return pair > o.pair;  // symbol ids are interned in a deterministic order
  }
};

}  // namespace

VocabBuilder::VocabBuilder(VocabBuildOptions options) : opt_(options) {
  if (opt_.size < 5)
    Fail("vocab build: --size must be at least 5 (the special tokens), got ", opt_.size);
}

void VocabBuilder::AddText(std::string_view text) {
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    size_t stop = nl == std::string_view::npos ? text.size() : nl;
    if (stop > start) {
      ++lines_;
      BasicTokenize(text.substr(start, stop - start), opt_.do_lower_case,
                    [&](std::string_view w) { ++words_[std::string(w)]; });
    }
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
}

void VocabBuilder::AddPath(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> files;
  if (fs::is_directory(path, ec)) {
    for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_regular_file()) files.push_back(it->path().string());
    }
    if (ec) Fail("vocab build: cannot list corpus directory '", path, "': ", ec.message());
    std::sort(files.begin(), files.end());
    if (files.empty()) Fail("vocab build: corpus directory '", path, "' has no files");
  } else {
    files.push_back(path);
  }
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) Fail("vocab build: cannot open corpus file '", f, "'");
    std::string line;
    while (std::getline(in, line, '\n')) AddText(line);
    if (in.bad()) Fail("vocab build: error reading '", f, "'");
  }
}

std::vector<std::string> VocabBuilder::Build() const {
  std::vector<std::string> vocab;
  std::unordered_set<std::string> have;
  auto add = [&](const std::string& t) {
    if (static_cast<int>(vocab.size()) >= opt_.size) return false;
    if (have.insert(t).second) vocab.push_back(t);
    return true;
  };
  if (opt_.size >= kChineseLayoutMinSize) {
    add("[PAD]");
    for (int i = 1; i <= 99; ++i) add("[unused" + std::to_string(i) + "]");
    for (const char* t : {"[UNK]", "[CLS]", "[SEP]", "[MASK]"}) add(t);
  } else {
    for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) add(t);
  }

  // Deterministic word order (the unordered_map's order is not).
  std::vector<std::pair<std::string_view, int64_t>> words(words_.begin(), words_.end());
  std::sort(words.begin(), words.end());

  // Character frequencies.
  std::unordered_map<std::string_view, int64_t> char_count;
  std::vector<std::string_view> chars;
  for (const auto& [w, n] : words) {
    SplitChars(w, &chars);
    for (auto c : chars) char_count[c] += n;
  }
  std::vector<std::pair<std::string_view, int64_t>> by_freq(char_count.begin(), char_count.end());
  std::sort(by_freq.begin(), by_freq.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  for (const auto& [c, n] : by_freq) add(std::string(c));
  for (const auto& [c, n] : by_freq) add("##" + std::string(c));
  if (static_cast<int>(vocab.size()) >= opt_.size) return vocab;

  // Symbols: interned strings ("a", "##b", "ab", "##ab", ...).
  std::vector<std::string> sym_str;
  std::unordered_map<std::string, int> sym_id;
  auto intern = [&](const std::string& s) {
    auto [it, inserted] = sym_id.emplace(s, static_cast<int>(sym_str.size()));
    if (inserted) sym_str.push_back(s);
    return it->second;
  };
  struct Word {
    std::vector<int> syms;
    int64_t count;
  };
  std::vector<Word> seqs;
  for (const auto& [w, n] : words) {
    SplitChars(w, &chars);
    if (chars.size() < 2 || chars.size() > static_cast<size_t>(kMaxWordChars)) continue;
    Word word{{}, n};
    for (size_t i = 0; i < chars.size(); ++i) {
      word.syms.push_back(intern(i == 0 ? std::string(chars[i]) : "##" + std::string(chars[i])));
    }
    seqs.push_back(std::move(word));
  }

  auto key = [](int a, int b) {
    return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
  };
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int>> pair_words;
  std::unordered_map<uint64_t, std::string> merged_str;
  auto merged_of = [&](uint64_t p) -> const std::string* {
    auto it = merged_str.find(p);
    if (it == merged_str.end()) {
      const std::string& a = sym_str[p >> 32];
      const std::string& b = sym_str[static_cast<uint32_t>(p)];
      it = merged_str.emplace(p, a + b.substr(2)).first;  // b is never word-initial: "##..."
    }
    return &it->second;
  };
  for (size_t wi = 0; wi < seqs.size(); ++wi) {
    const Word& w = seqs[wi];
    for (size_t i = 0; i + 1 < w.syms.size(); ++i) {
      uint64_t p = key(w.syms[i], w.syms[i + 1]);
      pair_count[p] += w.count;
      auto& v = pair_words[p];
      if (v.empty() || v.back() != static_cast<int>(wi)) v.push_back(static_cast<int>(wi));
    }
  }
  std::priority_queue<HeapEntry> heap;
  for (const auto& [p, n] : pair_count) heap.push({n, p, merged_of(p)});

  std::vector<int> stamp(seqs.size(), -1);
  int merge_no = 0;
  while (static_cast<int>(vocab.size()) < opt_.size && !heap.empty()) {
    HeapEntry top = heap.top();
    heap.pop();
    auto pc = pair_count.find(top.pair);
    if (pc == pair_count.end() || pc->second != top.count) continue;  // stale
    if (top.count < opt_.min_pair_count) break;
    const int a = static_cast<int>(top.pair >> 32),
              b = static_cast<int>(static_cast<uint32_t>(top.pair));
    const std::string merged = *top.merged;
    const int m = intern(merged);
    add(merged);
    ++merge_no;
    std::vector<int> touched = std::move(pair_words[top.pair]);
    pair_words.erase(top.pair);
    std::unordered_map<uint64_t, int64_t> delta;
    for (int wi : touched) {
      if (stamp[wi] == merge_no) continue;
      stamp[wi] = merge_no;
      Word& w = seqs[wi];
      for (size_t i = 0; i + 1 < w.syms.size(); ++i)
        delta[key(w.syms[i], w.syms[i + 1])] -= w.count;
      std::vector<int> out;
      out.reserve(w.syms.size());
      for (size_t i = 0; i < w.syms.size(); ++i) {
        if (i + 1 < w.syms.size() && w.syms[i] == a && w.syms[i + 1] == b) {
          out.push_back(m);
          ++i;
        } else {
          out.push_back(w.syms[i]);
        }
      }
      w.syms = std::move(out);
      for (size_t i = 0; i + 1 < w.syms.size(); ++i) {
        uint64_t p = key(w.syms[i], w.syms[i + 1]);
        delta[p] += w.count;
        auto& v = pair_words[p];
        if (v.empty() || v.back() != wi) v.push_back(wi);
      }
    }
    // Apply in a deterministic order (heap ties are resolved by string anyway).
    std::vector<std::pair<uint64_t, int64_t>> changes(delta.begin(), delta.end());
    std::sort(changes.begin(), changes.end());
    for (const auto& [p, d] : changes) {
      if (d == 0) continue;
      int64_t& n = pair_count[p];
      n += d;
      if (n <= 0) {
        pair_count.erase(p);
      } else {
        heap.push({n, p, merged_of(p)});
      }
    }
  }
  return vocab;
}

void VocabBuilder::Write(const std::vector<std::string>& tokens, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) Fail("vocab build: cannot write '", path, "'");
  for (const auto& t : tokens) out << t << '\n';
  out.close();
  if (!out) Fail("vocab build: error writing '", path, "'");
}

}  // namespace roformer
