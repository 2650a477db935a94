// BERT tokenizer: HF reference fixture (tests/reference/fixtures/tokenizer_cases.jsonl, made by
// tests/reference/make_tokenizer_fixture.py), Google's tokenization_test.py vectors, UTF-8 and
// vocab error handling, and the vocab builder.
#include "data/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "data/tokenizer/unicode_tables.h"
#include "data/tokenizer/vocab_builder.h"
#include "runtime/error.h"

namespace roformer {
namespace {

const std::string kSharedVocab =
    std::string(ROFORMER_SOURCE_DIR) + "/../shared/data/vocab/bert-chinese-vocab.txt";
const std::string kFixture =
    std::string(ROFORMER_SOURCE_DIR) + "/tests/reference/fixtures/tokenizer_cases.jsonl";

// ---- a minimal JSON reader (enough for the fixture: objects, arrays, strings, ints, null) ----
struct Json {
  enum Kind { kNull, kNum, kStr, kArr, kObj } kind = kNull;
  long long num = 0;
  std::string str;
  std::vector<Json> arr;
  std::map<std::string, Json> obj;
  const Json& operator[](const std::string& k) const { return obj.at(k); }
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view s) : s_(s) {}
  Json Parse() {
    Json j = Value();
    Ws();
    if (i_ != s_.size()) throw std::runtime_error("trailing JSON");
    return j;
  }

