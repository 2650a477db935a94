#include "runtime/tensorboard.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "runtime/error.h"
#include "runtime/tensorboard_event.pb.h"

namespace roformer {
namespace {

namespace fs = std::filesystem;

std::string Hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string h;
  for (unsigned char c : s) {
    h.push_back(d[c >> 4]);
    h.push_back(d[c & 15]);
  }
  return h;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

fs::path FreshDir(const std::string& name) {
  const fs::path d = fs::path(testing::TempDir()) / ("tensorboard_test_" + name);
  fs::remove_all(d);
  return d;
}

// Bytes produced by the tensorboard package's own RecordWriter for the same two Events
// (tensorboard 2.21: event_pb2 / summary_pb2 + tensorboard.summary.writer.record_writer).
TEST(TensorBoardTest, FramingAndEventBytesMatchTensorBoardPackage) {
  tensorboard::Event a;
  a.set_wall_time(1234.5);
  a.set_file_version("brain.Event:2");
  tensorboard::Event b;
  b.set_wall_time(1234.75);
  b.set_step(42);
  auto* v = b.mutable_summary()->add_value();
  v->set_tag("train/loss");
  v->set_simple_value(2.5f);
  EXPECT_EQ(Hex(FrameTfRecord(a.SerializeAsString()) + FrameTfRecord(b.SerializeAsString())),
            "1800000000000000a37f4b220900000000004a93401a0d627261696e2e4576656e743a3265b8d3fb20"
            "0000000000000029eda9500900000000004b9340102a2a130a110a0a747261696e2f6c6f737315000020"
            "401f5f1d8f");
  for (uint32_t c : {0u, 1u, 0xE3069283u, 0xffffffffu, 0x12345678u}) {
    EXPECT_EQ(UnmaskCrc32c(MaskCrc32c(c)), c);
    EXPECT_EQ(MaskCrc32c(c), ((c >> 15) | (c << 17)) + 0xa282ead8u);
  }
}

TEST(TensorBoardTest, WritesAndReadsBackScalars) {
  const fs::path dir = FreshDir("rw") / "nested" / "run";
  const double t0 =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::string path;
  {
    TensorBoardWriter w(dir.string());
    path = w.path();
    for (int64_t s = 0; s < 50; ++s) {
      w.AddScalar("train/loss", s * 10, 10.0f / (1 + s));
      if (s % 10 == 0) w.AddScalar("eval/mlm_acc", s * 10, 0.01f * s);
    }
    w.AddScalar("lr", 1LL << 40, 0.0f, 1.5e9);  // zero value and step > 2^32 round-trip
    w.AddScalar("weird tag/ü", -3, -1e30f, 2.0);
    w.Flush();
    // Readable while the writer is still open (after Flush).
    EXPECT_EQ(ReadEventFile(path).size(), 57u);
  }
  EXPECT_EQ(fs::path(path).parent_path(), dir);
  EXPECT_TRUE(std::regex_match(fs::path(path).filename().string(),
                               std::regex(R"(events\.out\.tfevents\.\d{10}\..+)")))
      << path;
  const std::vector<ScalarEvent> ev = ReadEventFile(path);
  ASSERT_EQ(ev.size(), 57u);
  size_t i = 0;
  for (int64_t s = 0; s < 50; ++s) {
    EXPECT_EQ(ev[i].tag, "train/loss");
    EXPECT_EQ(ev[i].step, s * 10);
    EXPECT_EQ(ev[i].value, 10.0f / (1 + s));
    EXPECT_GE(ev[i].wall_time, t0 - 1);
    EXPECT_LE(ev[i].wall_time, t0 + 600);
    ++i;
    if (s % 10 == 0) {
      EXPECT_EQ(ev[i].tag, "eval/mlm_acc");
      EXPECT_EQ(ev[i].step, s * 10);
      EXPECT_EQ(ev[i].value, 0.01f * s);
      ++i;
    }
  }
  EXPECT_EQ(ev[i].tag, "lr");
  EXPECT_EQ(ev[i].step, 1LL << 40);
  EXPECT_EQ(ev[i].value, 0.0f);
  EXPECT_EQ(ev[i].wall_time, 1.5e9);
  ++i;
  EXPECT_EQ(ev[i].tag, "weird tag/ü");
  EXPECT_EQ(ev[i].step, -3);
  EXPECT_EQ(ev[i].value, -1e30f);

  // The first record is the file_version event.
  const std::string bytes = ReadAll(path);
  const uint64_t len0 = static_cast<uint8_t>(bytes[0]);
  tensorboard::Event first;
  ASSERT_TRUE(first.ParseFromString(bytes.substr(12, len0)));
  EXPECT_EQ(first.file_version(), "brain.Event:2");
  EXPECT_GE(first.wall_time(), t0 - 1);

  // A second writer in the same second gets its own file.
  TensorBoardWriter w2(dir.string());
  EXPECT_NE(w2.path(), path);
  w2.Flush();
  EXPECT_TRUE(ReadEventFile(w2.path()).empty());
}

TEST(TensorBoardTest, EveryCorruptionIsAnErrorNamingTheFile) {
  const fs::path dir = FreshDir("corrupt");
  std::string path;
  {
    TensorBoardWriter w(dir.string());
    path = w.path();
    w.AddScalar("loss", 1, 2.0f);
    w.AddScalar("loss", 2, 1.5f);
  }
  const std::string good = ReadAll(path);
  ASSERT_EQ(ReadEventFile(path).size(), 2u);
  const std::string bad = (dir / "bad.tfevents").string();
  // Flipping any single byte (length, either CRC, payload) is caught by a CRC.
  for (size_t pos = 0; pos < good.size(); ++pos) {
    std::string b = good;
    b[pos] = static_cast<char>(b[pos] ^ 0x5a);
    WriteAll(bad, b);
    try {
      ReadEventFile(bad);
      ADD_FAILURE() << "no error for flipped byte " << pos;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
  // Every truncation inside a record (and the empty file) is an Error; cutting at a record
  // boundary leaves a valid file with fewer records.
  std::vector<size_t> boundaries;
  for (size_t off = 0; off < good.size();) {
    uint64_t len = 0;
    for (int i = 0; i < 8; ++i)
      len |= static_cast<uint64_t>(static_cast<uint8_t>(good[off + i])) << (8 * i);
    off += 16 + len;
    boundaries.push_back(off);
  }
  ASSERT_EQ(boundaries.size(), 3u);
  ASSERT_EQ(boundaries.back(), good.size());
  for (size_t n = 0; n < good.size(); ++n) {
    WriteAll(bad, good.substr(0, n));
    if (n == boundaries[0] || n == boundaries[1]) {
      EXPECT_EQ(ReadEventFile(bad).size(), n == boundaries[0] ? 0u : 1u);
    } else {
      EXPECT_THROW(ReadEventFile(bad), Error) << "truncated to " << n;
    }
  }
  // Trailing garbage.
  WriteAll(bad, good + "xyz");
  EXPECT_THROW(ReadEventFile(bad), Error);
  // Valid framing around a payload that is not an Event.
  WriteAll(bad, good + FrameTfRecord("\xff\xff\xff"));
  EXPECT_THROW(ReadEventFile(bad), Error);
  EXPECT_THROW(ReadEventFile((dir / "missing").string()), Error);
}

// Writes the pattern tests/reference/check_tensorboard_events.py --expect-test-pattern checks, into
// $ROFORMER_TB_OUT (kept) — a developer check against the tensorboard package's reader.
TEST(TensorBoardTest, WritePatternForExternalCheck) {
  const char* out = std::getenv("ROFORMER_TB_OUT");
  if (out == nullptr) GTEST_SKIP() << "set ROFORMER_TB_OUT=DIR to write the external-check file";
  TensorBoardWriter w(out);
  for (int64_t s = 0; s < 100; ++s) {
    w.AddScalar("train/loss", s, 8.0f * std::exp(-0.02f * s));
    w.AddScalar("train/lr", s, 1e-4f * s / 100);
    if (s % 25 == 0) w.AddScalar("eval/mlm_acc", s, 0.004f * s);
  }
  w.Flush();
  std::printf("wrote %s\n", w.path().c_str());
}

}  // namespace
}  // namespace roformer
