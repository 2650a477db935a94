// Fine-tuning input construction (data/clue/clue_features.h): layouts and truncation per task,
// ChID blank markers, CMRC2018 windows and the token -> code-point mapping that answer extraction
// relies on (on synthetic examples, and on the real CMRC2018 dev file when shared data exists).
#include "data/clue/clue_features.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

namespace roformer {
namespace {

Tokenizer CharTokenizer() {
  std::vector<std::string> toks = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (const char* c :
       {"一", "二", "三", "四", "五", "六", "七", "八", "甲", "乙",    "_",   "[",   "]",
        "我", "你", "他", "好", "天", "气", "；", "|",  "#",  "idiom", "##0", "##1", "##2"})
    toks.push_back(c);
  return Tokenizer(Vocab::FromTokens(toks), true);
}

TEST(ClueFeatures, PairLongestFirstTruncationAndSegments) {
  const Tokenizer tok = CharTokenizer();
  const ClueTaskInfo& task = GetClueTask("afqmc");
  Example ex;
  ex.text_a = "一二三四五六七八";  // 8 tokens
  ex.text_b = "甲乙";              // 2 tokens
  ex.has_text_b = true;
  ex.label = 1;
  FeatureOptions o;
  o.max_len = 9;  // 6 content tokens: a loses its last 4
  o.pair_segment_b = 1;
  FeatureStats st;
  const auto f = BuildFeatures(task, {ex}, tok, o, &st);
  ASSERT_EQ(f.size(), 1u);
  const Vocab& v = tok.vocab();
  const std::vector<int32_t> want = {v.cls_id(),   v.Find("一"), v.Find("二"),
                                     v.Find("三"), v.Find("四"), v.sep_id(),
                                     v.Find("甲"), v.Find("乙"), v.sep_id()};
  EXPECT_EQ(f[0].ids[0], want);
  EXPECT_EQ(f[0].types[0], (std::vector<int32_t>{0, 0, 0, 0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(f[0].label, 1);
  EXPECT_EQ(st.truncated, 1);
}

TEST(ClueFeatures, WscMarkersAndSingleSentence) {
  const Tokenizer tok = CharTokenizer();
  const ClueTaskInfo& task = GetClueTask("cluewsc2020");
  Example ex;
  ex.text_a = "我好他天";
  ex.span1_text = "我";
  ex.span1_index = 0;
  ex.span2_text = "他";
  ex.span2_index = 2;
  FeatureOptions o;
  const auto f = BuildFeatures(task, {ex}, tok, o);
  const Vocab& v = tok.vocab();
  // [CLS] _ 我 _ 好 [ 他 ] 天 [SEP]
  EXPECT_EQ(f[0].ids[0], (std::vector<int32_t>{v.cls_id(), v.Find("_"), v.Find("我"), v.Find("_"),
                                               v.Find("好"), v.Find("["), v.Find("他"), v.Find("]"),
                                               v.Find("天"), v.sep_id()}));
}

TEST(ClueFeatures, C3TruncatesLongestFirstPerChoice) {
  const Tokenizer tok = CharTokenizer();
  const ClueTaskInfo& task = GetClueTask("c3");
  Example ex;
  ex.passage = "一二三四五六七八";
  ex.question = "甲乙";
  ex.choices = {"我", "你好"};
  ex.label = 1;
  FeatureOptions o;
  o.max_len = 10;  // 6 content tokens
  const auto f = BuildFeatures(task, {ex}, tok, o);
  ASSERT_EQ(f[0].ids.size(), 2u);
  const Vocab& v = tok.vocab();
  const int C = v.cls_id(), S = v.sep_id();
  EXPECT_EQ(f[0].ids[0], (std::vector<int32_t>{C, v.Find("一"), v.Find("二"), v.Find("三"), S,
                                               v.Find("甲"), v.Find("乙"), S, v.Find("我"), S}));
  EXPECT_EQ(f[0].ids[1], (std::vector<int32_t>{C, v.Find("一"), v.Find("二"), S, v.Find("甲"),
                                               v.Find("乙"), S, v.Find("你"), v.Find("好"), S}));
}

TEST(ClueFeatures, ChidMarkerOtherBlanksAndCenteredCut) {
  const Tokenizer tok = CharTokenizer();
  const ClueTaskInfo& task = GetClueTask("chid");
  Example ex;
  ex.content = "一二三四#idiom000001#五六#idiom000002#七八";
  ex.blank_marker = "#idiom000002#";
  ex.blank_byte = static_cast<int64_t>(ex.content.find(ex.blank_marker));
  ex.choices = {"天气", "你好"};
  FeatureOptions o;
  o.max_len = 64;
  auto f = BuildFeatures(task, {ex}, tok, o);
  const Vocab& v = tok.vocab();
  const int M = v.mask_id();  // no [unused1] in this vocab: the marker is [MASK] too
  EXPECT_EQ(ChidBlankTokenId(v), M);
  EXPECT_EQ(f[0].ids[0], (std::vector<int32_t>{v.cls_id(), v.Find("天"), v.Find("气"), v.sep_id(),
                                               v.Find("一"), v.Find("二"), v.Find("三"),
                                               v.Find("四"), M, M, M, M, v.Find("五"), v.Find("六"),
                                               M, v.Find("七"), v.Find("八"), v.sep_id()}));
  // Budget 12 - 3 - 2 - 1 = 6: right side has 2 tokens, so the left keeps its last 4.
  o.max_len = 12;
  f = BuildFeatures(task, {ex}, tok, o);
  EXPECT_EQ(f[0].ids[0], (std::vector<int32_t>{v.cls_id(), v.Find("天"), v.Find("气"), v.sep_id(),
                                               M, M, v.Find("五"), v.Find("六"), M, v.Find("七"),
                                               v.Find("八"), v.sep_id()}));
}

TEST(ClueFeatures, CmrcWindowsCoverContextAndMapBack) {
  const Tokenizer tok = CharTokenizer();
  const ClueTaskInfo& task = GetClueTask("cmrc2018");
  Example ex;
  ex.question = "甲乙";
  ex.context = "一二三四五六七八我你他好天气";  // 14 tokens
  CmrcAnswer a;
  a.text = "你他";
  a.start_char = 9;
  ex.answers = {a};
  FeatureOptions o;
  o.max_len = 10;  // window = 10 - 2 - 3 = 5 context tokens
  o.doc_stride = 3;
  FeatureStats st;
  const auto f = BuildFeatures(task, {ex}, tok, o, &st);
  // Windows start at 0, 3, 6, 9 (the last reaches the end).
  ASSERT_EQ(f.size(), 4u);
  int with_answer = 0;
  for (const Feature& w : f) {
    EXPECT_EQ(w.example, 0);
    if (!w.has_answer) {
      EXPECT_EQ(w.start, 0);
      EXPECT_EQ(w.end, 0);
      continue;
    }
    ++with_answer;
    EXPECT_EQ(w.char_begin[w.start], 9);
    EXPECT_EQ(w.char_end[w.end], 11);
    EXPECT_EQ(w.char_begin[0], -1);  // [CLS]
    EXPECT_EQ(w.char_begin[1], -1);  // question
  }
  EXPECT_EQ(with_answer, 2);  // windows [6, 11) and [9, 14)
  EXPECT_EQ(st.answers_not_in_any_window, 0);
}

TEST(ClueFeatures, CmrcRealDevAnswersRecoveredFromOffsets) {
  const std::string data = std::string(ROFORMER_SOURCE_DIR) + "/../shared/data";
  const std::string dev = data + "/clue/cmrc2018/dev.json";
  const std::string vocab = data + "/vocab/bert-chinese-vocab.txt";
  if (!std::filesystem::exists(dev) || !std::filesystem::exists(vocab))
    GTEST_SKIP() << "shared CMRC2018 dev / BERT vocab not present";
  const ClueTaskInfo& task = GetClueTask("cmrc2018");
  ClueDataset ds = ReadClueFile(task, dev);
  ds.examples.resize(std::min<size_t>(ds.examples.size(), 400));
  const Tokenizer tok(Vocab::Load(vocab), true);
  FeatureOptions o;
  o.max_len = 512;
  o.doc_stride = DefaultDocStride(512);
  FeatureStats st;
  const auto f = BuildFeatures(task, ds.examples, tok, o, &st);
  int64_t exact = 0, checked = 0;
  for (const Feature& w : f) {
    if (!w.has_answer) continue;
    const Example& ex = ds.examples[w.example];
    const int64_t b = Utf8ByteOffset(ex.context, w.char_begin[w.start]);
    const int64_t e = Utf8ByteOffset(ex.context, w.char_end[w.end]);
    ASSERT_GE(b, 0);
    ASSERT_GE(e, b);
    const std::string got = ex.context.substr(b, e - b);
    const std::string& want = ex.answers[0].start_char >= 0 ? ex.answers[0].text : "";
    ++checked;
    if (got == want)
      ++exact;
    else
      EXPECT_NE(got.find(want), std::string::npos)
          << "recovered '" << got << "' vs '" << want << "'";
  }
  ASSERT_GT(checked, 300);
  EXPECT_GE(exact, checked * 95 / 100) << exact << " / " << checked;
}

}  // namespace
}  // namespace roformer