 private:
  void Ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  char Peek() {
    Ws();
    if (i_ >= s_.size()) throw std::runtime_error("eof");
    return s_[i_];
  }
  void Expect(char c) {
    if (Peek() != c) throw std::runtime_error(std::string("expected ") + c);
    ++i_;
  }
  static void Utf8(std::string& o, uint32_t cp) {
    if (cp < 0x80) {
      o += static_cast<char>(cp);
    } else if (cp < 0x800) {
      o += static_cast<char>(0xC0 | (cp >> 6));
      o += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      o += static_cast<char>(0xE0 | (cp >> 12));
      o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      o += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      o += static_cast<char>(0xF0 | (cp >> 18));
      o += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      o += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  uint32_t Hex4() {
    uint32_t v = std::stoul(std::string(s_.substr(i_, 4)), nullptr, 16);
    i_ += 4;
    return v;
  }
  std::string Str() {
    Expect('"');
    std::string o;
    while (s_[i_] != '"') {
      char c = s_[i_++];
      if (c != '\\') {
        o += c;
        continue;
      }
      char e = s_[i_++];
      switch (e) {
        case 'n':
          o += '\n';
          break;
        case 't':
          o += '\t';
          break;
        case 'r':
          o += '\r';
          break;
        case 'b':
          o += '\b';
          break;
        case 'f':
          o += '\f';
          break;
        case 'u': {
          uint32_t cp = Hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.substr(i_, 2) == "\\u") {
            i_ += 2;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (Hex4() - 0xDC00);
          }
          Utf8(o, cp);
          break;
        }
        default:
          o += e;
      }
    }
    ++i_;
    return o;
  }
  Json Value() {
    Json j;
    char c = Peek();
    if (c == '{') {
      j.kind = Json::kObj;
      ++i_;
      if (Peek() == '}') return ++i_, j;
      while (true) {
        std::string k = Str();
        Expect(':');
        j.obj[k] = Value();
        if (Peek() == ',') {
          ++i_;
          continue;
        }
        Expect('}');
        return j;
      }
    }
    if (c == '[') {
      j.kind = Json::kArr;
      ++i_;
      if (Peek() == ']') return ++i_, j;
      while (true) {
        j.arr.push_back(Value());
        if (Peek() == ',') {
          ++i_;
          continue;
        }
        Expect(']');
        return j;
      }
    }
    if (c == '"') {
      j.kind = Json::kStr;
      j.str = Str();
      return j;
    }
    if (s_.substr(i_, 4) == "null") {
      i_ += 4;
      return j;
    }
    j.kind = Json::kNum;
    size_t used = 0;
    j.num = std::stoll(std::string(s_.substr(i_, 24)), &used);
    i_ += used;
    return j;
  }
  std::string_view s_;
  size_t i_ = 0;
};

std::string Escaped(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\x%02x", c);
      o += b;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o;
}

const Tokenizer* SharedTokenizer() {
  static std::unique_ptr<Tokenizer> tok = [] {
    std::unique_ptr<Tokenizer> t;
    if (std::filesystem::exists(kSharedVocab))
      t = std::make_unique<Tokenizer>(Vocab::Load(kSharedVocab));
    return t;
  }();
  return tok.get();
}

// ---- HF reference fixture ----

TEST(TokenizerFixture, MatchesHuggingFaceIdsAndOffsets) {
  const Tokenizer* tok = SharedTokenizer();
  if (!tok) GTEST_SKIP() << "shared vocab not found: " << kSharedVocab;
  std::ifstream in(kFixture, std::ios::binary);
  ASSERT_TRUE(in) << "missing fixture " << kFixture;
  std::string line;
  int cases = 0, with_offsets = 0, real = 0;
  while (std::getline(in, line, '\n')) {
    if (line.empty()) continue;
    Json c = JsonParser(line).Parse();
    const std::string& text = c["text"].str;
    SCOPED_TRACE(c["source"].str + ": \"" + Escaped(text) + "\"");
    std::vector<Token> got = tok->Tokenize(text);
    std::vector<std::string> want_tokens, got_tokens;
    std::vector<long long> want_ids, got_ids;
    for (const Json& t : c["tokens"].arr) want_tokens.push_back(t.str);
    for (const Json& t : c["ids"].arr) want_ids.push_back(t.num);
    for (const Token& t : got) {
      got_tokens.push_back(t.text);
      got_ids.push_back(t.id);
    }
    EXPECT_EQ(got_tokens, want_tokens);
    EXPECT_EQ(got_ids, want_ids);
    std::vector<int> enc;
    for (int32_t id : tok->Encode(text)) enc.push_back(id);
    std::vector<int> want_int(want_ids.begin(), want_ids.end());
    EXPECT_EQ(enc, want_int) << "Encode() differs from Tokenize()";
    if (c["offsets"].kind == Json::kArr) {
      std::vector<std::pair<int, int>> want_off, got_off;
      for (const Json& o : c["offsets"].arr) want_off.emplace_back(o.arr[0].num, o.arr[1].num);
      for (const Token& t : got) got_off.emplace_back(t.begin, t.end);
      EXPECT_EQ(got_off, want_off);
      ++with_offsets;
    }
    ++cases;
    if (c["source"].str.rfind("synthetic", 0) != 0) ++real;
  }
  EXPECT_GE(real, 40);
  EXPECT_GE(cases - real, 10);
  EXPECT_GE(with_offsets, cases - 4);
}

TEST(TokenizerFixture, SharedVocabLayout) {
  const Tokenizer* tok = SharedTokenizer();
  if (!tok) GTEST_SKIP() << "shared vocab not found: " << kSharedVocab;
  const Vocab& v = tok->vocab();
  EXPECT_EQ(v.size(), 21128);
  EXPECT_EQ(v.pad_id(), 0);
  EXPECT_EQ(v.unk_id(), 100);
  EXPECT_EQ(v.cls_id(), 101);
  EXPECT_EQ(v.sep_id(), 102);
  EXPECT_EQ(v.mask_id(), 103);
  // The U+2028 trap: line 344 is U+2028 itself, id 13502 is "##" U+2028.
  EXPECT_EQ(v.token(343), "\xe2\x80\xa8");
  EXPECT_EQ(v.Find("\xe2\x80\xa8"), 343);
  EXPECT_EQ(v.Find("##\xe2\x80\xa8"), 13502);
  EXPECT_EQ(v.Find("[unused1]"), 1);
  EXPECT_EQ(v.Find("no-such-token"), -1);
}

// ---- Google tokenization_test.py vectors ----

Vocab GoogleVocab() {
  return Vocab::FromTokens(
      {"[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing", ","});
}

std::vector<std::string> Texts(const std::vector<Token>& toks) {
  std::vector<std::string> out;
  for (const auto& t : toks) out.push_back(t.text);
  return out;
}

// Basic tokenization as words, via the vocab builder's entry point.
std::vector<std::string> Basic(std::string_view text, bool lower) {
  std::vector<std::string> out;
  BasicTokenize(text, lower, [&](std::string_view w) { out.emplace_back(w); });
  return out;
}

TEST(TokenizerGoogle, BasicTokenizer) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Basic("ah\u535A\u63A8zz", true), (V{"ah", "\u535A", "\u63A8", "zz"}));
  EXPECT_EQ(Basic(" \tHeLLo!how  \n Are yoU?  ", true),
            (V{"hello", "!", "how", "are", "you", "?"}));
  EXPECT_EQ(Basic("H\u00E9llo", true), (V{"hello"}));
  EXPECT_EQ(Basic(" \tHeLLo!how  \n Are yoU?  ", false),
            (V{"HeLLo", "!", "how", "Are", "yoU", "?"}));
  // Without lower-casing accents are kept, and NFC composes decomposed input (HF's NFC step).
  EXPECT_EQ(Basic("H\u00E9llo He\u0301llo", false), (V{"H\u00E9llo", "H\u00E9llo"}));
}

