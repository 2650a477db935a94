#include "data/corpus_shards.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "data/default_corpus.h"
#include "data/tokenizer/tokenizer.h"
#include "runtime/crc32c.h"
#include "runtime/error.h"

namespace roformer {
namespace {
namespace fs = std::filesystem;

const char kChars[] =
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过"
    "子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制"
    "机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数"
    "正";

std::vector<std::string> Utf8Chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = (static_cast<unsigned char>(s[i]) >= 0xF0)   ? 4
               : (static_cast<unsigned char>(s[i]) >= 0xE0) ? 3
               : (static_cast<unsigned char>(s[i]) >= 0xC0) ? 2
                                                            : 1;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

Vocab TinyVocab() {
  std::vector<std::string> t = {"[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (const char* p : {"。", "！", "？", "，", "；", "…", "“", "”", "!", "?", ".", "a", "b", "c",
                        "test", "##ing", "##s", "hello", "world"}) {
    t.push_back(p);
  }
  for (const auto& c : Utf8Chars(kChars)) t.push_back(c);
  return Vocab::FromTokens(t);
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "corpus_shards_test.XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Deterministic pseudo-random Chinese text: `docs` lines of 1..6 sentences.
std::string MakeText(int docs, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto chars = Utf8Chars(kChars);
  const char* enders[] = {"。", "！", "？", "；", "…"};
  std::string text;
  for (int d = 0; d < docs; ++d) {
    const int sentences = 1 + static_cast<int>(rng() % 6);
    for (int s = 0; s < sentences; ++s) {
      const int len = 3 + static_cast<int>(rng() % 20);
      for (int k = 0; k < len; ++k) text += chars[rng() % chars.size()];
      text += enders[rng() % 5];
    }
    text += "\n";
  }
  return text;
}

std::string ExpectError(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no roformer::Error thrown";
  return "";
}

TEST(Crc32c, KnownVectorsAndPaths) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32c(nullptr, 0), 0u);
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4
  std::mt19937 rng(7);
  std::string buf(4099, '\0');
  for (auto& c : buf) c = static_cast<char>(rng());
  for (size_t off : {0, 1, 3, 7}) {
    for (size_t n : {0, 1, 7, 8, 9, 63, 64, 1000, 4000}) {
      const uint32_t a = Crc32cExtend(0, buf.data() + off, n);
      EXPECT_EQ(a, Crc32cExtendPortable(0, buf.data() + off, n)) << off << " " << n;
      const size_t half = n / 3;
      EXPECT_EQ(a, Crc32cExtend(Crc32cExtend(0, buf.data() + off, half), buf.data() + off + half,
                                n - half));
    }
  }
}

TEST(SplitSentences, EndersQuotesAndNewlines) {
  std::vector<std::string_view> s;
  SplitSentences("你好。我很好！你呢？", false, &s);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0], "你好。");
  EXPECT_EQ(s[2], "你呢？");
  s.clear();
  SplitSentences("他说：“好。”然后走了……真的吗?!  ", false, &s);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0], "他说：“好。”");
  EXPECT_EQ(s[1], "然后走了……");
  EXPECT_EQ(s[2], "真的吗?!");
  s.clear();
  SplitSentences("第一行\n第二行；第三\n", true, &s);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[1], "第二行；");
  s.clear();
  SplitSentences("no enders here", false, &s);
  ASSERT_EQ(s.size(), 1u);
  s.clear();
  SplitSentences("   \n  ", true, &s);
  EXPECT_TRUE(s.empty());
}

