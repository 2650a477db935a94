// BERT tokenizer with HF BertTokenizer (slow; transformers' tokenization_bert_legacy.py) semantics:
//
//   decode UTF-8, dropping invalid bytes (Python errors="ignore")
//   _clean_text: drop cp 0, U+FFFD, category C* except \t\n\r (HF; Google drops only Cc/Cf);
//     BERT whitespace (incl. Zs) -> ' '
//   _tokenize_chinese_chars: ' ' around CJK ideographs
//   NFC (whole text), str.split() (also splits on U+2028/U+2029: Python isspace, not Zs)
//   per word: lower() (full mapping, final sigma) + NFD + drop Mn   [do_lower_case]
//   punctuation split, WordPiece (greedy longest match, "##", > 100 code points or any unmatched
//   position -> a single [UNK] for the whole word).
//
// Implementation notes (why it looks the way it does):
// * Text is processed one whitespace-delimited segment at a time. NFC never composes across a
//   space or a padded CJK ideograph (both are stable starters that compose with nothing), so
//   per-segment NFC equals whole-text NFC.
// * With do_lower_case the NFC step is skipped: NFD(lower(NFC(x))) == NFD(lower(x)) holds for every
//   code point (asserted by gen_unicode_tables.py), and accent stripping works on the NFD form.
// * Hot paths: ASCII bytes use a 128-entry class table; CJK ideographs in the BMP unified ranges
//   are always a single-character word, stable under NFC/NFD/lower, so they go straight to a
//   precomputed id table without touching the segment buffers. Scratch buffers are thread_local
//   and reused, so steady-state tokenization allocates only for the returned vectors.
//
// Offsets (code points of the decoded input, i.e. after dropping invalid bytes). Every normalized
// code point carries the span of the original code point(s) it came from, like the HF fast
// tokenizer's NormalizedString alignments:
//   - lower-casing / NFD expansions: each produced code point inherits its source's span;
//   - dropped characters (clean_text, stripped Mn) contribute nothing;
//   - NFC composition (only without lower-casing): the composite spans the union of its parts;
// and a wordpiece's offsets are [min begin, max end) over its code points; an [UNK] word spans the
// whole basic token. For the fixture sentences this equals HF BertTokenizerFast's offset mapping.
#include "data/tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "data/tokenizer/unicode_tables.h"
#include "runtime/error.h"
#include "runtime/fnv1a.h"

namespace roformer {
namespace {

constexpr int kMaxInputCharsPerWord = 100;  // HF default (Google's is 200)
constexpr uint32_t kCjkTableBegin = 0x3400, kCjkTableEnd = 0xA000;

// FNV-1a with a final fold of the high bits into the low ones the table index uses.
uint64_t HashBytes(std::string_view s) {
  const uint64_t h = Fnv1a64(s);
  return h ^ (h >> 29);
}

// ASCII classes (same as the generated tables, but without a lookup).
enum : uint8_t { kAsciiOther = 0, kAsciiDrop = 1, kAsciiSep = 2, kAsciiPunct = 4 };
struct AsciiTable {
  uint8_t cls[128];
  constexpr AsciiTable() : cls() {
    for (int c = 0; c < 128; ++c) {
      if (c == '\t' || c == '\n' || c == '\r' || c == ' ') {
        cls[c] = kAsciiSep;
      } else if (c < 32 || c == 127) {
        cls[c] = kAsciiDrop;
      } else if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
                 (c >= 123 && c <= 126)) {
        cls[c] = kAsciiPunct;
      }
    }
  }
};
constexpr AsciiTable kAscii;

// BERT's CJK ranges (_is_chinese_char): each such character becomes a word of its own.
inline bool IsCjk(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}
// The BMP unified ranges are fully assigned and NFC/NFD/lower-stable (asserted by the table
// generator), so they skip clean-text and normalization. Other CJK code points (unassigned ones are
// dropped by clean_text; compatibility ideographs are mapped by NFC/NFD) take the general path.
inline bool IsFastCjk(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF);
}

inline void AppendUtf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    s.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes one non-ASCII sequence at p[0] (p[0] >= 0x80) like CPython's UTF-8 decoder: on error
// the maximal valid prefix (at least one byte) is consumed and reported invalid. Returns the
// number of bytes consumed; *cp = 0xFFFFFFFF when invalid.
inline int DecodeMulti(const unsigned char* p, const unsigned char* end, uint32_t* cp) {
  unsigned char c = p[0];
  int need;
  uint32_t v;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
    v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    v = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    v = c & 0x07;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    *cp = 0xFFFFFFFF;
    return 1;
  }
  for (int k = 1; k <= need; ++k) {
    if (p + k >= end) {
      *cp = 0xFFFFFFFF;
      return k;
    }
    unsigned char b = p[k];
    unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *cp = 0xFFFFFFFF;
      return k;
    }
    v = (v << 6) | (b & 0x3F);
  }
  *cp = v;
  return need + 1;
}

