#include "runtime/json.h"

#include <gtest/gtest.h>

#include <random>

#include "runtime/error.h"

namespace roformer {
namespace {

TEST(JsonTest, ParsesScalarsAndContainers) {
  Json j = Json::Parse(R"( {"a": 1, "b": [true, false, null], "c": "x", "d": -2.5e3,
                            "e": {"f": 0}, "big": 9007199254740993} )");
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.at("a").as_int(), 1);
  EXPECT_TRUE(j.at("a").is_int());
  EXPECT_EQ(j.at("b").size(), 3u);
  EXPECT_TRUE(j.at("b").at(size_t{0}).as_bool());
  EXPECT_TRUE(j.at("b").at(size_t{2}).is_null());
  EXPECT_EQ(j.at("c").as_string(), "x");
  EXPECT_DOUBLE_EQ(j.at("d").as_double(), -2500.0);
  EXPECT_TRUE(j.at("d").is_int());  // integral double
  EXPECT_EQ(j.at("e").at("f").as_int(), 0);
  EXPECT_EQ(j.at("big").as_int(), 9007199254740993LL);  // exact, not via double
  EXPECT_EQ(j.get("missing", 7), 7);
  EXPECT_EQ(j.get("a", 7), 1);
  EXPECT_EQ(j.get("c", "def"), "x");
  EXPECT_DOUBLE_EQ(j.get("nope", 1e-12), 1e-12);
  EXPECT_FALSE(j.get("nope", false));
}

TEST(JsonTest, StringEscapesAndUnicode) {
  Json j = Json::Parse(R"("a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\u4e2d\ud83d\ude00")");
  EXPECT_EQ(j.as_string(), "a\"b\\c/d\b\f\n\r\tA\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80");
  // Raw UTF-8 passes through.
  EXPECT_EQ(Json::Parse("\"\xE4\xBB\x8A\xE5\xA4\xA9\"").as_string(), "\xE4\xBB\x8A\xE5\xA4\xA9");
  // Dump escapes only what it must and round-trips.
  Json s(std::string("q\"\\\n\x01\xE4\xB8\xAD"));
  EXPECT_EQ(s.Dump(), "\"q\\\"\\\\\\n\\u0001\xE4\xB8\xAD\"");
  EXPECT_EQ(Json::Parse(s.Dump()), s);
}

TEST(JsonTest, DumpRoundTrip) {
  Json o = Json::Object();
  o.set("loss", 1.5).set("ids", Json::Array({1, 2, 3})).set("name", "x").set("ok", true);
  o.set("n", Json()).set("pi", 3.141592653589793).set("tiny", 1e-300);
  EXPECT_EQ(o.Dump(), R"({"loss":1.5,"ids":[1,2,3],"name":"x","ok":true,"n":null,)"
                      R"("pi":3.141592653589793,"tiny":1e-300})");
  EXPECT_EQ(Json::Parse(o.Dump()), o);
  EXPECT_EQ(Json::Parse(o.Dump(2)), o);
  o.set("loss", 2);  // replace keeps position
  EXPECT_EQ(o.as_object()[0].first, "loss");
  EXPECT_EQ(o.at("loss").as_int(), 2);
  EXPECT_EQ(Json(std::nan("")).Dump(), "null");
  EXPECT_EQ(Json::Array().Dump(2), "[]");
  EXPECT_EQ(Json::Parse("[1,[2,{}]]").Dump(1), "[\n 1,\n [\n  2,\n  {}\n ]\n]");
}

TEST(JsonTest, RejectsMalformed) {
  const char* bad[] = {
      "",
      "{",
      "}",
      "[1,]",
      "{\"a\":1,}",
      "{'a':1}",
      "[1 2]",
      "01",
      "-",
      "1.",
      ".5",
      "1e",
      "+1",
      "NaN",
      "Infinity",
      "tru",
      "nul",
      "\"abc",
      "\"\\x\"",
      "\"\\u12\"",
      "\"\\ud800\"",
      "\"\\udc00\"",
      "\"a\nb\"",
      "{\"a\" 1}",
      "{1:2}",
      "[1]]",
      "1 2",
      "// c\n1",
      "\"\xC3\"",
      "\"\xFF\"",
      "\"\xC0\xAF\"",
      "\"\xED\xA0\x80\"",
      "{\"a\":1,\"a\":2}",
      "1e999",
  };
  for (const char* b : bad) {
    EXPECT_THROW(Json::Parse(b, "t.json"), Error) << "accepted: " << b;
  }
}

TEST(JsonTest, ErrorsNameOriginLineColumn) {
  try {
    Json::Parse("{\n  \"a\": 1,\n  \"b\": x\n}", "cfg.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json:3:8"), std::string::npos) << e.what();
  }
  try {
    Json::Parse("{\"a\":1,\"a\":2}", "dup.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("duplicate key \"a\""), std::string::npos) << e.what();
  }
}

TEST(JsonTest, AccessErrorsThrow) {
  Json j = Json::Parse(R"({"a": "s", "f": 1.5, "arr": [1]})");
  EXPECT_THROW(j.at("nope"), Error);
  EXPECT_THROW(j.at("a").as_int(), Error);
  EXPECT_THROW(j.at("f").as_int(), Error);
  EXPECT_THROW(j.at("arr").at(size_t{5}), Error);
  EXPECT_THROW(j.get("a", 3), Error);
  EXPECT_THROW(j.at("a").size(), Error);
  EXPECT_THROW(Json(1).at("x"), Error);
}

TEST(JsonTest, DepthLimit) {
  std::string deep(Json::kMaxDepth + 10, '[');
  deep += std::string(Json::kMaxDepth + 10, ']');
  EXPECT_THROW(Json::Parse(deep), Error);
  std::string ok(100, '[');
  ok += std::string(100, ']');
  EXPECT_NO_THROW(Json::Parse(ok));
}

TEST(JsonTest, BomAndWhitespace) {
  EXPECT_EQ(Json::Parse("\xEF\xBB\xBF \t\r\n[1]\n").at(size_t{0}).as_int(), 1);
}

TEST(JsonTest, FuzzNeverCrashes) {
  const std::string good = R"({"input_ids":[2,11,23],"s":"\u4e2d\n","x":{"y":[1.5e-3,null,true]}})";
  std::mt19937 rng(42);
  for (int it = 0; it < 2000; ++it) {
    std::string s = good;
    int edits = 1 + rng() % 3;
    for (int e = 0; e < edits; ++e) {
      size_t p = rng() % s.size();
      switch (rng() % 3) {
        case 0:
          s[p] = static_cast<char>(rng() & 0xFF);
          break;
        case 1:
          s.erase(p, 1);
          break;
        default:
          s = s.substr(0, p);
      }
      if (s.empty()) break;
    }
    try {
      Json j = Json::Parse(s);
      EXPECT_EQ(Json::Parse(j.Dump()), j);
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace roformer