TEST(PrepareCorpus, RoundTripMatchesTokenizer) {
  TempDir tmp;
  Tokenizer tok(TinyVocab());
  fs::create_directories(tmp / "in");
  const std::string a = MakeText(50, 1), b = "\n  \n" + MakeText(30, 2) + "\n";
  WriteFile(tmp / "in/b.txt", b);
  WriteFile(tmp / "in/a.txt", a);
  WriteFile(tmp / "in/ignored.json", "不是语料。\n");
  CorpusOptions opt;
  const CorpusStats st = PrepareCorpus({tmp / "in"}, tok, tmp / "out", opt);
  EXPECT_EQ(st.input_files, 2u);
  EXPECT_EQ(st.documents, 80u);
  EXPECT_EQ(st.empty_lines, 3u);
  EXPECT_EQ(st.invalid_utf8_bytes, 0u);
  EXPECT_FALSE(fs::exists(tmp / "out.tmp"));

  ShardedCorpus c = ShardedCorpus::Open(tmp / "out");
  c.CheckVocab(tok.vocab());
  ASSERT_EQ(c.num_documents(), 80u);
  EXPECT_EQ(c.num_tokens(), st.tokens);
  EXPECT_EQ(c.num_sentences(), st.sentences);
  EXPECT_EQ(c.manifest().token_bytes, 2);
  // Document order = sorted files (a.txt first), then lines; tokens = Encode per sentence.
  std::istringstream lines(a + b);
  std::string line;
  uint64_t d = 0;
  while (std::getline(lines, line)) {
    if (line.find_first_not_of(" ") == std::string::npos) continue;
    std::vector<std::string_view> sents;
    SplitSentences(line, false, &sents);
    ASSERT_LT(d, c.num_documents());
    ASSERT_EQ(c.doc_sentence_begin(d + 1) - c.doc_sentence_begin(d), sents.size()) << d;
    for (size_t k = 0; k < sents.size(); ++k) {
      const uint64_t s = c.doc_sentence_begin(d) + k;
      std::vector<int32_t> want = tok.Encode(sents[k]);
      std::vector<int32_t> got(c.sentence_token_begin(s + 1) - c.sentence_token_begin(s));
      c.CopyTokens(c.sentence_token_begin(s), c.sentence_token_begin(s + 1), got.data());
      EXPECT_EQ(got, want) << "doc " << d << " sentence " << k;
      EXPECT_EQ(c.SentenceAt(d, c.sentence_token_begin(s)), s);
    }
    ++d;
  }
  EXPECT_EQ(d, 80u);
}

TEST(PrepareCorpus, DeterministicAcrossRunsAndThreads) {
  TempDir tmp;
  Tokenizer tok(TinyVocab());
  WriteFile(tmp / "c.txt", MakeText(400, 3));
  CorpusOptions opt;
  opt.eval_fraction = 0.1;
  opt.max_shard_tokens = 2000;
  opt.threads = 1;
  PrepareCorpus({tmp / "c.txt"}, tok, tmp / "o1", opt);
  opt.threads = 2;
  PrepareCorpus({tmp / "c.txt"}, tok, tmp / "o2", opt);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(tmp / "o1")) names.push_back(e.path().filename());
  EXPECT_GT(names.size(), 4u);  // manifest, index and several shards
  for (const auto& n : names) {
    EXPECT_EQ(ReadFile(tmp / ("o1/" + n)), ReadFile(tmp / ("o2/" + n))) << n;
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp / "o2"), fs::directory_iterator()),
            static_cast<long>(names.size()));
}

TEST(PrepareCorpus, ShardsNeverSplitDocuments) {
  TempDir tmp;
  Tokenizer tok(TinyVocab());
  WriteFile(tmp / "c.txt", MakeText(300, 4));
  CorpusOptions opt;
  opt.max_shard_tokens = 500;
  const CorpusStats st = PrepareCorpus({tmp / "c.txt"}, tok, tmp / "o", opt);
  EXPECT_GT(st.shards, 5u);
  ShardedCorpus c = ShardedCorpus::Open(tmp / "o");
  // Reading every document through the shard mapping equals tokenizing its line.
  std::istringstream lines(ReadFile(tmp / "c.txt"));
  std::string line;
  for (uint64_t d = 0; std::getline(lines, line); ++d) {
    std::vector<int32_t> got(c.doc_token_end(d) - c.doc_token_begin(d));
    c.CopyTokens(c.doc_token_begin(d), c.doc_token_end(d), got.data());
    EXPECT_EQ(got, tok.Encode(line)) << d;
  }
}