struct Span {
  int32_t b, e;
};

struct Piece {
  int id;
  int start, end;  // code point indices into the word
};

struct Scratch {
  std::vector<uint32_t> seg, a, b;  // current segment; transformation buffers
  std::vector<Span> seg_sp, a_sp, b_sp;
  std::vector<uint8_t> ccc;
  std::string utf8, sub;
  std::vector<int> off;
  std::vector<Piece> pieces;
};

// Canonical reordering (stable by combining class) of cps[from, n).
void CanonicalReorder(std::vector<uint32_t>& cps, std::vector<Span>& sp, std::vector<uint8_t>& ccc,
                      size_t from) {
  size_t n = cps.size();
  ccc.resize(n);
  bool any = false;
  for (size_t i = from; i < n; ++i) {
    ccc[i] = cps[i] < 0x300 ? 0 : unicode::Ccc(cps[i]);
    any |= ccc[i] != 0;
  }
  if (!any) return;
  for (size_t i = from + 1; i < n; ++i) {
    if (ccc[i] == 0) continue;
    size_t j = i;
    while (j > from && ccc[j - 1] > ccc[j]) {
      std::swap(ccc[j - 1], ccc[j]);
      std::swap(cps[j - 1], cps[j]);
      std::swap(sp[j - 1], sp[j]);
      --j;
    }
  }
}

// in -> out: Python str.lower() (with the final-sigma rule, evaluated on the input word).
void LowerWord(const std::vector<uint32_t>& in, const std::vector<Span>& isp,
               std::vector<uint32_t>& out, std::vector<Span>& osp) {
  out.clear();
  osp.clear();
  size_t n = in.size();
  for (size_t k = 0; k < n; ++k) {
    uint32_t c = in[k];
    if (c < 0x80) {
      out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
      osp.push_back(isp[k]);
      continue;
    }
    if (c == 0x3A3) {  // CPython handle_capital_sigma
      long j = static_cast<long>(k) - 1;
      while (j >= 0 && (unicode::Props(in[j]) & unicode::kCaseIgnorable)) --j;
      bool final_sigma = j >= 0 && (unicode::Props(in[j]) & unicode::kCased);
      if (final_sigma && k + 1 < n) {
        size_t f = k + 1;
        while (f < n && (unicode::Props(in[f]) & unicode::kCaseIgnorable)) ++f;
        final_sigma = f == n || !(unicode::Props(in[f]) & unicode::kCased);
      }
      out.push_back(final_sigma ? 0x3C2 : 0x3C3);
      osp.push_back(isp[k]);
      continue;
    }
    if (unicode::Props(c) & unicode::kHasLower) {
      uint32_t m[3];
      int cnt = unicode::LowerFull(c, m);
      for (int t = 0; t < cnt; ++t) {
        out.push_back(m[t]);
        osp.push_back(isp[k]);
      }
    } else {
      out.push_back(c);
      osp.push_back(isp[k]);
    }
  }
}

// in -> out: NFD (full decomposition + canonical order), then drop Mn (_run_strip_accents).
void NfdStripAccents(const std::vector<uint32_t>& in, const std::vector<Span>& isp,
                     std::vector<uint32_t>& out, std::vector<Span>& osp,
                     std::vector<uint8_t>& ccc) {
  out.clear();
  osp.clear();
  for (size_t k = 0; k < in.size(); ++k) {
    uint32_t c = in[k];
    if (c >= 0xC0 && (unicode::Props(c) & unicode::kHasNfd)) {
      uint32_t d[4];
      int cnt = unicode::DecomposeFull(c, d);
      for (int t = 0; t < cnt; ++t) {
        out.push_back(d[t]);
        osp.push_back(isp[k]);
      }
    } else {
      out.push_back(c);
      osp.push_back(isp[k]);
    }
  }
  CanonicalReorder(out, osp, ccc, 0);
  size_t w = 0;
  for (size_t k = 0; k < out.size(); ++k) {
    if (out[k] >= 0x300 && (unicode::Props(out[k]) & unicode::kMn)) continue;
    out[w] = out[k];
    osp[w] = osp[k];
    ++w;
  }
  out.resize(w);
  osp.resize(w);
}