TEST(TokenizerGoogle, WordpieceTokenizer) {
  Tokenizer tok(GoogleVocab());
  using V = std::vector<std::string>;
  EXPECT_EQ(Texts(tok.Tokenize("")), V{});
  EXPECT_EQ(Texts(tok.Tokenize("unwanted running")), (V{"un", "##want", "##ed", "runn", "##ing"}));
  EXPECT_EQ(Texts(tok.Tokenize("unwantedX running")), (V{"[UNK]", "runn", "##ing"}));
}

TEST(TokenizerGoogle, FullTokenizer) {
  Tokenizer tok(GoogleVocab());
  std::vector<Token> t = tok.Tokenize("UNwant\u00E9d,running");
  EXPECT_EQ(Texts(t), (std::vector<std::string>{"un", "##want", "##ed", ",", "runn", "##ing"}));
  EXPECT_EQ(tok.Encode("UNwant\u00E9d,running"), (std::vector<int32_t>{7, 4, 5, 10, 8, 9}));
  std::vector<std::pair<int, int>> off;
  for (const auto& x : t) off.emplace_back(x.begin, x.end);
  EXPECT_EQ(off,
            (std::vector<std::pair<int, int>>{{0, 2}, {2, 6}, {6, 8}, {8, 9}, {9, 13}, {13, 16}}));
  // [UNK] spans its whole word.
  t = tok.Tokenize("unwantedX running");
  EXPECT_EQ(t[0].begin, 0);
  EXPECT_EQ(t[0].end, 9);
}

TEST(TokenizerGoogle, CharacterClasses) {
  using namespace unicode;
  for (uint32_t c : {0x20u, 0x09u, 0x0Du, 0x0Au, 0xA0u}) EXPECT_TRUE(Props(c) & kSep) << c;
  EXPECT_TRUE(Props(0x05) & kDrop);
  for (uint32_t c : {0x09u, 0x0Du, 0x1F4A9u}) EXPECT_FALSE(Props(c) & kDrop) << c;
  for (uint32_t c : {uint32_t('-'), uint32_t('$'), uint32_t('`'), uint32_t('.')}) {
    EXPECT_TRUE(Props(c) & kPunct) << c;
  }
  EXPECT_FALSE(Props('A') & kPunct);
  EXPECT_FALSE(Props(' ') & kPunct);
  EXPECT_STREQ(kUnicodeVersion, "14.0.0");
}

