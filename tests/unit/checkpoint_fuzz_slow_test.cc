// Random truncations, extensions, byte flips and deletions of a checkpoint's chunk files and
// manifest: every one must end in roformer::Error (no crash, no other exception, no silent load).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "runtime/checkpoint.h"
#include "runtime/error.h"

namespace roformer {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void WriteAll(const std::string& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), s.size());
}

TEST(CheckpointFuzz, EveryCorruptionIsDetected) {
  std::string root =
      (fs::temp_directory_path() / ("roformer_ckpt_fuzz_" + std::to_string(::getpid()))).string();
  fs::remove_all(root);
  ParamStore s;
  s.Declare("emb", {64, 16}, Placement::kShardDim0, true);
  s.Declare("w", {16, 16}, Placement::kShardDim1, true);
  s.Declare("b", {16}, Placement::kReplicated, false);
  s.Declare("scale", {}, Placement::kReplicated, false);
  s.Allocate(true);
  std::mt19937_64 rng(20240611);
  for (auto* buf : {&s.params(), &s.adam_m(), &s.adam_v()}) {
    for (auto& x : *buf) x = std::uniform_real_distribution<float>(-1, 1)(rng);
  }
  SaveOptions opt;
  opt.max_chunk_bytes = 1500;  // several chunk files
  opt.fsync = false;
  config::Config cfg;
  TrainState st;
  st.step = 77;
  std::string dir = SaveCheckpoint(root, s, cfg, st, opt);

  std::map<std::string, std::string> pristine;
  for (const auto& e : fs::directory_iterator(dir)) pristine[e.path().string()] = ReadAll(e.path());
  ASSERT_GT(pristine.size(), 4u);
  std::vector<std::string> files;
  for (const auto& [p, _] : pristine) files.push_back(p);

  auto expect_error = [&](const std::string& what) {
    int detected = 0;
    try {
      LoadCheckpoint(dir);
    } catch (const Error&) {
      ++detected;
    }
    try {
      VerifyCheckpoint(dir);
    } catch (const Error&) {
      ++detected;
    }
    EXPECT_EQ(detected, 2) << "undetected: " << what;
    return detected == 2;
  };

  int cases = 0, detected = 0;
  for (int i = 0; i < 400; ++i) {
    // Manifest in a third of the cases, chunk files otherwise.
    const std::string& f = (i % 3 == 0) ? dir + "/manifest.pb" : files[rng() % files.size()];
    const std::string& orig = pristine.at(f);
    std::string bad = orig;
    std::string what = fs::path(f).filename().string();
    int mode = static_cast<int>(rng() % 10);
    if (mode < 5) {  // flip 1..3 bytes
      int flips = 1 + static_cast<int>(rng() % 3);
      for (int k = 0; k < flips; ++k) {
        size_t pos = rng() % bad.size();
        bad[pos] = static_cast<char>(bad[pos] ^ (1 + rng() % 255));
        what += " flip@" + std::to_string(pos);
      }
      if (bad == orig) continue;  // flips cancelled out
    } else if (mode < 8) {        // truncate
      size_t n = rng() % bad.size();
      bad.resize(n);
      what += " truncate to " + std::to_string(n);
    } else if (mode < 9) {  // append
      size_t n = 1 + rng() % 16;
      for (size_t k = 0; k < n; ++k) bad.push_back(static_cast<char>(rng()));
      what += " append " + std::to_string(n);
    } else {  // delete
      fs::remove(f);
      ++cases;
      detected += expect_error(what + " deleted");
      WriteAll(f, orig);
      continue;
    }
    WriteAll(f, bad);
    ++cases;
    detected += expect_error(what);
    WriteAll(f, orig);
  }
  std::printf("fuzz: %d corruptions, %d detected by both LoadCheckpoint and VerifyCheckpoint\n",
              cases, detected);
  EXPECT_GE(cases, 200);
  EXPECT_EQ(detected, cases);
  // Restored files load cleanly and bit-exactly.
  ParamStore t;
  for (const auto& p : s.infos()) t.Declare(p.name, p.global_shape, p.placement, p.weight_decay);
  t.Allocate(true);
  RestoreInto(LoadCheckpoint(root), &t, true);
  EXPECT_EQ(t.params(), s.params());
  EXPECT_EQ(t.adam_v(), s.adam_v());
  fs::remove_all(root);
}

}  // namespace
}  // namespace roformer