// in -> out: NFC. Returns false (out untouched) when the quick check says in is already NFC.
bool Nfc(const std::vector<uint32_t>& in, const std::vector<Span>& isp, std::vector<uint32_t>& out,
         std::vector<Span>& osp, std::vector<uint8_t>& ccc) {
  bool unsafe = false;
  for (uint32_t c : in) {
    if (c >= 0x300 && (unicode::Props(c) & unicode::kNfcUnsafe)) {
      unsafe = true;
      break;
    }
  }
  if (!unsafe) return false;
  out.clear();
  osp.clear();
  for (size_t k = 0; k < in.size(); ++k) {
    uint32_t d[4];
    int cnt = unicode::DecomposeFull(in[k], d);
    for (int t = 0; t < cnt; ++t) {
      out.push_back(d[t]);
      osp.push_back(isp[k]);
    }
  }
  CanonicalReorder(out, osp, ccc, 0);  // ccc[] now holds the combining classes of out
  size_t n = out.size(), w = 0;
  long starter = -1;
  int last_ccc = -1;  // ccc of the last character written after the starter (-1: none)
  for (size_t k = 0; k < n; ++k) {
    uint32_t c = out[k];
    int cc = ccc[k];
    if (starter >= 0 && (last_ccc == -1 || (last_ccc != 0 && last_ccc < cc))) {
      uint32_t comp = unicode::Compose(out[starter], c);
      if (comp != 0) {
        out[starter] = comp;
        osp[starter].b = std::min(osp[starter].b, osp[k].b);
        osp[starter].e = std::max(osp[starter].e, osp[k].e);
        continue;
      }
    }
    if (cc == 0) {
      starter = static_cast<long>(w);
      last_ccc = -1;
    } else {
      last_ccc = cc;
    }
    out[w] = c;
    osp[w] = osp[k];
    ++w;
  }
  out.resize(w);
  osp.resize(w);
  return true;
}

// Splits a normalized word on punctuation and calls word(cps, spans, n) for each piece.
template <typename WordFn>
void SplitOnPunct(const uint32_t* cps, const Span* sp, size_t n, WordFn& word) {
  size_t run = 0;
  for (size_t k = 0; k < n; ++k) {
    uint32_t c = cps[k];
    bool punct = c < 0x80 ? kAscii.cls[c] == kAsciiPunct : (unicode::Props(c) & unicode::kPunct);
    if (!punct) continue;
    if (k > run) word(cps + run, sp + run, k - run);
    word(cps + k, sp + k, 1);
    run = k + 1;
  }
  if (n > run) word(cps + run, sp + run, n - run);
}

// The BasicTokenizer scan. cjk(cp, pos) gets BMP unified CJK ideographs (a word of their own);
// word(cps, spans, n) gets every other basic token.
template <typename WordFn, typename CjkFn>
void BasicScan(std::string_view text, bool lower, int64_t* invalid_bytes, Scratch& s, WordFn&& word,
               CjkFn&& cjk) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  int64_t bad = 0;
  int32_t pos = 0;
  bool seg_ascii = true;  // only ASCII code points in the segment
  bool seg_plain = true;  // normalization (lower+NFD+strip, or NFC) cannot change its non-ASCII
  const uint16_t norm_mask =
      lower ? (unicode::kHasLower | unicode::kHasNfd | unicode::kMn | unicode::kNfcUnsafe)
            : unicode::kNfcUnsafe;  // kNfcUnsafe covers ccc != 0 (NFD reorders those)
  s.seg.clear();
  s.seg_sp.clear();

  auto flush = [&]() {
    if (s.seg.empty()) return;
    if (seg_ascii || seg_plain) {
      if (lower) {
        for (uint32_t& c : s.seg) c = (c >= 'A' && c <= 'Z') ? c + 32 : c;
      }
      SplitOnPunct(s.seg.data(), s.seg_sp.data(), s.seg.size(), word);
    } else if (lower) {
      LowerWord(s.seg, s.seg_sp, s.a, s.a_sp);
      NfdStripAccents(s.a, s.a_sp, s.b, s.b_sp, s.ccc);
      SplitOnPunct(s.b.data(), s.b_sp.data(), s.b.size(), word);
    } else if (Nfc(s.seg, s.seg_sp, s.a, s.a_sp, s.ccc)) {
      SplitOnPunct(s.a.data(), s.a_sp.data(), s.a.size(), word);
    } else {
      SplitOnPunct(s.seg.data(), s.seg_sp.data(), s.seg.size(), word);
    }
    s.seg.clear();
    s.seg_sp.clear();
    seg_ascii = true;
    seg_plain = true;
  };

  while (p < end) {
    uint32_t c = *p;
    if (c < 0x80) {
      ++p;
      uint8_t cls = kAscii.cls[c];
      if (cls == kAsciiSep) {
        flush();
      } else if (cls != kAsciiDrop) {
        s.seg.push_back(c);
        s.seg_sp.push_back({pos, pos + 1});
      }
      ++pos;
      continue;
    }
    int consumed = DecodeMulti(p, end, &c);
    p += consumed;
    if (c == 0xFFFFFFFF) {
      bad += consumed;
      continue;
    }
    if (IsFastCjk(c)) {
      flush();
      cjk(c, pos);
      ++pos;
      continue;
    }
    uint16_t f = unicode::Props(c);
    if (f & unicode::kDrop) {
      ++pos;
      continue;
    }
    if (f & unicode::kSep) {
      flush();
      ++pos;
      continue;
    }
    const bool cjk_word = IsCjk(c);
    if (cjk_word) flush();
    seg_ascii = false;
    seg_plain &= !(f & norm_mask);
    s.seg.push_back(c);
    s.seg_sp.push_back({pos, pos + 1});
    ++pos;
    if (cjk_word) flush();
  }
  flush();
  if (invalid_bytes) *invalid_bytes = bad;
}

}  // namespace

