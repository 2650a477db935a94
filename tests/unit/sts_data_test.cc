#include "data/sts/sts_data.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "runtime/error.h"

namespace roformer::sts {
namespace {

std::string ErrorOf(const std::string& text) {
  try {
    ParseStsTsv(text, "f.tsv");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(StsDataTest, ParsesPairs) {
  const auto p = ParseStsTsv(
      "\xEF\xBB\xBF一架飞机要起飞了。\t一架飞机正在起飞。\t5\r\n\nA b\tc d\t0\nx\ty\t3.8\n",
      "f.tsv");
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].text1, "一架飞机要起飞了。");
  EXPECT_EQ(p[0].text2, "一架飞机正在起飞。");
  EXPECT_EQ(p[0].label, 5.0);
  EXPECT_EQ(p[1].text1, "A b");  // inner spaces kept
  EXPECT_EQ(p[1].label, 0.0);
  EXPECT_EQ(p[2].label, 3.8);
  EXPECT_TRUE(ParseStsTsv("", "f.tsv").empty());
}

TEST(StsDataTest, ErrorsNameFileAndLine) {
  EXPECT_EQ(ErrorOf("a\tb\t1\na\tb\n"),
            "f.tsv:2: expected 3 tab-separated fields (text1, text2, label), got 2");
  EXPECT_EQ(ErrorOf("a\tb\t1\t2\n"),
            "f.tsv:1: expected 3 tab-separated fields (text1, text2, label), got 4");
  EXPECT_EQ(ErrorOf("\n\na\tb\tfive\n"), "f.tsv:3: label 'five' is not a number");
  EXPECT_EQ(ErrorOf("a\tb\t\n"), "f.tsv:1: label '' is not a number");
  EXPECT_EQ(ErrorOf("a\tb\tnan\n"), "f.tsv:1: label 'nan' is not a number");
  EXPECT_EQ(ErrorOf("a\tb\t6\n"), "f.tsv:1: label 6 is outside [0, 5]");
  EXPECT_EQ(ErrorOf("a\tb\t-1\n"), "f.tsv:1: label -1 is outside [0, 5]");
  EXPECT_EQ(ErrorOf("\tb\t1\n"), "f.tsv:1: empty text1");
  EXPECT_EQ(ErrorOf("a\t\t1\n"), "f.tsv:1: empty text2");
  EXPECT_THROW(ReadStsFile("/nonexistent/sts.tsv"), Error);
  const std::string empty = testing::TempDir() + "/sts_empty.tsv";
  std::ofstream(empty).close();
  try {
    ReadStsFile(empty);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), empty + ": no sentence pairs");
  }
}

TEST(StsDataTest, ReadsSharedStsbIfPresent) {
  const std::string dir = ROFORMER_SOURCE_DIR "/../shared/data/sts";
  if (!std::filesystem::exists(dir + "/stsb-train.tsv")) {
    GTEST_SKIP() << "shared STS data not found at " << dir;
  }
  const auto train = ReadStsFile(dir + "/stsb-train.tsv");
  EXPECT_EQ(train.size(), 5231u);
  EXPECT_EQ(train[0].text1, "一架飞机要起飞了。");
  EXPECT_EQ(train[0].label, 5.0);
  for (const char* f : {"stsb-dev.tsv", "stsb-test.tsv", "lcqmc-dev.tsv", "lcqmc-test.tsv",
                        "pawsx-zh-dev.tsv", "pawsx-zh-test.tsv"}) {
    const auto p = ReadStsFile(dir + "/" + f);
    EXPECT_GT(p.size(), 1000u) << f;
  }
}

}  // namespace
}  // namespace roformer::sts
