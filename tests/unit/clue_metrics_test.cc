// CLUE metrics (accuracy, CMRC2018 EM/F1), submission writers/validator, `roformer evaluate`.
#include "data/clue/clue_metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "data/clue/clue_submission.h"
#include "data/clue/clue_tasks.h"
#include "runtime/error.h"
#include "runtime/json.h"

namespace roformer {
namespace {
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "clue_metrics_test.XXXXXX").string();
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string Path(const std::string& name) const { return path_ + "/" + name; }
  std::string Write(const std::string& name, const std::string& text) const {
    std::ofstream(Path(name), std::ios::binary) << text;
    return Path(name);
  }

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

std::string Slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// ---- accuracy ----

TEST(ClueMetrics, Accuracy) {
  EXPECT_DOUBLE_EQ(Accuracy({0, 1, 2, 1}, {0, 1, 1, 1}), 0.75);
  EXPECT_DOUBLE_EQ(Accuracy({0, 1, 2}, {0, -1, 1}), 0.5);  // unlabelled row skipped
  EXPECT_DOUBLE_EQ(Accuracy({}, {}), 0.0);
  EXPECT_NE(ErrorOf([] { Accuracy({0}, {0, 1}); }).find("1 predictions for 2"), std::string::npos);
}

// ---- CMRC2018: cases and expected values from tests/reference/cmrc2018_metric_reference.py
// (our transcription of the official rules); each is also derivable by hand (comments). ----

struct CmrcCase {
  std::vector<std::string> answers;
  std::string pred;
  double em, f1;
};

const std::vector<CmrcCase>& Cases() {
  static const std::vector<CmrcCase> cases = {
      // '-' removed inside the run: tokens 光 荣 和 ωforce on both sides.
      {{"光荣和ω-force", "光荣和ω-force"}, "光荣和ω-force", 1, 1},
      // '。' is punctuation: removed for EM and F1.
      {{"1862年"}, "1862年。", 1, 1},
      // lcs 2 of pred 2 / answer 4: P=1, R=1/2, F1=2/3.
      {{"北京大学"}, "北京", 0, 2.0 / 3},
      // vs 天安门广场: lcs 3 (天安门), P=3/4, R=3/5 -> 2/3; vs 广场: 0. max = 2/3.
      {{"天安门广场", "广场"}, "在天安门", 0, 0.6666666666666665},
      // lower-cased English words and a digit run: [hello world 2010 年] vs [hello world].
      {{"Hello World 2010年"}, "hello world", 0, 2.0 / 3},
      {{"abc-def"}, "abcdef", 1, 1},
      // '…' is not removed (the script lists '……', two chars, which never matches one char).
      {{"好…"}, "好", 0, 2.0 / 3},
      {{"美国海军"}, "", 0, 0},
      // longest common *contiguous* run: 丙丁 (2), P=2/3, R=2/4 -> 4/7.
      {{"甲乙丙丁"}, "甲丙丁", 0, 0.5714285714285715},
      {{"  ABC "}, "abc", 1, 1},
      {{"你好，世界"}, "你好世界", 1, 1},
      // ',' between digits is kept by the word tokenizer and is not in the punctuation list.
      {{"1,000元"}, "1000元", 0, 0.5},
      // 《》 removed: [红 楼 梦 的 作 者] vs [红 楼 梦]: P=1, R=1/2.
      {{"《红楼梦》的作者"}, "红楼梦", 0, 2.0 / 3},
      // final period split off: [the u.s. army .] vs [u.s. army].
      {{"the U.S. army."}, "U.S. army", 0, 2.0 / 3},
  };
  return cases;
}

TEST(ClueMetrics, CmrcSegmentation) {
  EXPECT_EQ(CmrcMixedSegmentation("Hello World 2010年", true),
            (std::vector<std::string>{"hello", "world", "2010", "年"}));
  EXPECT_EQ(CmrcMixedSegmentation("光荣和ω-force", false),
            (std::vector<std::string>{"光", "荣", "和", "ω", "-", "force"}));
  EXPECT_EQ(CmrcMixedSegmentation("光荣和ω-force", true),
            (std::vector<std::string>{"光", "荣", "和", "ωforce"}));
  EXPECT_EQ(CmrcMixedSegmentation("《红楼梦》", false),
            (std::vector<std::string>{"《", "红", "楼", "梦", "》"}));
  EXPECT_EQ(CmrcMixedSegmentation("(a) b, c. 3,5", false),
            (std::vector<std::string>{"(", "a", ")", "b", ",", "c.", "3,5"}));
  EXPECT_EQ(CmrcMixedSegmentation("ÀÉ Ａ", false), (std::vector<std::string>{"àé", "ａ"}));
  EXPECT_EQ(CmrcRemovePunctuation(" 你好，世界！ "), "你好世界");
  EXPECT_EQ(CmrcRemovePunctuation("a b"), "a b");
  EXPECT_TRUE(IsCmrcPunctuation(U'\u3002'));
  EXPECT_FALSE(IsCmrcPunctuation(U'\u2026'));
  EXPECT_FALSE(IsCmrcPunctuation(U'\u2018'));  // only the right single quote is listed
}

TEST(ClueMetrics, CmrcPerQuestion) {
  for (const CmrcCase& c : Cases()) {
    EXPECT_DOUBLE_EQ(CmrcExactMatch(c.answers, c.pred), c.em) << c.answers[0] << " / " << c.pred;
    EXPECT_NEAR(CmrcF1(c.answers, c.pred), c.f1, 1e-12) << c.answers[0] << " / " << c.pred;
  }
  EXPECT_EQ(CmrcF1({}, "x"), 0.0);
  EXPECT_EQ(CmrcExactMatch({}, "x"), 0.0);
}

TEST(ClueMetrics, CmrcCorpus) {
  std::vector<std::vector<std::string>> refs;
  std::vector<std::string> preds;
  for (const CmrcCase& c : Cases()) {
    refs.push_back(c.answers);
    preds.push_back(c.pred);
  }
  const CmrcScore s = CmrcEvaluate(refs, preds);
  EXPECT_EQ(s.count, 14);
  // From cmrc2018_metric_reference.py: em=35.714285714285715 f1=71.93877551020407.
  EXPECT_NEAR(s.em, 35.714285714285715, 1e-9);
  EXPECT_NEAR(s.f1, 71.93877551020407, 1e-9);
}

// ---- submissions ----

std::vector<Example> ClassificationExamples(int n) {
  std::vector<Example> ex(n);
  for (int i = 0; i < n; ++i) {
    ex[i].id = std::to_string(i * 3);
    ex[i].id_is_int = true;
  }
  return ex;
}

TEST(ClueSubmission, ClassificationRoundTripEveryTask) {
  TempDir d;
  for (const char* name : {"afqmc", "tnews", "iflytek", "cmnli", "ocnli", "cluewsc2020", "csl"}) {
    const ClueTaskInfo& t = GetClueTask(name);
    const int n = 7;
    std::vector<Example> ex = ClassificationExamples(n);
    std::vector<int> pred;
    for (int i = 0; i < n; ++i) pred.push_back(static_cast<int>((i * 5) % t.labels.size()));
    const std::string p = d.Path(t.submission_file);
    WriteClueSubmission(t, ex, pred, p);
    EXPECT_EQ(ValidateSubmission(t, p, &ex), n) << name;
    const ClueSubmission sub = ReadClueSubmission(t, p);
    ASSERT_EQ(sub.entries.size(), static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(sub.entries[i].id, ex[i].id);
      EXPECT_EQ(sub.entries[i].label, pred[i]);
    }
    // Line format: {"id":<int>,"label":"<string>"} (+ "label_desc" for TNEWS).
    const Json first = Json::Parse(Slurp(p).substr(0, Slurp(p).find('\n')));
    EXPECT_TRUE(first.at("id").is_int());
    EXPECT_EQ(first.at("label").as_string(), t.labels[pred[0]]);
    EXPECT_EQ(first.contains("label_desc"), std::string(name) == "tnews");
  }
}

TEST(ClueSubmission, MultipleChoiceAndSpanRoundTrip) {
  TempDir d;
  // C3: {"id", "label": index}
  const ClueTaskInfo& c3 = GetClueTask("c3");
  std::vector<Example> cx(3);
  for (int i = 0; i < 3; ++i) {
    cx[i].id = std::to_string(i);
    cx[i].id_is_int = true;
    cx[i].choices = {"a", "b", "c"};
  }
  WriteClueSubmission(c3, cx, {2, 0, 1}, d.Path("c311_predict.json"));
  EXPECT_EQ(ValidateSubmission(c3, d.Path("c311_predict.json"), &cx), 3);
  EXPECT_EQ(ReadClueSubmission(c3, d.Path("c311_predict.json")).entries[0].label, 2);
  EXPECT_EQ(Slurp(d.Path("c311_predict.json")).substr(0, 21), "{\"id\":0,\"label\":2}\n{\"");
  // ChID FewCLUE: {"id", "answer"} lines.
  const ClueTaskInfo& chid = GetClueTask("chid");
  std::vector<Example> fx(2);
  fx[0].id = "24";
  fx[1].id = "121";
  for (Example& e : fx) {
    e.id_is_int = true;
    e.choices = std::vector<std::string>(7, "x");
    e.blank_marker = "#idiom#";
  }
  WriteClueSubmission(chid, fx, {6, 1}, d.Path("chidf_predict.json"));
  EXPECT_EQ(ValidateSubmission(chid, d.Path("chidf_predict.json"), &fx), 2);
  EXPECT_EQ(Slurp(d.Path("chidf_predict.json")),
            "{\"id\":24,\"answer\":6}\n{\"id\":121,\"answer\":1}\n");
  // ChID CLUE: one object {"#idiom...#": index}.
  std::vector<Example> gx(2);
  gx[0].id = "#idiom000001#";
  gx[1].id = "#idiom000002#";
  for (Example& e : gx) e.choices = std::vector<std::string>(10, "x");
  WriteClueSubmission(chid, gx, {9, 3}, d.Path("chid11_predict.json"));
  EXPECT_EQ(ValidateSubmission(chid, d.Path("chid11_predict.json"), &gx), 2);
  const ClueSubmission cs = ReadClueSubmission(chid, d.Path("chid11_predict.json"));
  EXPECT_TRUE(cs.object_format);
  EXPECT_EQ(cs.entries[1].id, "#idiom000002#");
  EXPECT_EQ(cs.entries[1].label, 3);
  // CMRC2018: {qid: text}.
  const ClueTaskInfo& cmrc = GetClueTask("cmrc2018");
  std::vector<Example> qx(2);
  qx[0].qid = qx[0].id = "TEST_0_QUERY_0";
  qx[1].qid = qx[1].id = "TEST_0_QUERY_1";
  WriteCmrc2018Submission(qx, {"美国海军提康德罗加级", "第二艘"}, d.Path("cmrc2018_predict.json"));
  EXPECT_EQ(ValidateSubmission(cmrc, d.Path("cmrc2018_predict.json"), &qx), 2);
  const Json obj = Json::ParseFile(d.Path("cmrc2018_predict.json"));
  EXPECT_EQ(obj.at("TEST_0_QUERY_1").as_string(), "第二艘");
  EXPECT_NE(ErrorOf([&] {
              WriteClueSubmission(cmrc, qx, {0, 0}, d.Path("x"));
            }).find("WriteCmrc2018"),
            std::string::npos);
}

TEST(ClueSubmission, ValidatorRejectsBadFiles) {
  TempDir d;
  const ClueTaskInfo& afqmc = GetClueTask("afqmc");
  auto err = [&](const ClueTaskInfo& t, const std::string& text,
                 const std::vector<Example>* ex = nullptr) {
    const std::string p = d.Write("s.json", text);
    return ErrorOf([&] { ValidateSubmission(t, p, ex); });
  };
  const std::string p = d.Path("s.json");
  EXPECT_EQ(err(afqmc, "{\"id\": 0, \"label\": 1}\n"),
            p + ":1: field 'label' must be a label string (e.g. \"0\"), got 1");
  EXPECT_EQ(err(afqmc, "{\"id\": 0, \"label\": \"0\"}\n{\"id\": 1, \"label\": \"2\"}\n"),
            p + ":2: label '2' is not a afqmc label");
  EXPECT_EQ(err(afqmc, "{\"id\": 0, \"label\": \"0\"}\n{\"id\": 0, \"label\": \"1\"}\n"),
            p + ":2: duplicate id 0");
  EXPECT_EQ(err(afqmc, "{\"label\": \"0\"}\n"), p + ":1: missing field 'id'");
  EXPECT_NE(err(afqmc, "{\"id\": 0, \"label\": \"0\"\n").find(p + ":1: malformed JSON line"),
            std::string::npos);
  const std::vector<Example> ex = ClassificationExamples(2);  // ids 0, 3
  EXPECT_EQ(err(afqmc, "{\"id\": 0, \"label\": \"0\"}\n", &ex),
            p + ": 1 entries for 2 test examples");
  EXPECT_NE(err(afqmc, "{\"id\": 3, \"label\": \"0\"}\n{\"id\": 0, \"label\": \"0\"}\n", &ex)
                .find("entries must follow the test file order"),
            std::string::npos);
  const ClueTaskInfo& c3 = GetClueTask("c3");
  EXPECT_EQ(err(c3, "{\"id\": 0, \"label\": \"1\"}\n"),
            p + ":1: field 'label' must be a non-negative choice index, got \"1\"");
  std::vector<Example> cx(1);
  cx[0].id = "0";
  cx[0].choices = {"a", "b"};
  EXPECT_EQ(err(c3, "{\"id\": 0, \"label\": 2}\n", &cx),
            p + ": id 0: choice 2 but the example has 2 choices");
  EXPECT_EQ(err(GetClueTask("cmrc2018"), "{\"Q\": 3}"),
            p + ": answer of 'Q' must be a string, got 3");
  EXPECT_EQ(err(GetClueTask("chid"), "{\"#idiom000001#\": \"1\"}"),
            p + ": answer of '#idiom000001#' must be a non-negative integer, got \"1\"");
}

// ---- roformer evaluate (the binary) ----

std::string RunBinary(const std::string& args, int* rc) {
  const std::string cmd = std::string(ROFORMER_BINARY) + " " + args + " 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (f != nullptr && fgets(buf, sizeof buf, f) != nullptr) out += buf;
  const int status = f != nullptr ? pclose(f) : -1;
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

TEST(ClueEvaluateCli, ClassificationAndCmrc) {
  TempDir d;
  const std::string gold = d.Write(
      "dev.json",
      "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"entailment\", \"id\": 0}\n"
      "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"-\", \"id\": 1}\n"
      "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"neutral\", \"id\": 2}\n"
      "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"contradiction\", \"id\": 3}\n"
      "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"neutral\", \"id\": 4}\n");
  const std::string pred = d.Write("pred.json",
                                   "{\"id\": 0, \"label\": \"entailment\"}\n"
                                   "{\"id\": 1, \"label\": \"neutral\"}\n"
                                   "{\"id\": 2, \"label\": \"neutral\"}\n"
                                   "{\"id\": 3, \"label\": \"neutral\"}\n"
                                   "{\"id\": 4, \"label\": \"neutral\"}\n");
  int rc = 0;
  std::string out = RunBinary("evaluate --task ocnli --gold " + gold + " --pred " + pred, &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "{\"task\":\"ocnli\",\"accuracy\":75,\"correct\":3,\"count\":4,\"dropped\":1}\n");
  // A missing prediction is an error naming the id.
  const std::string short_pred = d.Write("short.json", "{\"id\": 0, \"label\": \"entailment\"}\n");
  out = RunBinary("evaluate --task ocnli --gold " + gold + " --pred " + short_pred, &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("no prediction for 3 gold id(s): 2, 3, 4"), std::string::npos) << out;
  const std::string extra = d.Write("extra.json",
                                    "{\"id\": 0, \"label\": \"entailment\"}\n"
                                    "{\"id\": 2, \"label\": \"neutral\"}\n"
                                    "{\"id\": 3, \"label\": \"neutral\"}\n"
                                    "{\"id\": 4, \"label\": \"neutral\"}\n"
                                    "{\"id\": 99, \"label\": \"neutral\"}\n");
  out = RunBinary("evaluate --task ocnli --gold " + gold + " --pred " + extra, &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("1 predicted id(s) not in"), std::string::npos) << out;
  EXPECT_NE(out.find(": 99"), std::string::npos) << out;

  const std::string cgold = d.Write(
      "cmrc.json",
      "{\"data\": [{\"paragraphs\": [{\"id\": \"P\", \"context\": \"北京大学在北京\", \"qas\": ["
      "{\"id\": \"Q0\", \"question\": \"?\", \"answers\": [{\"text\": \"北京大学\", "
      "\"answer_start\": 0}]},"
      "{\"id\": \"Q1\", \"question\": \"?\", \"answers\": [{\"text\": \"北京\", \"answer_start\": "
      "5}]}"
      "]}]}]}");
  const std::string cpred = d.Write("cpred.json", "{\"Q0\": \"北京\", \"Q1\": \"北京。\"}");
  out = RunBinary("evaluate --task cmrc2018 --gold " + cgold + " --pred " + cpred, &rc);
  EXPECT_EQ(rc, 0) << out;
  const Json j = Json::Parse(out);
  EXPECT_EQ(j.at("task").as_string(), "cmrc2018");
  EXPECT_DOUBLE_EQ(j.at("em").as_double(), 50.0);
  EXPECT_NEAR(j.at("f1").as_double(), 100.0 * (2.0 / 3 + 1) / 2, 1e-9);
  EXPECT_EQ(j.at("count").as_int(), 2);
}

TEST(ClueEvaluateCli, UnlabelledGoldAndCheck) {
  TempDir d;
  const std::string gold =
      d.Write("test.json", "{\"id\": 0, \"sentence1\": \"a\", \"sentence2\": \"b\"}\n");
  const std::string pred = d.Write("pred.json", "{\"id\": 0, \"label\": \"0\"}\n");
  int rc = 0;
  std::string out = RunBinary("evaluate --task afqmc --gold " + gold + " --pred " + pred, &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("have no label"), std::string::npos) << out;
  d.Write("train.json", "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"1\"}\n");
  out = RunBinary("clue check --task afqmc --data " + d.Path(""), &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("train  train.json: 1 rows, 1 examples"), std::string::npos) << out;
  EXPECT_NE(out.find("test  test.json: 1 rows, 1 examples, 1 unlabelled"), std::string::npos)
      << out;
  out = RunBinary("clue check --task nosuch --data " + d.Path(""), &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("unknown CLUE task 'nosuch'"), std::string::npos) << out;
}

}  // namespace
}  // namespace roformer
