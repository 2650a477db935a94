// CLUE readers: every real file under shared/data/clue (counts from shared/data/MANIFEST.md), plus
// error handling on synthetic files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "data/clue/clue_tasks.h"
#include "runtime/error.h"

namespace roformer {
namespace {
namespace fs = std::filesystem;

const std::string kClue = std::string(ROFORMER_SOURCE_DIR) + "/../shared/data/clue";

#define REQUIRE_CLUE_DATA()                                                        \
  do {                                                                             \
    if (!fs::is_directory(kClue)) GTEST_SKIP() << "shared data absent: " << kClue; \
  } while (0)

ClueDataset Read(const char* task, const std::string& rel) {
  return ReadClueFile(GetClueTask(task), kClue + "/" + rel);
}

std::map<std::string, int64_t> LabelCounts(const ClueDataset& ds) {
  std::map<std::string, int64_t> m;
  for (const Example& e : ds.examples) {
    m[e.label < 0               ? "-"
      : ds.task->labels.empty() ? std::to_string(e.label)
                                : ds.task->labels[e.label]]++;
  }
  return m;
}

void ExpectCounts(const ClueDataset& ds, int64_t rows, int64_t examples, int64_t dropped,
                  int64_t unlabelled) {
  EXPECT_EQ(ds.stats.rows, rows) << ds.paths[0];
  EXPECT_EQ(static_cast<int64_t>(ds.examples.size()), examples) << ds.paths[0];
  EXPECT_EQ(ds.stats.examples, examples) << ds.paths[0];
  EXPECT_EQ(ds.stats.dropped, dropped) << ds.paths[0];
  EXPECT_EQ(ds.stats.unlabelled, unlabelled) << ds.paths[0];
  std::set<std::string> ids;
  for (const Example& e : ds.examples) ids.insert(e.id);
  EXPECT_EQ(static_cast<int64_t>(ids.size()), examples) << "ids not unique in " << ds.paths[0];
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "clue_readers_test.XXXXXX").string();
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// ---- registry ----

TEST(ClueTasks, RegistryAndAliases) {
  EXPECT_EQ(ClueTasks().size(), 10u);
  EXPECT_EQ(GetClueTask("cluewsc").name, "cluewsc2020");
  EXPECT_EQ(GetClueTask("CLUEWSC2020").name, "cluewsc2020");
  EXPECT_EQ(GetClueTask("tnews").labels.size(), 15u);
  EXPECT_EQ(GetClueTask("tnews").labels[5], "106");
  EXPECT_EQ(GetClueTask("tnews").labels[14], "116");
  EXPECT_EQ(GetClueTask("iflytek").labels.size(), 119u);
  EXPECT_EQ(GetClueTask("iflytek").labels[118], "118");
  EXPECT_EQ(GetClueTask("ocnli").labels,
            (std::vector<std::string>{"entailment", "neutral", "contradiction"}));
  EXPECT_EQ(GetClueTask("cmnli").labels, GetClueTask("ocnli").labels);
  EXPECT_EQ(GetClueTask("wsc").labels, (std::vector<std::string>{"true", "false"}));
  EXPECT_EQ(GetClueTask("afqmc").submission_file, "afqmc_predict.json");
  EXPECT_EQ(GetClueTask("tnews").submission_file, "tnews11_predict.json");
  EXPECT_EQ(GetClueTask("cmrc2018").type, ClueTaskType::kSpan);
  EXPECT_EQ(GetClueTask("c3").type, ClueTaskType::kMultipleChoice);
  EXPECT_NE(ErrorOf([] { GetClueTask("glue"); }).find("unknown CLUE task 'glue'"),
            std::string::npos);
}

TEST(ClueTasks, Utf8Helpers) {
  const std::string s = "a中b";
  EXPECT_EQ(Utf8Length(s), 3);
  EXPECT_EQ(Utf8ByteOffset(s, 0), 0);
  EXPECT_EQ(Utf8ByteOffset(s, 1), 1);
  EXPECT_EQ(Utf8ByteOffset(s, 2), 4);
  EXPECT_EQ(Utf8ByteOffset(s, 3), 5);
  EXPECT_EQ(Utf8ByteOffset(s, 4), -1);
  EXPECT_EQ(Utf8ByteOffset(s, -1), -1);
}

// ---- real data (MANIFEST.md §3 counts) ----

TEST(ClueRealData, Afqmc) {
  REQUIRE_CLUE_DATA();
  ClueDataset tr = Read("afqmc", "afqmc/train.json");
  ExpectCounts(tr, 34334, 34334, 0, 0);
  EXPECT_EQ(LabelCounts(tr), (std::map<std::string, int64_t>{{"0", 23761}, {"1", 10573}}));
  EXPECT_EQ(tr.examples[0].text_a, "蚂蚁借呗等额还款可以换成先息后本吗");
  EXPECT_EQ(tr.examples[0].text_b, "借呗有先息到期还本吗");
  EXPECT_TRUE(tr.examples[0].has_text_b);
  ClueDataset dev = Read("afqmc", "afqmc/dev.json");
  ExpectCounts(dev, 4316, 4316, 0, 0);
  EXPECT_EQ(dev.examples[0].id, "0");  // no id field: line index
  EXPECT_EQ(dev.examples[5].id, "5");
  ClueDataset te = Read("afqmc", "afqmc/test.json");
  ExpectCounts(te, 3861, 3861, 0, 3861);
  EXPECT_EQ(te.examples[0].id, "0");
  EXPECT_TRUE(te.examples[0].id_is_int);
  EXPECT_EQ(te.examples[0].text_a, "借呗什么时候会取消");
}

TEST(ClueRealData, Tnews) {
  REQUIRE_CLUE_DATA();
  const ClueTaskInfo& t = GetClueTask("tnews");
  EXPECT_EQ(ReadClueLabelsFile(kClue + "/tnews/labels.json"), t.labels);
  ClueDataset tr = Read("tnews", "tnews/train.json");
  ExpectCounts(tr, 1185, 1185, 0, 0);
  EXPECT_EQ(LabelCounts(tr).size(), 15u);
  EXPECT_EQ(LabelCounts(tr)["114"], 72);
  ExpectCounts(Read("tnews", "tnews/dev.json"), 1098, 1098, 0, 0);
  ClueDataset te = Read("tnews", "tnews/test.json");
  ExpectCounts(te, 2010, 2010, 0, 0);
  for (const auto& [l, n] : LabelCounts(te)) EXPECT_EQ(n, 134) << l;
  EXPECT_EQ(te.examples[1].id, "40");  // the file's id, not the line index
}

TEST(ClueRealData, Iflytek) {
  REQUIRE_CLUE_DATA();
  EXPECT_EQ(ReadClueLabelsFile(kClue + "/iflytek/labels.json"), GetClueTask("iflytek").labels);
  ClueDataset tr = Read("iflytek", "iflytek/train.json");
  ExpectCounts(tr, 3024, 3024, 0, 0);
  EXPECT_EQ(LabelCounts(tr).size(), 119u);
  ClueDataset dev = Read("iflytek", "iflytek/dev.json");
  ExpectCounts(dev, 1373, 1373, 0, 0);
  ExpectCounts(Read("iflytek", "iflytek/test.json"), 1749, 1749, 0, 0);
  // U+2028 inside JSON strings must not split lines.
  int64_t with_ls = 0;
  for (const auto* ds : {&tr, &dev}) {
    for (const Example& e : ds->examples) with_ls += e.text_a.find("\u2028") != std::string::npos;
  }
  EXPECT_GT(with_ls, 0);
}

TEST(ClueRealData, Ocnli) {
  REQUIRE_CLUE_DATA();
  ClueDataset t10 = Read("ocnli", "ocnli/train.10k.json");
  ExpectCounts(t10, 10000, 9985, 15, 0);
  EXPECT_EQ(LabelCounts(t10),
            (std::map<std::string, int64_t>{
                {"entailment", 3309}, {"neutral", 3434}, {"contradiction", 3242}}));
  ClueDataset t3 = Read("ocnli", "ocnli/train.3k.json");
  ExpectCounts(t3, 3000, 2994, 6, 0);
  ClueDataset dev = Read("ocnli", "ocnli/dev.json");
  ExpectCounts(dev, 3000, 2950, 50, 0);
  EXPECT_EQ(dev.stats.dropped_ids.size(), 50u);
  EXPECT_EQ(LabelCounts(dev), (std::map<std::string, int64_t>{
                                  {"entailment", 947}, {"neutral", 1103}, {"contradiction", 900}}));
  EXPECT_EQ(dev.examples[0].text_a, "身上裹一件工厂发的棉大衣,手插在袖筒里");
  EXPECT_EQ(dev.examples[0].label, 0);  // entailment
  ClueDataset te = Read("ocnli", "ocnli/test.json");
  ExpectCounts(te, 3000, 3000, 0, 3000);
  EXPECT_EQ(te.examples[0].id, "0");
  // The default train file of the directory is the largest subset present.
  const auto files = ResolveSplitFiles(GetClueTask("ocnli"), kClue + "/ocnli", "train");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(fs::path(files[0]).filename(), "train.10k.json");
}

// train_split names a subset explicitly: a file stem of the directory (issue #8: OCNLI train.3k
// could not be selected while "train" takes the largest subset present).
TEST(ClueRealData, OcnliSplitSelectionByFileStem) {
  REQUIRE_CLUE_DATA();
  const ClueTaskInfo& t = GetClueTask("ocnli");
  const std::string dir = kClue + "/ocnli";
  auto one = [&](const std::string& split) {
    const auto f = ResolveSplitFiles(t, dir, split);
    return f.size() == 1 ? fs::path(f[0]).filename().string() : std::to_string(f.size()) + " files";
  };
  EXPECT_EQ(one("train"), "train.10k.json");  // the default keeps the largest subset
  EXPECT_EQ(one("train.3k"), "train.3k.json");
  EXPECT_EQ(one("train.10k"), "train.10k.json");
  EXPECT_EQ(one("train.3k.json"), "train.3k.json");
  EXPECT_EQ(one("dev"), "dev.json");
  EXPECT_EQ(one("train.30k"), "0 files");  // not in the shared data (MANIFEST §7)
  const ClueDataset t3 = ReadClueSplit(t, dir, "train.3k");
  ExpectCounts(t3, 3000, 2994, 6, 0);
  EXPECT_EQ(t3.stats.dropped, 6);
  const std::string err = ErrorOf([&] { ReadClueSplit(t, dir, "train.30k"); });
  EXPECT_NE(err.find("no ocnli split 'train.30k' (tried train.30k.json)"), std::string::npos)
      << err;
  EXPECT_NE(err.find("available splits: dev (dev.json), test (test.json), train "
                     "(train.10k.json), train.10k, train.3k"),
            std::string::npos)
      << err;
}

TEST(ClueReaders, SplitNamesAreFileStemsInsideTheDirectory) {
  TempDir d;
  const ClueTaskInfo& tnews = GetClueTask("tnews");
  const std::string row = "{\"label\": \"100\", \"sentence\": \"x\"}\n";
  d.Write("train.json", row + row);
  d.Write("train.small.json", row);
  d.Write("labels.json", "{\"label\": \"100\"}\n");
  d.Write("notes.txt", "not a split");
  EXPECT_EQ(ReadClueSplit(tnews, d.path(), "train").examples.size(), 2u);
  EXPECT_EQ(ReadClueSplit(tnews, d.path(), "train.small").examples.size(), 1u);
  // Only plain names inside the directory; no path may escape it.
  for (const char* bad : {"../train", "sub/train", "", ".", "..", "notes", "notes.txt"}) {
    EXPECT_TRUE(ResolveSplitFiles(tnews, d.path(), bad).empty()) << bad;
  }
  // Label lists are not splits; a missing "dev" of the table is not listed.
  EXPECT_EQ(DescribeAvailableSplits(tnews, d.path()), "train (train.json), train.small");
  const std::string err = ErrorOf([&] { ReadClueSplit(tnews, d.path(), "dev"); });
  EXPECT_NE(err.find("no tnews split 'dev' (tried dev.json); available splits: train (train.json), "
                     "train.small"),
            std::string::npos)
      << err;
  // ChID answer dictionaries are not splits either; C3 d-/m- files are listed by stem too.
  TempDir e;
  e.Write("dev_answer.json", "{}");
  e.Write("c3-d-dev.json", "[]");
  e.Write("c3-m-dev.json", "[]");
  EXPECT_EQ(DescribeAvailableSplits(GetClueTask("chid"), e.path()), "c3-d-dev, c3-m-dev");
  EXPECT_EQ(DescribeAvailableSplits(GetClueTask("c3"), e.path()),
            "dev (c3-d-dev.json + c3-m-dev.json), c3-d-dev, c3-m-dev");
  TempDir empty;
  EXPECT_EQ(DescribeAvailableSplits(tnews, empty.path()), "none");
}

TEST(ClueRealData, Wsc) {
  REQUIRE_CLUE_DATA();
  ClueDataset tr = Read("cluewsc", "cluewsc/train.json");
  ExpectCounts(tr, 160, 160, 0, 0);
  EXPECT_EQ(LabelCounts(tr), (std::map<std::string, int64_t>{{"true", 82}, {"false", 78}}));
  const Example& e = tr.examples[0];
  EXPECT_EQ(e.span1_text, "树叶");
  EXPECT_EQ(e.span1_index, 22);
  EXPECT_EQ(e.span2_text, "他");
  EXPECT_EQ(e.span2_index, 30);
  EXPECT_EQ(e.id, "0");
  EXPECT_EQ(e.wsc_idx, 0);
  EXPECT_EQ(
      WscMarkedText(e),
      "为什么要出现一个身穿军装的高大男人？就像一片_树叶_飘入了树林，[他]走到了我的家人中间。");
  ExpectCounts(Read("cluewsc", "cluewsc/dev.json"), 159, 159, 0, 0);
  ExpectCounts(Read("cluewsc", "cluewsc/test.json"), 660, 660, 0, 0);
}

TEST(ClueRealData, Csl) {
  REQUIRE_CLUE_DATA();
  ClueDataset tr = Read("csl", "csl/train.json");
  ExpectCounts(tr, 159, 159, 0, 0);
  EXPECT_EQ(LabelCounts(tr), (std::map<std::string, int64_t>{{"0", 88}, {"1", 71}}));
  const Example& e = tr.examples[0];
  ASSERT_FALSE(e.keywords.empty());
  EXPECT_EQ(e.text_a.substr(0, e.keywords[0].size()), e.keywords[0]);
  EXPECT_EQ(e.text_b, e.abstract);
  ExpectCounts(Read("csl", "csl/dev.json"), 160, 160, 0, 0);
  ExpectCounts(Read("csl", "csl/test.json"), 2254, 2254, 0, 0);
}

TEST(ClueRealData, Chid) {
  REQUIRE_CLUE_DATA();
  for (const auto& [file, n] : std::vector<std::pair<std::string, int64_t>>{
           {"chid/train.json", 202}, {"chid/dev.json", 202}, {"chid/test.json", 2002}}) {
    ClueDataset ds = Read("chid", file);
    ExpectCounts(ds, n, n, 0, 0);
    for (const Example& e : ds.examples) {
      ASSERT_EQ(e.choices.size(), 7u);
      ASSERT_GE(e.label, 0);
      ASSERT_LT(e.label, 7);
      ASSERT_EQ(e.blank_marker, "#idiom#");
      ASSERT_EQ(e.content.compare(e.blank_byte, 7, "#idiom#"), 0);
      ASSERT_EQ(Utf8ByteOffset(e.content, e.blank_char), e.blank_byte);
    }
  }
  EXPECT_EQ(Read("chid", "chid/train.json").examples[0].id, "24");
}

TEST(ClueRealData, C3) {
  REQUIRE_CLUE_DATA();
  struct F {
    const char* file;
    int64_t docs, questions;
  };
  for (const F& f : {F{"c3/c3-d-train.json", 4885, 5856}, F{"c3/c3-d-dev.json", 1628, 1825},
                     F{"c3/c3-d-test.json", 1627, 1890}, F{"c3/c3-m-train.json", 3138, 6013},
                     F{"c3/c3-m-dev.json", 1046, 1991}, F{"c3/c3-m-test.json", 1045, 2002}}) {
    ClueDataset ds = Read("c3", f.file);
    EXPECT_EQ(ds.stats.documents, f.docs) << f.file;
    ExpectCounts(ds, f.questions, f.questions, 0, 0);
    for (const Example& e : ds.examples) {
      ASSERT_GE(e.label, 0);
      ASSERT_LT(static_cast<size_t>(e.label), e.choices.size());
      ASSERT_GE(e.choices.size(), 2u);
      ASSERT_LE(e.choices.size(), 4u);
    }
  }
  ClueDataset first = Read("c3", "c3/c3-d-train.json");
  EXPECT_EQ(first.examples[0].question, "女的最喜欢哪种电影?");
  EXPECT_EQ(first.examples[0].label, 2);  // 喜剧片
  EXPECT_EQ(first.examples[0].doc_id, "25-35");
  EXPECT_EQ(first.examples[0].passage_lines.size(), 2u);
  EXPECT_NE(first.examples[0].passage.find("||"), std::string::npos);
  // Splits = d + m; ids stay unique across the two files.
  const ClueTaskInfo& c3 = GetClueTask("c3");
  for (const auto& [split, n] : std::vector<std::pair<std::string, int64_t>>{
           {"train", 11869}, {"dev", 3816}, {"test", 3892}}) {
    ClueDataset ds = ReadClueSplit(c3, kClue + "/c3", split);
    EXPECT_EQ(ds.paths.size(), 2u);
    ExpectCounts(ds, n, n, 0, 0);
  }
}

TEST(ClueRealData, Cmrc2018) {
  REQUIRE_CLUE_DATA();
  ClueDataset trial = Read("cmrc2018", "cmrc2018/trial.json");
  EXPECT_EQ(trial.stats.documents, 256);
  ExpectCounts(trial, 1002, 1002, 0, 0);
  EXPECT_EQ(trial.stats.answers, 1002);
  EXPECT_EQ(trial.stats.repaired_offsets, 5);  // all in TRIAL_210, off by one
  EXPECT_EQ(trial.stats.unlocatable_answers, 0);
  ClueDataset dev = Read("cmrc2018", "cmrc2018/dev.json");
  EXPECT_EQ(dev.stats.documents, 848);
  ExpectCounts(dev, 3219, 3219, 0, 0);
  EXPECT_EQ(dev.stats.answers, 9657);
  EXPECT_EQ(dev.stats.repaired_offsets, 7);
  EXPECT_EQ(dev.stats.unlocatable_answers, 193);  // answer_start -1, text not in the context
  EXPECT_EQ(dev.examples[0].qid, "DEV_0_QUERY_0");
  ASSERT_EQ(dev.examples[0].answers.size(), 3u);
  EXPECT_EQ(dev.examples[0].answers[0].text, "光荣和ω-force");
  EXPECT_EQ(dev.examples[0].answers[0].start_char, 11);
  int64_t repaired = 0, questions_without_span = 0;
  for (const ClueDataset* ds : {&trial, &dev}) {
    for (const Example& e : ds->examples) {
      bool any = false;
      for (const CmrcAnswer& a : e.answers) {
        if (a.start_char < 0) continue;
        any = true;
        ASSERT_EQ(e.context.compare(a.start_byte, a.text.size(), a.text), 0) << e.qid;
        ASSERT_EQ(Utf8ByteOffset(e.context, a.start_char), a.start_byte) << e.qid;
        if (a.repaired) {
          ++repaired;
          EXPECT_NE(a.start_char, a.answer_start);
        }
      }
      questions_without_span += any ? 0 : 1;
    }
  }
  EXPECT_EQ(repaired, 12);
  EXPECT_EQ(questions_without_span, 0);  // the 3 dev questions with no valid offset are repaired
  const Example& t210 =
      *std::find_if(trial.examples.begin(), trial.examples.end(),
                    [](const Example& e) { return e.qid == "TRIAL_210_QUERY_0"; });
  EXPECT_EQ(t210.answers[0].answer_start, 14);
  EXPECT_EQ(t210.answers[0].start_char, 13);
  EXPECT_TRUE(t210.answers[0].repaired);
}

// ---- synthetic files ----

TEST(ClueReaders, MalformedLineNamesFileAndLine) {
  TempDir d;
  const std::string p = d.Write("bad.json",
                                "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"0\"}\n"
                                "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"0\"\n");
  const std::string msg = ErrorOf([&] { ReadClueFile(GetClueTask("afqmc"), p); });
  EXPECT_EQ(msg.rfind(p + ":2: malformed JSON", 0), 0u) << msg;
}

TEST(ClueReaders, NonObjectAndMissingField) {
  TempDir d;
  const std::string p = d.Write("x.json", "[1, 2]\n");
  EXPECT_NE(ErrorOf([&] {
              ReadClueFile(GetClueTask("tnews"), p);
            }).find(p + ":1: expected a JSON object"),
            std::string::npos);
  const std::string q = d.Write("y.json", "{\"sentence\": \"x\"}\n{\"label\": \"100\"}\n");
  EXPECT_EQ(ErrorOf([&] { ReadClueFile(GetClueTask("tnews"), q); }),
            q + ":2: missing field 'sentence'");
}

TEST(ClueReaders, OutOfSetLabel) {
  TempDir d;
  const std::string p = d.Write("dev.json",
                                "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"1\"}\n"
                                "\n"
                                "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"2\"}\n");
  const std::string msg = ErrorOf([&] { ReadClueFile(GetClueTask("afqmc"), p); });
  EXPECT_EQ(msg.rfind(p + ":3: label '2'", 0), 0u) << msg;
  // "-" is only special for the NLI tasks.
  const std::string q =
      d.Write("nli.json", "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"-\"}\n");
  EXPECT_NE(ErrorOf([&] { ReadClueFile(GetClueTask("afqmc"), q); }).find("label '-'"),
            std::string::npos);
  ClueDataset nli = ReadClueFile(GetClueTask("cmnli"), q);
  EXPECT_EQ(nli.stats.dropped, 1);
  EXPECT_TRUE(nli.examples.empty());
  const std::string r =
      d.Write("bad_nli.json", "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"yes\"}\n");
  EXPECT_NE(ErrorOf([&] { ReadClueFile(GetClueTask("ocnli"), r); }).find(r + ":1: label 'yes'"),
            std::string::npos);
}

TEST(ClueReaders, IntegerLabelsCrlfNoFinalNewline) {
  TempDir d;
  const std::string p =
      d.Write("train.json",
              "{\"label\": 108, \"sentence\": \"甲\"}\r\n"
              "{\"label\": \"116\", \"sentence\": \"乙\u2028丙\", \"id\": \"k7\"}");
  ClueDataset ds = ReadClueFile(GetClueTask("tnews"), p);
  ASSERT_EQ(ds.examples.size(), 2u);
  EXPECT_EQ(ds.examples[0].label, 7);
  EXPECT_EQ(ds.examples[0].id, "0");
  EXPECT_EQ(ds.examples[1].label, 14);
  EXPECT_EQ(ds.examples[1].id, "k7");
  EXPECT_FALSE(ds.examples[1].id_is_int);
  EXPECT_EQ(ds.examples[1].text_a, "乙\u2028丙");
  EXPECT_EQ(ds.examples[1].line, 2);
}

TEST(ClueReaders, UnlabelledTestFile) {
  TempDir d;
  const std::string p = d.Write("test.json",
                                "{\"id\": 10, \"sentence1\": \"a\", \"sentence2\": \"b\"}\n"
                                "{\"id\": 11, \"sentence1\": \"c\", \"sentence2\": \"d\"}\n");
  ClueDataset ds = ReadClueFile(GetClueTask("ocnli"), p);
  ASSERT_EQ(ds.examples.size(), 2u);
  EXPECT_EQ(ds.examples[0].label, -1);
  EXPECT_EQ(ds.examples[1].id, "11");
  EXPECT_EQ(ds.stats.unlabelled, 2);
  const std::string q =
      d.Write("wsc_test.json",
              "{\"target\": {\"span1_index\": 0, \"span1_text\": \"甲\", "
              "\"span2_index\": 2, \"span2_text\": \"他\"}, \"text\": \"甲说他\"}\n");
  ClueDataset w = ReadClueFile(GetClueTask("wsc"), q);
  ASSERT_EQ(w.examples.size(), 1u);
  EXPECT_EQ(w.examples[0].label, -1);
  EXPECT_EQ(w.examples[0].id, "0");
  EXPECT_EQ(WscMarkedText(w.examples[0]), "_甲_说[他]");
}

TEST(ClueReaders, WscBadSpanIndex) {
  TempDir d;
  const std::string q =
      d.Write("wsc.json",
              "{\"target\": {\"span1_index\": 1, \"span1_text\": \"甲\", "
              "\"span2_index\": 2, \"span2_text\": \"他\"}, \"text\": \"甲说他\", "
              "\"label\": \"true\"}\n");
  EXPECT_NE(
      ErrorOf([&] { ReadClueFile(GetClueTask("wsc"), q); }).find(q + ":1: target.span1_index 1"),
      std::string::npos);
}

TEST(ClueReaders, ChidClueFormatWithAnswerFile) {
  TempDir d;
  const std::string p =
      d.Write("dev.json",
              "{\"candidates\": [\"甲甲\", \"乙乙\", \"丙丙\"], \"content\": [\"前#idiom000001#中"
              "#idiom000002#后\", \"再#idiom000003#\"]}\n");
  d.Write("dev_answer.json", "{\"#idiom000001#\": 2, \"#idiom000002#\": 0, \"#idiom000003#\": 1}");
  ClueDataset ds = ReadClueFile(GetClueTask("chid"), p);
  ASSERT_EQ(ds.examples.size(), 3u);
  EXPECT_EQ(ds.stats.documents, 2);
  EXPECT_EQ(ds.examples[0].id, "#idiom000001#");
  EXPECT_EQ(ds.examples[0].label, 2);
  EXPECT_EQ(ds.examples[1].label, 0);
  EXPECT_EQ(ds.examples[1].blank_char, 15);
  EXPECT_EQ(ds.examples[2].content, "再#idiom000003#");
  EXPECT_EQ(ds.examples[2].blank_char, 1);
  EXPECT_EQ(ds.examples[2].label, 1);
  // Without the answer file: unlabelled.
  ClueDataset bare = ReadChidFile(GetClueTask("chid"), p);
  EXPECT_EQ(bare.stats.unlabelled, 3);
}

TEST(ClueReaders, ChidFewClueErrors) {
  TempDir d;
  const std::string p = d.Write(
      "x.json",
      "{\"id\": 1, \"candidates\": [\"甲\", \"乙\"], \"content\": \"无空\", \"answer\": 0}\n");
  EXPECT_NE(ErrorOf([&] { ReadClueFile(GetClueTask("chid"), p); }).find(p + ":1: content has no"),
            std::string::npos);
  const std::string q = d.Write(
      "y.json",
      "{\"id\": 1, \"candidates\": [\"甲\", \"乙\"], \"content\": \"#idiom#\", \"answer\": 2}\n");
  EXPECT_NE(ErrorOf([&] { ReadClueFile(GetClueTask("chid"), q); }).find(q + ":1: answer 2"),
            std::string::npos);
}

TEST(ClueReaders, C3AnswerNotAChoice) {
  TempDir d;
  const std::string p = d.Write("c3.json",
                                "[[[\"文\"], [{\"question\": \"问\", \"choice\": [\"甲\", \"乙\"], "
                                "\"answer\": \"丙\"}], \"1-1\"]]");
  EXPECT_NE(ErrorOf([&] {
              ReadClueFile(GetClueTask("c3"), p);
            }).find("answer '丙' is not one of its choices"),
            std::string::npos);
}

TEST(ClueReaders, Cmrc2018RepairPicksNearestOccurrence) {
  TempDir d;
  // "答案" occurs at code points 1 and 7; the given start 6 is wrong and nearest to 7.
  const std::string p = d.Write(
      "dev.json",
      "{\"data\": [{\"paragraphs\": [{\"id\": \"P\", \"context\": \"x答案yyyy答案z\", \"qas\": ["
      "{\"id\": \"Q0\", \"question\": \"?\", \"answers\": [{\"text\": \"答案\", \"answer_start\": "
      "6}, "
      "{\"text\": \"答案\", \"answer_start\": 1}, {\"text\": \"没有\", \"answer_start\": -1}]},"
      "{\"id\": \"Q1\", \"question\": \"?\"}]}]}]}");
  ClueDataset ds = ReadClueFile(GetClueTask("cmrc2018"), p);
  ASSERT_EQ(ds.examples.size(), 2u);
  const Example& q0 = ds.examples[0];
  EXPECT_EQ(q0.answers[0].start_char, 7);
  EXPECT_EQ(q0.answers[0].start_byte, 1 + 6 + 4);
  EXPECT_TRUE(q0.answers[0].repaired);
  EXPECT_EQ(q0.answers[1].start_char, 1);
  EXPECT_FALSE(q0.answers[1].repaired);
  EXPECT_EQ(q0.answers[2].start_char, -1);
  EXPECT_EQ(ds.stats.repaired_offsets, 1);
  EXPECT_EQ(ds.stats.unlocatable_answers, 1);
  EXPECT_EQ(ds.examples[1].label, -1);  // no answers: unlabelled (test file)
  const std::string q = d.Write("bad.json", "{\"data\": [{\"paragraphs\": [{\"qas\": []}]}]}");
  EXPECT_NE(ErrorOf([&] {
              ReadClueFile(GetClueTask("cmrc2018"), q);
            }).find("data[0].paragraphs[0]: missing field 'context'"),
            std::string::npos);
}

}  // namespace
}  // namespace roformer