TEST(PrepareCorpus, BlankLineDocuments) {
  TempDir tmp;
  Tokenizer tok(TinyVocab());
  WriteFile(tmp / "c.txt", "第一行\n第二行。第三\n\n\n另一个文档\n最后\n");
  CorpusOptions opt;
  opt.doc_per_line = false;
  const CorpusStats st = PrepareCorpus({tmp / "c.txt"}, tok, tmp / "o", opt);
  EXPECT_EQ(st.documents, 2u);
  EXPECT_EQ(st.sentences, 5u);
  ShardedCorpus c = ShardedCorpus::Open(tmp / "o");
  EXPECT_EQ(c.doc_sentence_begin(1), 3u);
  EXPECT_FALSE(c.manifest().doc_per_line);
}

TEST(PrepareCorpus, InvalidUtf8IsCountedNotFatal) {
  TempDir tmp;
  Tokenizer tok(TinyVocab());
  WriteFile(tmp / "c.txt", "你好\xff\xfe。世界\xc3\n\x80\x80\x80\n好的。\n");
  const CorpusStats st = PrepareCorpus({tmp / "c.txt"}, tok, tmp / "o");
  EXPECT_EQ(st.invalid_utf8_bytes, 6u);
  EXPECT_EQ(st.documents, 2u);
  EXPECT_EQ(st.dropped_documents, 1u);  // the line of only invalid bytes
  EXPECT_EQ(st.characters, 8u);
  ShardedCorpus c = ShardedCorpus::Open(tmp / "o");
  EXPECT_EQ(c.manifest().invalid_utf8_bytes, 6u);
}