TEST(Tokenizer, NoLowerCaseKeepsCaseAndAccents) {
  Vocab v = Vocab::FromTokens({"[UNK]", "Hello", "h\u00E9llo", "##!", "!"});
  Tokenizer cased(v, /*do_lower_case=*/false);
  std::vector<Token> t = cased.Tokenize("Hello! he\u0301llo");
  ASSERT_EQ(Texts(t), (std::vector<std::string>{"Hello", "!", "h\u00E9llo"}));
  // The NFC composite spans both original code points.
  EXPECT_EQ(t[2].begin, 7);
  EXPECT_EQ(t[2].end, 13);
}

TEST(Tokenizer, LongWordIsUnk) {
  Tokenizer tok(Vocab::FromTokens({"[UNK]", "a", "##a"}));
  EXPECT_EQ(tok.Encode(std::string(100, 'a')).size(), 100u);
  std::vector<Token> t = tok.Tokenize("a " + std::string(101, 'a'));
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[1].text, "[UNK]");
  EXPECT_EQ(t[1].begin, 2);
  EXPECT_EQ(t[1].end, 103);
}

// ---- UTF-8 handling ----

TEST(Tokenizer, InvalidUtf8BytesAreDroppedAndCounted) {
  Tokenizer tok(Vocab::FromTokens({"[UNK]", "ab", "\u4e2d", "c"}));
  int64_t bad = -1;
  // Stray continuation byte, truncated 3-byte sequence, overlong, surrogate, > U+10FFFF, 0xFF.
  std::string text =
      "a\x80"
      "b \xe4\xb8 \xc0\xaf c\xed\xa0\x80 \xf4\x90\x80\x80\xff \xe4\xb8\xad";
  std::vector<Token> t = tok.Tokenize(text, &bad);
  EXPECT_EQ(Texts(t), (std::vector<std::string>{"ab", "c", "\u4e2d"}));
  // Python: b"...".decode("utf-8", "ignore") drops 1 + 2 + 2 + 3 + 4 + 1 bytes.
  EXPECT_EQ(bad, 13);
  // Offsets count decoded code points only: "ab c   中" -> positions after dropping.
  EXPECT_EQ(t[0].begin, 0);
  EXPECT_EQ(t[0].end, 2);
  EXPECT_EQ(t[1].begin, 5);
  EXPECT_EQ(t[2].begin, 8);
  EXPECT_EQ(tok.Encode(text, &bad).size(), 3u);
  EXPECT_EQ(bad, 13);
  bad = -1;
  tok.Tokenize("clean", &bad);
  EXPECT_EQ(bad, 0);
}

// ---- Vocab errors ----

