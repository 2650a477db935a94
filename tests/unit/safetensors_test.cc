#include "runtime/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "runtime/error.h"

namespace roformer::safetensors {
namespace {

std::string MakeFile(const std::string& header, const std::string& data) {
  uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + data;
}

std::string ValidFile() {
  Writer w;
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
  std::vector<int64_t> ids = {0, 5, -3, 1LL << 40};
  std::vector<int32_t> m = {1, 0, 1};
  w.AddFloat("layer.weight", {2, 3}, a);
  w.AddInt64("ids", {4}, ids);
  w.AddInt32("mask", {3}, m);
  w.AddFloat("scalar", {}, std::vector<float>{42.0f});
  w.AddFloat("empty", {0, 4}, {});
  w.SetMetadata("format", "pt");
  return w.Serialize();
}

void ExpectThrowsMentioning(const std::string& bytes, const std::string& needle) {
  try {
    Reader::FromBytes(bytes, "bad.safetensors");
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

TEST(SafetensorsTest, RoundTrip) {
  std::string bytes = ValidFile();
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);  // header padded with spaces like the official writer
  EXPECT_EQ(bytes[8 + n - 1] == ' ' || bytes[8 + n - 1] == '}', true);
  Reader r = Reader::FromBytes(bytes, "mem");
  EXPECT_EQ(r.names(),
            (std::vector<std::string>{"empty", "ids", "layer.weight", "mask", "scalar"}));
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.info("layer.weight").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(r.ReadFloat("layer.weight"),
            (std::vector<float>{1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f}));
  EXPECT_EQ(r.ReadInt("ids"), (std::vector<int64_t>{0, 5, -3, 1LL << 40}));
  EXPECT_EQ(r.ReadInt("mask"), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(r.ReadFloat("mask"), (std::vector<float>{1, 0, 1}));
  EXPECT_EQ(r.ReadFloat("scalar"), (std::vector<float>{42.0f}));
  EXPECT_TRUE(r.ReadFloat("empty").empty());
  EXPECT_THROW(r.ReadInt("layer.weight"), Error);
  EXPECT_THROW(r.ReadFloat("nope"), Error);
  EXPECT_THROW(r.ReadFloat("layer.weight", {3, 2}), Error);
  // 8-byte dtypes come first so every tensor is naturally aligned.
  EXPECT_EQ(r.info("ids").begin, 0u);
  // Deterministic.
  EXPECT_EQ(ValidFile(), bytes);
}

TEST(SafetensorsTest, FileRoundTrip) {
  auto path = std::filesystem::temp_directory_path() / "roformer_st_test.safetensors";
  Writer w;
  w.AddFloat("x", {2}, std::vector<float>{1, 2});
  w.WriteFile(path.string());
  Reader r = Reader::Open(path.string());
  EXPECT_EQ(r.ReadFloat("x"), (std::vector<float>{1, 2}));
  std::filesystem::remove(path);
  EXPECT_THROW(Reader::Open(path.string()), Error);
}

TEST(SafetensorsTest, ConvertsOtherDtypes) {
  // F16 1.0, -2.0, 65504, smallest subnormal; BF16 1.0, -0.5; F64 0.1; U8; BOOL; I16.
  uint16_t f16[] = {0x3C00, 0xC000, 0x7BFF, 0x0001};
  uint16_t bf16[] = {0x3F80, 0xBF00};
  double f64[] = {0.1};
  uint8_t u8[] = {0, 255};
  uint8_t b[] = {1, 0};
  int16_t i16[] = {-300};
  Writer w;
  w.Add("f16", DType::kF16, {4}, f16, sizeof(f16));
  w.Add("bf16", DType::kBF16, {2}, bf16, sizeof(bf16));
  w.Add("f64", DType::kF64, {1}, f64, sizeof(f64));
  w.Add("u8", DType::kU8, {2}, u8, sizeof(u8));
  w.Add("b", DType::kBool, {2}, b, sizeof(b));
  w.Add("i16", DType::kI16, {1}, i16, sizeof(i16));
  Reader r = Reader::FromBytes(w.Serialize(), "mem");
  auto h = r.ReadFloat("f16");
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.0f);
  EXPECT_EQ(h[2], 65504.0f);
  EXPECT_EQ(h[3], std::ldexp(1.0f, -24));
  EXPECT_EQ(r.ReadFloat("bf16"), (std::vector<float>{1.0f, -0.5f}));
  EXPECT_EQ(r.ReadFloat("f64")[0], 0.1f);
  EXPECT_EQ(r.ReadInt("u8"), (std::vector<int64_t>{0, 255}));
  EXPECT_EQ(r.ReadInt("b"), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(r.ReadInt("i16"), (std::vector<int64_t>{-300}));
}

TEST(SafetensorsTest, MalformedHeaders) {
  const std::string d8(8, '\0');
  ExpectThrowsMentioning("abc", "at least 8");
  {  // header length past EOF
    std::string f = MakeFile("{}", "");
    uint64_t n = 1000;
    std::memcpy(f.data(), &n, 8);
    ExpectThrowsMentioning(f, "past the end");
  }
  {  // absurd header length
    std::string f = MakeFile("{}", "");
    uint64_t n = 1ull << 40;
    std::memcpy(f.data(), &n, 8);
    ExpectThrowsMentioning(f, "limit");
  }
  ExpectThrowsMentioning(MakeFile("{\"a\": ", ""), "header");
  ExpectThrowsMentioning(MakeFile("[1,2]   ", ""), "'{'");
  ExpectThrowsMentioning(
      MakeFile("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", d8),
      "unknown dtype");
  ExpectThrowsMentioning(
      MakeFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", d8),
      "tensor 'a'");
  ExpectThrowsMentioning(
      MakeFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", d8),
      "past the data region");
  ExpectThrowsMentioning(
      MakeFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", d8),
      "tensor 'a'");
  ExpectThrowsMentioning(MakeFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
                                  d8),
                         "overlap");
  ExpectThrowsMentioning(
      MakeFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", d8), "gap");
  ExpectThrowsMentioning(
      MakeFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", d8), "cover");
  ExpectThrowsMentioning(MakeFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                                  d8),
                         "duplicate key \"a\"");
  ExpectThrowsMentioning(
      MakeFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", d8),
      "tensor 'a'");
  ExpectThrowsMentioning(
      MakeFile(
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}",
          d8),
      "tensor 'a'");
  ExpectThrowsMentioning(MakeFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", d8), "data_offsets");
  ExpectThrowsMentioning(
      MakeFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", d8),
      "unknown header field");
  ExpectThrowsMentioning(MakeFile("{\"__metadata__\":{\"k\":1}}", ""), "__metadata__");
  ExpectThrowsMentioning(MakeFile("{\"a\":5}", ""), "tensor 'a'");
}

TEST(SafetensorsTest, FuzzTruncationsAndFlips) {
  // Every mutation either throws Error or loads; when it loads, each tensor whose header entry is
  // unchanged and whose bytes were not touched reads back identical to the original (safetensors
  // has no checksums, so a flip inside a tensor's data is undetectable by design).
  const std::string good = ValidFile();
  const Reader ref = Reader::FromBytes(good, "ref");
  uint64_t n;
  std::memcpy(&n, good.data(), 8);
  std::mt19937 rng(1234);
  int loaded = 0, rejected = 0, compared = 0;
  for (int it = 0; it < 300; ++it) {
    std::string f = good;
    std::vector<size_t> touched;
    switch (it % 3) {
      case 0:
        f.resize(rng() % f.size());
        break;
      case 1:
        for (int k = 0, nk = 1 + rng() % 4; k < nk; ++k) {
          size_t p = rng() % f.size();
          f[p] ^= static_cast<char>(1 << (rng() % 8));
          touched.push_back(p);
        }
        break;
      default: {  // concentrated in the length prefix and the header
        size_t p = rng() % (8 + n);
        f[p] = static_cast<char>(rng() & 0xFF);
        touched.push_back(p);
      }
    }
    try {
      Reader r = Reader::FromBytes(f, "fuzz");
      ++loaded;
      for (const auto& t : r.tensors()) {
        EXPECT_EQ(r.raw(t.name).size(), t.end - t.begin);
        if (!ref.has(t.name)) continue;
        const TensorInfo& o = ref.info(t.name);
        if (o.dtype != t.dtype || o.shape != t.shape || o.begin != t.begin || o.end != t.end)
          continue;
        bool hit = false;
        for (size_t p : touched) hit |= p >= 8 + n + t.begin && p < 8 + n + t.end;
        if (hit || f.size() != good.size()) continue;
        ++compared;
        EXPECT_EQ(r.ReadFloat(t.name), ref.ReadFloat(t.name)) << t.name;
      }
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 100);
  EXPECT_GT(compared, 0);
  EXPECT_EQ(loaded + rejected, 300);
}

}  // namespace
}  // namespace roformer::safetensors