TEST(PrepareCorpus, EmptyCorpusIsAnErrorNamingTheInput) {
  TempDir tmp;
  Tokenizer tok(TinyVocab());
  WriteFile(tmp / "empty.txt", "\n   \n\xff\xff\n");
  std::string msg = ExpectError([&] { PrepareCorpus({tmp / "empty.txt"}, tok, tmp / "o"); });
  EXPECT_NE(msg.find("empty.txt"), std::string::npos) << msg;
  EXPECT_NE(msg.find("empty"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(tmp / "o"));
  WriteFile(tmp / "zero.txt", "");
  msg = ExpectError([&] { PrepareCorpus({tmp / "zero.txt"}, tok, tmp / "o"); });
  EXPECT_NE(msg.find("zero.txt"), std::string::npos) << msg;
  msg = ExpectError([&] { PrepareCorpus({tmp / "missing.txt"}, tok, tmp / "o"); });
  EXPECT_NE(msg.find("missing.txt"), std::string::npos) << msg;
  fs::create_directories(tmp / "nodir");
  msg = ExpectError([&] { PrepareCorpus({tmp / "nodir"}, tok, tmp / "o"); });
  EXPECT_NE(msg.find("nodir"), std::string::npos) << msg;
}

TEST(PrepareCorpus, ExistingOutputNeedsOverwrite) {
  TempDir tmp;
  Tokenizer tok(TinyVocab());
  WriteFile(tmp / "c.txt", MakeText(10, 5));
  PrepareCorpus({tmp / "c.txt"}, tok, tmp / "o");
  std::string msg = ExpectError([&] { PrepareCorpus({tmp / "c.txt"}, tok, tmp / "o"); });
  EXPECT_NE(msg.find("exists"), std::string::npos) << msg;
  WriteFile(tmp / "c.txt", MakeText(20, 6));
  CorpusOptions opt;
  opt.overwrite = true;
  PrepareCorpus({tmp / "c.txt"}, tok, tmp / "o/", opt);
  EXPECT_EQ(ShardedCorpus::Open(tmp / "o").num_documents(), 20u);
  EXPECT_FALSE(fs::exists(tmp / "o.old"));
  EXPECT_FALSE(fs::exists(tmp / "o.tmp"));
}

TEST(ShardedCorpus, TruncatedOrCorruptedFilesAreNamed) {
  TempDir tmp;
  Tokenizer tok(TinyVocab());
  WriteFile(tmp / "c.txt", MakeText(100, 7));
  CorpusOptions opt;
  opt.max_shard_tokens = 1000;
  PrepareCorpus({tmp / "c.txt"}, tok, tmp / "o", opt);
  fs::copy(tmp / "o", tmp / "t");
  fs::copy(tmp / "o", tmp / "x");
  fs::copy(tmp / "o", tmp / "i");
  // Truncated shard.
  fs::resize_file(tmp / "t/shard-00001.bin", fs::file_size(tmp / "t/shard-00001.bin") - 2);
  std::string msg = ExpectError([&] { ShardedCorpus::Open(tmp / "t"); });
  EXPECT_NE(msg.find("shard-00001.bin"), std::string::npos) << msg;
  // One flipped byte: same size, CRC mismatch.
  std::string data = ReadFile(tmp / "x/shard-00000.bin");
  data[data.size() / 2] ^= 0x40;
  WriteFile(tmp / "x/shard-00000.bin", data);
  msg = ExpectError([&] { ShardedCorpus::Open(tmp / "x"); });
  EXPECT_NE(msg.find("shard-00000.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CRC32C"), std::string::npos) << msg;
  EXPECT_NO_THROW(ShardedCorpus::Open(tmp / "x", /*verify_checksums=*/false));
  // Corrupted index.
  data = ReadFile(tmp / "i/index.bin");
  data[50] ^= 1;
  WriteFile(tmp / "i/index.bin", data);
  msg = ExpectError([&] { ShardedCorpus::Open(tmp / "i"); });
  EXPECT_NE(msg.find("index.bin"), std::string::npos) << msg;
  // Missing shard, missing manifest.
  fs::remove(tmp / "t/shard-00002.bin");
  fs::remove(tmp / "t/shard-00001.bin");
  msg = ExpectError([&] { ShardedCorpus::Open(tmp / "t"); });
  EXPECT_NE(msg.find("shard-00001.bin"), std::string::npos) << msg;
  msg = ExpectError([&] { ShardedCorpus::Open(tmp / "nothing"); });
  EXPECT_NE(msg.find("manifest.txt"), std::string::npos) << msg;
}

TEST(ShardedCorpus, VocabMismatchAndMissingVocab) {
  TempDir tmp;
  Tokenizer tok(TinyVocab());
  WriteFile(tmp / "c.txt", MakeText(10, 8));
  PrepareCorpus({tmp / "c.txt"}, tok, tmp / "o");
  ShardedCorpus c = ShardedCorpus::Open(tmp / "o");
  auto tokens = TinyVocab().tokens();
  std::swap(tokens[10], tokens[11]);
  std::string msg = ExpectError([&] { c.CheckVocab(Vocab::FromTokens(tokens)); });
  EXPECT_NE(msg.find("vocab"), std::string::npos) << msg;
  msg = ExpectError([&] { Vocab::Load(tmp / "no-such-vocab.txt"); });
  EXPECT_NE(msg.find("no-such-vocab.txt"), std::string::npos) << msg;
}

TEST(ShardedCorpus, EvalSplitIsHashOfDocumentIndex) {
  TempDir tmp;
  Tokenizer tok(TinyVocab());
  WriteFile(tmp / "c.txt", MakeText(2000, 9));
  CorpusOptions opt;
  opt.eval_fraction = 0.2;
  const CorpusStats st = PrepareCorpus({tmp / "c.txt"}, tok, tmp / "o", opt);
  ShardedCorpus c = ShardedCorpus::Open(tmp / "o");
  EXPECT_EQ(c.eval_documents().size(), st.eval_documents);
  EXPECT_EQ(c.train_documents().size() + c.eval_documents().size(), 2000u);
  EXPECT_NEAR(c.eval_documents().size() / 2000.0, 0.2, 0.03);
  for (uint32_t d : c.eval_documents()) EXPECT_TRUE(IsEvalDocument(d, 0.2));
  for (uint32_t d : c.train_documents()) EXPECT_FALSE(c.IsEval(d));
  EXPECT_FALSE(IsEvalDocument(5, 0.0));
}

TEST(PrepareCorpus, HugeLinesAreLinear) {
  TempDir tmp;
  Tokenizer tok(TinyVocab());
  // A ~24 MB line with sentence enders and a ~6 MB line with none.
  const auto chars = Utf8Chars(kChars);
  std::string big;
  big.reserve(31 << 20);
  for (int i = 0; big.size() < (24u << 20); ++i) {
    big += chars[i % chars.size()];
    if (i % 37 == 36) big += "。";
  }
  big += "\n";
  for (int i = 0; big.size() < (30u << 20); ++i) big += chars[(i * 7) % chars.size()];
  big += "\n";
  WriteFile(tmp / "big.txt", big);
  const auto t0 = std::chrono::steady_clock::now();
  const CorpusStats st = PrepareCorpus({tmp / "big.txt"}, tok, tmp / "o");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(st.documents, 2u);
  EXPECT_GT(st.tokens, 9'000'000u);
  EXPECT_LT(secs, 15.0);
  ShardedCorpus c = ShardedCorpus::Open(tmp / "o");
  EXPECT_EQ(c.doc_sentence_begin(2) - c.doc_sentence_begin(1), 1u);
}

TEST(DefaultCorpus, RoffFortunesAndCleaning) {
  EXPECT_EQ(StripRoffLine(".TH LS 1"), "");
  EXPECT_EQ(StripRoffLine("'\\\" comment"), "");
  EXPECT_EQ(StripRoffLine("\\fB\\-l\\fR 使用\\(lq长\\(rq格式\\&。\\\" trailing comment"),
            "-l 使用\u201c长\u201d格式。");
  EXPECT_EQ(StripRoffLine("\\s-1ABC\\s0 \\f(CWcode\\fP \\e"), "ABC code \\");
  const std::string page =
      ".TH X 1\n.SH 名称\nls \\- 列出目录\n内容\n.PP\nEnglish only\n第二段。\n";
  EXPECT_EQ(RoffToText(page), "ls - 列出目录内容 第二段。");
  const std::string fortunes =
      "\x1b[32m《静夜思》\x1b[m\n\x1b[33m作者：李白\x1b[m\n床前明月光，\n疑是地上霜。\n%\nno "
      "cjk\n%\n"
      "第二首\n\n下一段\n";
  const auto docs = ParseFortunes(fortunes);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0], "《静夜思》作者：李白床前明月光，疑是地上霜。");
  EXPECT_EQ(docs[1], "第二首 下一段");
  uint64_t bad = 0;
  EXPECT_EQ(CleanText("  a\t\tb\xff 中\r\n", &bad), "a b 中");
  EXPECT_EQ(bad, 1u);
  EXPECT_TRUE(HasCjk("abc中"));
  EXPECT_FALSE(HasCjk("abc，。"));
}