TEST(Vocab, MissingFileNamesPath) {
  const std::string path = "/nonexistent/dir/vocab-xyz.txt";
  try {
    Vocab::Load(path);
    FAIL() << "expected roformer::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

std::string TempFile(const std::string& name, const std::string& content) {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("roformer_tok_" + std::to_string(::getpid()) + "_" + name))
                         .string();
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

TEST(Vocab, EmptyAndDuplicateAreErrors) {
  std::string empty = TempFile("empty.txt", "");
  EXPECT_THROW(Vocab::Load(empty), Error);
  try {
    Vocab::Load(empty);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(empty), std::string::npos) << e.what();
  }
  EXPECT_THROW(Vocab::FromTokens({}), Error);
  std::string dup = TempFile("dup.txt", "[UNK]\na\nb\na\n");
  EXPECT_THROW(Vocab::Load(dup), Error);
  std::filesystem::remove(empty);
  std::filesystem::remove(dup);
}

TEST(Vocab, SplitsOnNewlineOnly) {
  // U+2028 inside a line is a token; CRLF line ends are tolerated; no final newline is fine.
  std::string path = TempFile("seps.txt", "[UNK]\r\n\xe2\x80\xa8\nx\xe2\x80\xa8y\nlast");
  Vocab v = Vocab::Load(path);
  EXPECT_EQ(v.size(), 4);
  EXPECT_EQ(v.Find("[UNK]"), 0);
  EXPECT_EQ(v.Find("\xe2\x80\xa8"), 1);
  EXPECT_EQ(v.Find("x\xe2\x80\xa8y"), 2);
  EXPECT_EQ(v.Find("last"), 3);
  EXPECT_THROW(v.cls_id(), Error);
  std::filesystem::remove(path);
  // A tokenizer needs [UNK].
  EXPECT_THROW(Tokenizer(Vocab::FromTokens({"a", "b"})), Error);
}

// ---- Vocab builder ----

const char* kCorpus =
    "今天天气很好，我们去公园散步。\n"
    "The quick brown fox jumps over the lazy dog.\n"
    "running runner runs ran; unwanted wanted want!\n"
    "花呗额度提升了吗？花呗怎么还款\n"
    "ＡＢＣ full-width ２０２１年 café Héllo\n"
    "the the the quick quick running running\n";

TEST(VocabBuilder, DeterministicWithSpecialsAndNoUnk) {
  VocabBuildOptions opt;
  opt.size = 200;
  VocabBuilder b1(opt), b2(opt);
  b1.AddText(kCorpus);
  b2.AddText(kCorpus);
  std::vector<std::string> v1 = b1.Build(), v2 = b2.Build();
  EXPECT_EQ(v1, v2);
  ASSERT_GE(v1.size(), 5u);
  EXPECT_EQ((std::vector<std::string>(v1.begin(), v1.begin() + 5)),
            (std::vector<std::string>{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}));
  EXPECT_LE(v1.size(), 200u);
  // Frequent multi-character pieces got merged.
  EXPECT_NE(std::find(v1.begin(), v1.end(), "the"), v1.end());
  Tokenizer tok(Vocab::FromTokens(v1));
  std::istringstream lines(kCorpus);
  std::string line;
  while (std::getline(lines, line)) {
    for (const Token& t : tok.Tokenize(line)) EXPECT_NE(t.text, "[UNK]") << line;
  }
  // The vocab file round-trips through Write/Load.
  std::string path = TempFile("built.txt", "");
  VocabBuilder::Write(v1, path);
  EXPECT_EQ(Vocab::Load(path).tokens(), v1);
  std::filesystem::remove(path);
}

TEST(VocabBuilder, ChineseLayoutWhenLarge) {
  VocabBuildOptions opt;
  opt.size = kChineseLayoutMinSize;
  VocabBuilder b(opt);
  b.AddText(kCorpus);
  std::vector<std::string> v = b.Build();
  Vocab vocab = Vocab::FromTokens(v);
  EXPECT_EQ(vocab.pad_id(), 0);
  EXPECT_EQ(vocab.Find("[unused1]"), 1);
  EXPECT_EQ(vocab.Find("[unused99]"), 99);
  EXPECT_EQ(vocab.unk_id(), 100);
  EXPECT_EQ(vocab.cls_id(), 101);
  EXPECT_EQ(vocab.sep_id(), 102);
  EXPECT_EQ(vocab.mask_id(), 103);
  // Characters by frequency, then their ## twins.
  size_t n_chars = 0;
  while (104 + n_chars < v.size() && v[104 + n_chars].rfind("##", 0) != 0) ++n_chars;
  ASSERT_GT(n_chars, 10u);
  EXPECT_EQ(vocab.Find("##" + v[104]), static_cast<int>(104 + n_chars));
  EXPECT_NE(vocab.Find("##e"), -1);
  EXPECT_NE(vocab.Find("花"), -1);
  EXPECT_NE(vocab.Find("##花"), -1);
}

}  // namespace
}  // namespace roformer