// ---------------------------------------------------------------- Vocab

Vocab Vocab::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("cannot open vocab file '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) Fail("error reading vocab file '", path, "'");
  std::string data = ss.str();
  Vocab v;
  v.path_ = path;
  // Split on '\n' only: U+2028 (id 343 of the Chinese vocab) is a token, not a line break. A
  // trailing '\r' is dropped (Python's universal newlines would do so for CRLF files).
  size_t start = 0;
  while (start < data.size()) {
    size_t nl = data.find('\n', start);
    size_t stop = nl == std::string::npos ? data.size() : nl;
    size_t len = stop - start;
    if (len > 0 && data[stop - 1] == '\r') --len;
    v.tokens_.emplace_back(data, start, len);
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  v.BuildIndex();
  return v;
}

Vocab Vocab::FromTokens(std::vector<std::string> tokens) {
  Vocab v;
  v.path_ = "<in-memory vocab>";
  v.tokens_ = std::move(tokens);
  v.BuildIndex();
  return v;
}

void Vocab::BuildIndex() {
  if (tokens_.empty()) Fail("vocab file '", path_, "' is empty");
  size_t cap = 16;
  while (cap < tokens_.size() * 2) cap <<= 1;
  index_.assign(cap, -1);
  index_mask_ = cap - 1;
  max_token_bytes_ = 0;
  for (size_t id = 0; id < tokens_.size(); ++id) {
    const std::string& t = tokens_[id];
    if (t.empty()) continue;
    max_token_bytes_ = std::max(max_token_bytes_, t.size());
    for (uint64_t h = HashBytes(t) & index_mask_;; h = (h + 1) & index_mask_) {
      if (index_[h] < 0) {
        index_[h] = static_cast<int32_t>(id);
        break;
      }
      if (tokens_[index_[h]] == t) {
        Fail("vocab file '", path_, "' line ", id + 1, ": duplicate token '", t,
             "' (first at line ", index_[h] + 1, ")");
      }
    }
  }
}

int Vocab::Find(std::string_view token) const {
  if (token.empty() || token.size() > max_token_bytes_) return -1;
  for (uint64_t h = HashBytes(token) & index_mask_;; h = (h + 1) & index_mask_) {
    int32_t id = index_[h];
    if (id < 0) return -1;
    if (tokens_[id] == token) return id;
  }
}

namespace {
int RequireSpecial(const Vocab& v, const char* tok) {
  int id = v.Find(tok);
  if (id < 0) Fail("vocab file '", v.path(), "' has no ", tok, " token");
  return id;
}
}  // namespace

int Vocab::unk_id() const { return RequireSpecial(*this, "[UNK]"); }
int Vocab::cls_id() const { return RequireSpecial(*this, "[CLS]"); }
int Vocab::sep_id() const { return RequireSpecial(*this, "[SEP]"); }
int Vocab::mask_id() const { return RequireSpecial(*this, "[MASK]"); }
int Vocab::pad_id() const { return RequireSpecial(*this, "[PAD]"); }

// ---------------------------------------------------------------- Tokenizer

Tokenizer::Tokenizer(Vocab vocab, bool do_lower_case)
    : vocab_(std::move(vocab)), do_lower_case_(do_lower_case) {
  unk_id_ = vocab_.unk_id();
  cjk_ids_.resize(kCjkTableEnd - kCjkTableBegin);
  std::string u;
  for (uint32_t cp = kCjkTableBegin; cp < kCjkTableEnd; ++cp) {
    u.clear();
    AppendUtf8(u, cp);
    int id = vocab_.Find(u);
    cjk_ids_[cp - kCjkTableBegin] = id >= 0 ? id : unk_id_;
  }
}

template <typename Sink>
void Tokenizer::Run(std::string_view utf8, int64_t* invalid_bytes, Sink&& sink) const {
  thread_local Scratch s;
  const Vocab& v = vocab_;
  auto word = [&](const uint32_t* cps, const Span* sp, size_t n) {
    if (n == 0) return;
    auto span_of = [&](size_t from, size_t to) {
      Span r = sp[from];
      for (size_t k = from + 1; k < to; ++k) {
        r.b = std::min(r.b, sp[k].b);
        r.e = std::max(r.e, sp[k].e);
      }
      return r;
    };
    if (n > static_cast<size_t>(kMaxInputCharsPerWord)) {
      Span r = span_of(0, n);
      sink(unk_id_, r.b, r.e);
      return;
    }
    s.utf8.clear();
    s.off.resize(n + 1);
    for (size_t k = 0; k < n; ++k) {
      s.off[k] = static_cast<int>(s.utf8.size());
      AppendUtf8(s.utf8, cps[k]);
    }
    s.off[n] = static_cast<int>(s.utf8.size());
    s.pieces.clear();
    size_t start = 0;
    while (start < n) {
      const char* base;
      size_t prefix;
      if (start == 0) {
        base = s.utf8.data();
        prefix = 0;
      } else {
        s.sub.assign("##");
        s.sub.append(s.utf8, s.off[start], std::string::npos);
        base = s.sub.data();
        prefix = 2;
      }
      int found = -1;
      size_t stop = n;
      for (; stop > start; --stop) {
        size_t len = prefix + s.off[stop] - s.off[start];
        if (len > v.max_token_bytes_) continue;
        found = v.Find(std::string_view(base, len));
        if (found >= 0) break;
      }
      if (found < 0) {
        Span r = span_of(0, n);
        sink(unk_id_, r.b, r.e);
        return;
      }
      s.pieces.push_back({found, static_cast<int>(start), static_cast<int>(stop)});
      start = stop;
    }
    for (const Piece& pc : s.pieces) {
      Span r = span_of(pc.start, pc.end);
      sink(pc.id, r.b, r.e);
    }
  };
  auto cjk = [&](uint32_t cp, int32_t pos) {
    int id;
    if (cp < kCjkTableEnd) {
      id = cjk_ids_[cp - kCjkTableBegin];
    } else {
      s.utf8.clear();
      AppendUtf8(s.utf8, cp);
      id = v.Find(s.utf8);
      if (id < 0) id = unk_id_;
    }
    sink(id, pos, pos + 1);
  };
  BasicScan(utf8, do_lower_case_, invalid_bytes, s, word, cjk);
}

std::vector<Token> Tokenizer::Tokenize(std::string_view utf8, int64_t* invalid_bytes) const {
  std::vector<Token> out;
  out.reserve(utf8.size() / 3 + 1);
  Run(utf8, invalid_bytes, [&](int id, int b, int e) {
    Token& t = out.emplace_back();
    t.text = vocab_.token(id);
    t.id = id;
    t.begin = b;
    t.end = e;
  });
  return out;
}

std::vector<int32_t> Tokenizer::Encode(std::string_view utf8, int64_t* invalid_bytes) const {
  std::vector<int32_t> out;
  out.reserve(utf8.size() / 3 + 1);
  Run(utf8, invalid_bytes, [&](int id, int, int) { out.push_back(id); });
  return out;
}

void BasicTokenize(std::string_view utf8, bool do_lower_case,
                   const std::function<void(std::string_view word)>& fn, int64_t* invalid_bytes) {
  Scratch s;
  std::string w;
  auto word = [&](const uint32_t* cps, const Span*, size_t n) {
    w.clear();
    for (size_t k = 0; k < n; ++k) AppendUtf8(w, cps[k]);
    if (!w.empty()) fn(w);
  };
  auto cjk = [&](uint32_t cp, int32_t) {
    w.clear();
    AppendUtf8(w, cp);
    fn(w);
  };
  BasicScan(utf8, do_lower_case, invalid_bytes, s, word, cjk);
}

}  // namespace roformer
