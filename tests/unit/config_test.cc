#include "runtime/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>

#include "model/lr_schedule.h"
#include "runtime/error.h"
#include "runtime/flags.h"

namespace roformer {
namespace {

std::string WriteTemp(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsValidate) {
  auto cfg = ResolveConfig("", {});
  EXPECT_EQ(cfg.model().attention_scale(), "sqrt_d");
  EXPECT_EQ(cfg.parallel().tp(), 1);
}

TEST(Config, ParsesFileAndOverrides) {
  auto path = WriteTemp("ok.textproto",
                        "model { hidden_size: 64 num_attention_heads: 2 realformer: true }\n"
                        "train { lr: 3e-4 seq_len: 64 }\n");
  auto cfg =
      ResolveConfig(path, {"model.attention_scale=log_n", "train.steps=7", "data.corpus=/tmp/x y"});
  EXPECT_EQ(cfg.model().hidden_size(), 64);
  EXPECT_TRUE(cfg.model().realformer());
  EXPECT_EQ(cfg.model().attention_scale(), "log_n");
  EXPECT_EQ(cfg.train().steps(), 7);
  EXPECT_FLOAT_EQ(cfg.train().lr(), 3e-4f);
  EXPECT_EQ(cfg.data().corpus(), "/tmp/x y");
}

TEST(Config, SyntaxErrorNamesFileLineAndField) {
  auto path = WriteTemp("bad.textproto", "model {\n  hidden_size: 64\n  hiden_layers: 3\n}\n");
  std::string e = ErrorOf([&] { ResolveConfig(path, {}); });
  EXPECT_NE(e.find("bad.textproto:3:"), std::string::npos) << e;
  EXPECT_NE(e.find("hiden_layers"), std::string::npos) << e;
}

TEST(Config, TypeErrorNamesLine) {
  auto path = WriteTemp("type.textproto", "train {\n  steps: \"many\"\n}\n");
  std::string e = ErrorOf([&] { ResolveConfig(path, {}); });
  EXPECT_NE(e.find("type.textproto:2:"), std::string::npos) << e;
}

TEST(Config, RangeErrorNamesField) {
  auto path = WriteTemp("range.textproto", "model { hidden_dropout_prob: 1.5 }\n");
  std::string e = ErrorOf([&] { ResolveConfig(path, {}); });
  EXPECT_NE(e.find("range.textproto"), std::string::npos) << e;
  EXPECT_NE(e.find("model.hidden_dropout_prob"), std::string::npos) << e;
  e = ErrorOf([] { ResolveConfig("", {"model.attention_scale=log2"}); });
  EXPECT_NE(e.find("model.attention_scale"), std::string::npos) << e;
  e = ErrorOf([] { ResolveConfig("", {"model.num_attention_heads=3"}); });
  EXPECT_NE(e.find("divisible"), std::string::npos) << e;
  e = ErrorOf([] { ResolveConfig("", {"train.global_batch=10", "train.micro_batch=4"}); });
  EXPECT_NE(e.find("train.global_batch"), std::string::npos) << e;
}

TEST(Config, BadOverrides) {
  EXPECT_NE(ErrorOf([] { ResolveConfig("", {"model.nope=1"}); }).find("unknown field 'model.nope'"),
            std::string::npos);
  EXPECT_NE(ErrorOf([] { ResolveConfig("", {"model.hidden_size=abc"}); }).find("model.hidden_size"),
            std::string::npos);
  EXPECT_NE(ErrorOf([] { ResolveConfig("", {"model=3"}); }).find("is a message"),
            std::string::npos);
  EXPECT_NE(ErrorOf([] { ResolveConfig("", {"noequals"}); }).find("path.to.field=value"),
            std::string::npos);
  EXPECT_NE(ErrorOf([] {
              ResolveConfig("/nonexistent/c.textproto", {});
            }).find("/nonexistent/c.textproto"),
            std::string::npos);
}

TEST(Flags, ParsesFormsAndRejectsUnknown) {
  const char* argv[] = {"--vocab", "v.txt", "--set=a.b=1", "--set", "c=2", "--force", "pos"};
  Flags f(7, const_cast<char**>(argv), {"vocab", "set", "force!"});
  EXPECT_EQ(f.Get("vocab"), "v.txt");
  EXPECT_EQ(f.GetAll("set"), (std::vector<std::string>{"a.b=1", "c=2"}));
  EXPECT_TRUE(f.GetBool("force"));
  EXPECT_EQ(f.positional(), std::vector<std::string>{"pos"});
  const char* bad[] = {"--bogus", "1"};
  EXPECT_THROW(Flags(2, const_cast<char**>(bad), {"vocab"}), Error);
  const char* missing[] = {"--vocab"};
  EXPECT_THROW(Flags(1, const_cast<char**>(missing), {"vocab"}), Error);
}

TEST(LrSchedule, WarmupThenLinearAndCosine) {
  LrSchedule s;
  s.peak = 1.0;
  s.warmup_steps = 4;
  s.total_steps = 14;
  EXPECT_DOUBLE_EQ(s.At(0), 0.25);
  EXPECT_DOUBLE_EQ(s.At(3), 1.0);
  EXPECT_DOUBLE_EQ(s.At(4), 1.0);
  EXPECT_DOUBLE_EQ(s.At(9), 0.5);
  EXPECT_DOUBLE_EQ(s.At(14), 0.0);
  s.decay = "cosine";
  EXPECT_NEAR(s.At(9), 0.5, 1e-12);
  EXPECT_NEAR(s.At(6), 0.5 * (1 + std::cos(M_PI * 0.2)), 1e-12);
  s.min_ratio = 0.1;
  EXPECT_NEAR(s.At(14), 0.1, 1e-12);
}

}  // namespace
}  // namespace roformer