TEST(DefaultCorpus, BuildsFromGivenSources) {
  TempDir tmp;
  fs::create_directories(tmp / "fortunes");
  fs::create_directories(tmp / "man/man1");
  fs::create_directories(tmp / "shared/corpus");
  WriteFile(tmp / "fortunes/tang", "春眠不觉晓。\n%\n处处闻啼鸟。\n");
  WriteFile(tmp / "fortunes/tang.dat", "binary index, skipped");
  WriteFile(tmp / "man/man1/ls.1", ".SH 名称\nls \\- 列出目录内容\n");
  WriteFile(tmp / "shared/corpus/a.txt", "第一行。\n第二行。\n");
  DefaultCorpusOptions opt;
  opt.fortunes_dir = tmp / "fortunes";
  opt.man_dir = tmp / "man";
  opt.shared_data_dir = tmp / "shared";
  const DefaultCorpusStats st = BuildDefaultCorpus(tmp / "cache", opt);
  ASSERT_EQ(st.sources.size(), 3u);
  EXPECT_EQ(st.sources[0].documents, 2u);
  EXPECT_EQ(st.sources[1].documents, 1u);
  EXPECT_EQ(st.sources[2].documents, 2u);
  EXPECT_EQ(st.sources[2].characters, 8u);
  EXPECT_EQ(ReadFile(st.path),
            "春眠不觉晓。\n处处闻啼鸟。\nls - 列出目录内容\n第一行。\n第二行。\n");
  opt.fortunes_dir = tmp / "none";
  opt.man_dir = tmp / "none";
  opt.shared_data_dir = "";
  EXPECT_THROW(BuildDefaultCorpus(tmp / "cache2", opt), Error);
}

}  // namespace
}  // namespace roformer
