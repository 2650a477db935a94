#include "runtime/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "runtime/crc32c.h"
#include "runtime/error.h"

namespace roformer {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    path_ =
        (fs::temp_directory_path() / ("roformer_ckpt_" + tag + "_" + std::to_string(::getpid())))
            .string();
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Tensors of every placement and rank (0-d to 3-d, one empty), all divisible by tp = 2.
void DeclareModel(ParamStore* s, int tp_rank, int tp_size, int64_t q_out = 8) {
  s->Declare("emb.weight", {16, 8}, Placement::kShardDim0, true, tp_rank, tp_size);
  s->Declare("q.weight", {q_out, 8}, Placement::kShardDim0, true, tp_rank, tp_size);
  s->Declare("q.bias", {q_out}, Placement::kShardDim0, false, tp_rank, tp_size);
  s->Declare("o.weight", {8, 8}, Placement::kShardDim1, true, tp_rank, tp_size);
  s->Declare("cube", {4, 6, 3}, Placement::kShardDim1, true, tp_rank, tp_size);
  s->Declare("ln.weight", {8}, Placement::kReplicated, false, tp_rank, tp_size);
  s->Declare("scale", {}, Placement::kReplicated, false, tp_rank, tp_size);
  s->Declare("empty", {0, 4}, Placement::kReplicated, false, tp_rank, tp_size);
}

uint32_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

// Arbitrary bits (NaNs, denormals included) determined by (tensor, kind, global element).
float Pattern(const std::string& name, int kind, int64_t global_index, uint64_t salt = 0) {
  uint64_t h = std::hash<std::string>()(name) ^ (uint64_t(kind) << 56) ^ salt;
  uint32_t bits = Mix(h + 0x9E3779B97F4A7C15ULL * uint64_t(global_index + 1));
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Global flat index of local element `li` of tensor `p`.
int64_t GlobalIndex(const ParamInfo& p, int64_t li) {
  const int nd = static_cast<int>(p.local_shape.size());
  std::vector<int64_t> c(nd);
  for (int d = nd - 1; d >= 0; --d) {
    c[d] = li % p.local_shape[d];
    li /= p.local_shape[d];
  }
  int sd = p.placement == Placement::kShardDim0 ? 0 : p.placement == Placement::kShardDim1 ? 1 : -1;
  if (sd >= 0) c[sd] += p.shard_start;
  int64_t g = 0;
  for (int d = 0; d < nd; ++d) g = g * p.global_shape[d] + c[d];
  return g;
}

void FillPattern(ParamStore* s, uint64_t salt = 0) {
  for (const auto& p : s->infos()) {
    for (int64_t i = 0; i < p.numel; ++i) {
      int64_t g = GlobalIndex(p, i);
      s->params()[p.offset + i] = Pattern(p.name, 1, g, salt);
      if (!s->adam_m().empty()) {
        s->adam_m()[p.offset + i] = Pattern(p.name, 2, g, salt);
        s->adam_v()[p.offset + i] = Pattern(p.name, 3, g, salt);
      }
    }
  }
}

// Every local element holds the pattern of its global coordinates.
void ExpectPattern(const ParamStore& s, bool with_optimizer, uint64_t salt = 0) {
  for (const auto& p : s.infos()) {
    for (int64_t i = 0; i < p.numel; ++i) {
      int64_t g = GlobalIndex(p, i);
      ASSERT_EQ(Bits(s.params()[p.offset + i]), Bits(Pattern(p.name, 1, g, salt)))
          << p.name << " local " << i << " global " << g;
      if (with_optimizer) {
        ASSERT_EQ(Bits(s.adam_m()[p.offset + i]), Bits(Pattern(p.name, 2, g, salt))) << p.name;
        ASSERT_EQ(Bits(s.adam_v()[p.offset + i]), Bits(Pattern(p.name, 3, g, salt))) << p.name;
      }
    }
  }
}

TrainState SomeState(int64_t step) {
  TrainState st;
  st.step = step;
  st.consumed_samples = step * 32 + 7;
  st.seed = 0xDEADBEEFCAFEULL;
  st.lr = 1.2345678901234e-4;
  st.warmup_steps = 100;
  st.total_steps = 10000;
  st.skipped_steps = 3;
  st.growth_stage = 2;
  st.adam_step = step - 3;
  return st;
}

config::Config SomeConfig() {
  config::Config c;
  c.mutable_model()->set_hidden_size(8);
  c.mutable_model()->set_realformer(true);
  c.mutable_train()->set_lr(1e-4f);
  return c;
}

// In-process stand-in for an AND-allreduce over `n` threads (a reusable barrier with a payload).
class FakeWorld {
 public:
  explicit FakeWorld(int n) : n_(n) {}
  bool AllOk(bool ok) {
    std::unique_lock<std::mutex> l(mu_);
    int gen = gen_;
    acc_ = acc_ && ok;
    if (++arrived_ == n_) {
      result_ = acc_;
      acc_ = true;
      arrived_ = 0;
      ++gen_;
      cv_.notify_all();
      return result_;
    }
    cv_.wait(l, [&] { return gen_ != gen; });
    return result_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_, arrived_ = 0, gen_ = 0;
  bool acc_ = true, result_ = true;
};

// Saves the two tp = 2 stores as ranks 0 and 1 of one job, concurrently. Returns per-rank errors.
std::vector<std::string> SaveTp2(const std::string& root, ParamStore* s0, ParamStore* s1,
                                 const TrainState& st) {
  FakeWorld world(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  ParamStore* stores[2] = {s0, s1};
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      SaveOptions opt;
      opt.rank = r;
      opt.world = 2;
      opt.tp = 2;
      opt.max_chunk_bytes = 200;
      opt.all_ok = [&](bool ok) { return world.AllOk(ok); };
      try {
        SaveCheckpoint(root, *stores[r], SomeConfig(), st, opt);
      } catch (const Error& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

TEST(CheckpointCrc32c, KnownVectorsAndFastPathAgree) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32cExtendPortable(0, "123456789", 9), 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF), inc(32);
  for (int i = 0; i < 32; ++i) inc[i] = static_cast<uint8_t>(i);
  // RFC 3720 (iSCSI) appendix B.4.
  EXPECT_EQ(Crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(inc.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(Crc32cExtendPortable(0, zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(Crc32cExtend(Crc32c("12345", 5), "6789", 4), 0xE3069283u);
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(1024 + 8);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t align = 0; align < 8; ++align) {
    for (size_t n = 0; n < 80; ++n) {
      ASSERT_EQ(Crc32c(buf.data() + align, n), Crc32cExtendPortable(0, buf.data() + align, n));
    }
  }
  EXPECT_EQ(Crc32c(buf.data(), 1024), Crc32cExtendPortable(0, buf.data(), 1024));
}

TEST(Checkpoint, RoundTripIsBitExact) {
  TempDir tmp("roundtrip");
  ParamStore a;
  DeclareModel(&a, 0, 1);
  a.Allocate(true);
  FillPattern(&a);
  SaveOptions opt;
  opt.vocab = {"/data/vocab.txt", 21128, 21248, VocabTokensHash({"[PAD]", "[UNK]", "a"})};
  opt.metadata = {{"git", "abc123"}, {"note", "unit test"}};
  TrainState st = SomeState(42);
  std::string dir = SaveCheckpoint(tmp.path(), a, SomeConfig(), st, opt);
  EXPECT_EQ(dir, CheckpointStepDir(tmp.path(), 42));
  EXPECT_EQ(fs::path(dir).filename(), "step_00000042");
  EXPECT_FALSE(fs::exists(dir + ".tmp"));

  LoadedCheckpoint ck = LoadCheckpoint(tmp.path());
  EXPECT_EQ(ck.dir, dir);
  EXPECT_EQ(ck.state, st);
  ParamStore b;
  DeclareModel(&b, 0, 1);
  b.Allocate(true);
  RestoreInto(ck, &b, true);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.params().data(), b.params().data(), a.size() * 4), 0);
  EXPECT_EQ(std::memcmp(a.adam_m().data(), b.adam_m().data(), a.size() * 4), 0);
  EXPECT_EQ(std::memcmp(a.adam_v().data(), b.adam_v().data(), a.size() * 4), 0);

  const auto& m = ck.manifest;
  EXPECT_EQ(m.format_version(), kCheckpointFormatVersion);
  EXPECT_EQ(m.software_version(), kSoftwareVersion);
  EXPECT_EQ(m.model().hidden_size(), 8);
  EXPECT_TRUE(m.model().realformer());
  EXPECT_TRUE(m.model().has_num_hidden_layers());  // defaults recorded, not implied
  EXPECT_EQ(m.model().num_hidden_layers(), 4);
  EXPECT_NE(m.config_text().find("realformer: true"), std::string::npos);
  EXPECT_EQ(m.vocab().size(), 21128);
  EXPECT_EQ(m.vocab().padded_size(), 21248);
  EXPECT_EQ(m.vocab().tokens_hash().rfind("crc32c:", 0), 0u);
  EXPECT_EQ(m.metadata().at("git"), "abc123");
  EXPECT_EQ(m.layout().tp(), 1);
  EXPECT_EQ(m.layout().dp(), 1);
  EXPECT_EQ(m.tensors_size(), 8 * 3);
  const LoadedTensor* cube = ck.Find("cube", ckpt::ADAM_V);
  ASSERT_NE(cube, nullptr);
  EXPECT_EQ(cube->shape, (std::vector<int64_t>{4, 6, 3}));
  EXPECT_EQ(ck.Find("cube", ckpt::TENSOR_KIND_UNSPECIFIED), nullptr);

  // Params only: no Adam tensors read, and restoring them is an error that says why.
  LoadedCheckpoint p = LoadCheckpoint(dir, /*with_optimizer=*/false);
  EXPECT_EQ(p.tensors.size(), 8u);
  ParamStore c;
  DeclareModel(&c, 0, 1);
  c.Allocate(false);
  RestoreInto(p, &c, false);
  ExpectPattern(c, false);
  ParamStore d;
  DeclareModel(&d, 0, 1);
  d.Allocate(true);
  try {
    RestoreInto(p, &d, true);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("without optimizer state"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, SmallChunksSplitTensorsByRows) {
  TempDir tmp("chunks");
  ParamStore a;
  DeclareModel(&a, 0, 1);
  a.Allocate(true);
  FillPattern(&a, 5);
  SaveOptions opt;
  opt.max_chunk_bytes = 100;  // emb.weight (512 B) spans several files
  opt.fsync = false;
  std::string dir = SaveCheckpoint(tmp.path(), a, SomeConfig(), SomeState(1), opt);
  ckpt::Manifest m = ReadCheckpointManifest(dir);
  EXPECT_GT(m.chunks_size(), 10);
  for (const auto& c : m.chunks()) {
    EXPECT_LE(c.size(), 100u) << c.name();
    EXPECT_EQ(fs::file_size(dir + "/" + c.name()), c.size());
  }
  ParamStore b;
  DeclareModel(&b, 0, 1);
  b.Allocate(true);
  RestoreInto(LoadCheckpoint(dir), &b, true);
  ExpectPattern(b, true, 5);
  VerifyReport r = VerifyCheckpoint(tmp.path());
  EXPECT_EQ(r.tensors, 24);
  EXPECT_EQ(r.payload_bytes, static_cast<uint64_t>(a.size()) * 4 * 3);
}

TEST(Checkpoint, ReslicesTp1IntoTp2) {
  TempDir tmp("tp1to2");
  ParamStore full;
  DeclareModel(&full, 0, 1);
  full.Allocate(true);
  FillPattern(&full);
  SaveCheckpoint(tmp.path(), full, SomeConfig(), SomeState(3));
  LoadedCheckpoint ck = LoadCheckpoint(tmp.path());
  for (int r = 0; r < 2; ++r) {
    ParamStore s;
    DeclareModel(&s, r, 2);
    s.Allocate(true);
    RestoreInto(ck, &s, true);
    ExpectPattern(s, true);
    // Spot-check one element by hand: o.weight is [8, 8] split on dim 1; rank r column 0 is
    // global column 4r.
    EXPECT_EQ(Bits(s.param("o.weight")[8 * 0 + 0]), Bits(full.param("o.weight")[4 * r]));
    EXPECT_EQ(Bits(s.param("o.weight")[4 * 2 + 3]),
              Bits(full.param("o.weight")[8 * 2 + 4 * r + 3]));
  }
}

TEST(Checkpoint, TwoTp2RanksSaveIntoOneStepThenLoadAtTp1) {
  TempDir tmp("tp2to1");
  ParamStore s0, s1;
  DeclareModel(&s0, 0, 2);
  DeclareModel(&s1, 1, 2);
  s0.Allocate(true);
  s1.Allocate(true);
  FillPattern(&s0);
  FillPattern(&s1);
  auto errors = SaveTp2(tmp.path(), &s0, &s1, SomeState(9));
  ASSERT_EQ(errors[0], "");
  ASSERT_EQ(errors[1], "");
  std::string dir = CheckpointStepDir(tmp.path(), 9);
  ckpt::Manifest m = ReadCheckpointManifest(dir);
  EXPECT_EQ(m.layout().tp(), 2);
  EXPECT_EQ(m.layout().world_size(), 2);
  bool r0 = false, r1 = false;
  for (const auto& c : m.chunks()) {
    r0 |= c.name().rfind("chunk-r0-", 0) == 0;
    r1 |= c.name().rfind("chunk-r1-", 0) == 0;
  }
  EXPECT_TRUE(r0 && r1);
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().extension(), e.path().filename() == "manifest.pb" ? ".pb" : ".bin");
  }
  LoadedCheckpoint ck = LoadCheckpoint(tmp.path());
  EXPECT_EQ(ck.state, SomeState(9));
  ParamStore full;
  DeclareModel(&full, 0, 1);
  full.Allocate(true);
  RestoreInto(ck, &full, true);
  ExpectPattern(full, true);
  // And back into the same layout.
  ParamStore again;
  DeclareModel(&again, 1, 2);
  again.Allocate(true);
  RestoreInto(ck, &again, true);
  ExpectPattern(again, true);
}

TEST(Checkpoint, FailureOnOneRankAbortsEveryRankAndCommitsNothing) {
  TempDir tmp("rankfail");
  ParamStore full;
  DeclareModel(&full, 0, 1);
  full.Allocate(true);
  SaveCheckpoint(tmp.path(), full, SomeConfig(), SomeState(1));
  ParamStore s0, bad;
  DeclareModel(&s0, 0, 2);
  DeclareModel(&bad, 0, 2);  // claims tp rank 0 while saving as rank 1: an inconsistent layout
  s0.Allocate(true);
  bad.Allocate(true);
  auto errors = SaveTp2(tmp.path(), &s0, &bad, SomeState(2));
  EXPECT_NE(errors[1].find("is not tp rank 1"), std::string::npos) << errors[1];
  EXPECT_NE(errors[0].find("failed on another rank"), std::string::npos) << errors[0];
  EXPECT_FALSE(fs::exists(CheckpointStepDir(tmp.path(), 2)));
  EXPECT_EQ(FindLatestCheckpoint(tmp.path()), CheckpointStepDir(tmp.path(), 1));
  // The leftover .tmp is cleaned by the next successful save.
  EXPECT_TRUE(fs::exists(CheckpointStepDir(tmp.path(), 2) + ".tmp"));
  SaveCheckpoint(tmp.path(), full, SomeConfig(), SomeState(3));
  EXPECT_FALSE(fs::exists(CheckpointStepDir(tmp.path(), 2) + ".tmp"));
}

TEST(Checkpoint, KeepsLastKAndReplacesSameStep) {
  TempDir tmp("keep");
  ParamStore a;
  DeclareModel(&a, 0, 1);
  a.Allocate(true);
  SaveOptions opt;
  opt.keep = 2;
  for (int step = 1; step <= 5; ++step) {
    FillPattern(&a, step);
    SaveCheckpoint(tmp.path(), a, SomeConfig(), SomeState(step * 10), opt);
  }
  auto all = ListCompleteCheckpoints(tmp.path());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], CheckpointStepDir(tmp.path(), 40));
  EXPECT_EQ(all[1], CheckpointStepDir(tmp.path(), 50));
  EXPECT_EQ(FindLatestCheckpoint(tmp.path()), all[1]);
  // Re-saving an existing step replaces it atomically.
  FillPattern(&a, 99);
  SaveCheckpoint(tmp.path(), a, SomeConfig(), SomeState(50), opt);
  EXPECT_EQ(ListCompleteCheckpoints(tmp.path()).size(), 2u);
  ParamStore b;
  DeclareModel(&b, 0, 1);
  b.Allocate(true);
  RestoreInto(LoadCheckpoint(tmp.path()), &b, true);
  ExpectPattern(b, true, 99);
  // keep = 1 leaves only the newest; keep <= 0 keeps everything.
  opt.keep = 1;
  SaveCheckpoint(tmp.path(), a, SomeConfig(), SomeState(60), opt);
  EXPECT_EQ(ListCompleteCheckpoints(tmp.path()),
            std::vector<std::string>{CheckpointStepDir(tmp.path(), 60)});
  opt.keep = 0;
  SaveCheckpoint(tmp.path(), a, SomeConfig(), SomeState(70), opt);
  SaveCheckpoint(tmp.path(), a, SomeConfig(), SomeState(80), opt);
  EXPECT_EQ(ListCompleteCheckpoints(tmp.path()).size(), 3u);
  // A save with a lower step than existing ones is never pruned away by them.
  opt.keep = 1;
  SaveCheckpoint(tmp.path(), a, SomeConfig(), SomeState(5), opt);
  EXPECT_TRUE(fs::exists(CheckpointStepDir(tmp.path(), 5)));
  EXPECT_EQ(FindLatestCheckpoint(tmp.path()), CheckpointStepDir(tmp.path(), 5));
}

TEST(Checkpoint, LatestPointerFallsBackToNewestComplete) {
  TempDir tmp("latest");
  EXPECT_EQ(FindLatestCheckpoint(tmp.path()), "");
  EXPECT_THROW(LoadCheckpoint(tmp.path()), Error);
  ParamStore a;
  DeclareModel(&a, 0, 1);
  a.Allocate(true);
  SaveOptions opt;
  opt.keep = 0;
  for (int step : {1, 2, 3}) SaveCheckpoint(tmp.path(), a, SomeConfig(), SomeState(step), opt);
  const std::string latest = tmp.path() + "/latest";
  EXPECT_EQ(FindLatestCheckpoint(tmp.path()), CheckpointStepDir(tmp.path(), 3));
  auto write = [&](const std::string& s) { std::ofstream(latest, std::ios::trunc) << s; };
  // An older but valid pointer is honoured.
  write("step_00000002\n");
  EXPECT_EQ(FindLatestCheckpoint(tmp.path()), CheckpointStepDir(tmp.path(), 2));
  // Garbage, a dangling name, an empty file, a missing file: newest complete step.
  for (std::string junk : {std::string("\x01\xffgarbage"), std::string("step_00000077\n"),
                           std::string(""), std::string("../etc\n")}) {
    write(junk);
    EXPECT_EQ(FindLatestCheckpoint(tmp.path()), CheckpointStepDir(tmp.path(), 3)) << junk;
  }
  fs::remove(latest);
  EXPECT_EQ(FindLatestCheckpoint(tmp.path()), CheckpointStepDir(tmp.path(), 3));
  // Incomplete directories never count: a .tmp, one without manifest, one with a torn manifest.
  fs::create_directories(CheckpointStepDir(tmp.path(), 9) + ".tmp");
  fs::create_directories(CheckpointStepDir(tmp.path(), 8));
  fs::copy(CheckpointStepDir(tmp.path(), 3), CheckpointStepDir(tmp.path(), 7));
  fs::resize_file(CheckpointStepDir(tmp.path(), 7) + "/manifest.pb", 30);
  EXPECT_EQ(FindLatestCheckpoint(tmp.path()), CheckpointStepDir(tmp.path(), 3));
  EXPECT_EQ(ListCompleteCheckpoints(tmp.path()).size(), 3u);
  // latest naming the torn one also falls back.
  write("step_00000007\n");
  EXPECT_EQ(LoadCheckpoint(tmp.path()).state.step, 3);
}

TEST(Checkpoint, ShapeMismatchNamesTensorAndBothShapes) {
  TempDir tmp("shape");
  ParamStore a;
  DeclareModel(&a, 0, 1);
  a.Allocate(true);
  SaveCheckpoint(tmp.path(), a, SomeConfig(), SomeState(1));
  LoadedCheckpoint ck = LoadCheckpoint(tmp.path());
  ParamStore b;
  DeclareModel(&b, 0, 1, /*q_out=*/16);
  b.Allocate(true);
  try {
    RestoreInto(ck, &b, true);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("'q.weight'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[8, 8]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[16, 8]"), std::string::npos) << msg;
  }
  // A tensor the checkpoint lacks.
  ParamStore c;
  DeclareModel(&c, 0, 1);
  c.Declare("extra.bias", {5}, Placement::kReplicated, false);
  c.Allocate(true);
  try {
    RestoreInto(ck, &c, true);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'extra.bias' (param) with global shape [5] is missing"),
              std::string::npos)
        << e.what();
  }
  // A checkpoint tensor the model lacks: an error unless allowed.
  ParamStore d;
  d.Declare("q.weight", {8, 8}, Placement::kShardDim0, true);
  d.Allocate(true);
  try {
    RestoreInto(ck, &d, true);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not declared by the model"), std::string::npos);
  }
  RestoreInto(ck, &d, true, /*allow_unused=*/true);
}

// Rewrites byte `pos` of `path` with `b ^ mask`.
void FlipByte(const std::string& path, uint64_t pos, uint8_t mask) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(pos);
  char c;
  f.get(c);
  f.seekp(pos);
  f.put(static_cast<char>(c ^ mask));
}

std::string ErrorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Checkpoint, CorruptionIsReportedWithFileAndTensor) {
  TempDir tmp("corrupt");
  ParamStore a;
  DeclareModel(&a, 0, 1);
  a.Allocate(true);
  FillPattern(&a);
  SaveOptions opt;
  opt.max_chunk_bytes = 256;
  std::string dir = SaveCheckpoint(tmp.path(), a, SomeConfig(), SomeState(1), opt);
  ckpt::Manifest m = ReadCheckpointManifest(dir);
  const auto& sh = m.tensors(0).shards(0);  // emb.weight param, first shard
  std::string chunk = dir + "/" + sh.file();

  FlipByte(chunk, sh.byte_offset() + 5, 0x10);
  std::string msg = ErrorOf([&] { LoadCheckpoint(dir); });
  EXPECT_NE(msg.find(sh.file()), std::string::npos) << msg;
  EXPECT_NE(msg.find("'emb.weight' (param)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("crc32c mismatch"), std::string::npos) << msg;
  EXPECT_EQ(ErrorOf([&] { VerifyCheckpoint(dir); }), msg);
  FlipByte(chunk, sh.byte_offset() + 5, 0x10);
  VerifyCheckpoint(dir);

  fs::resize_file(chunk, fs::file_size(chunk) - 1);
  msg = ErrorOf([&] { LoadCheckpoint(dir); });
  EXPECT_NE(msg.find(sh.file()), std::string::npos) << msg;
  EXPECT_NE(msg.find("emb.weight"), std::string::npos) << msg;
  fs::remove(chunk);
  msg = ErrorOf([&] { LoadCheckpoint(dir); });
  EXPECT_NE(msg.find(sh.file()), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot open"), std::string::npos) << msg;

  fs::resize_file(dir + "/manifest.pb", 100);
  msg = ErrorOf([&] { LoadCheckpoint(dir); });
  EXPECT_NE(msg.find("manifest.pb"), std::string::npos) << msg;
}

// Writes `m` as dir/manifest.pb with a valid frame, so only the semantic checks can catch it.
void WriteManifest(const std::string& dir, const ckpt::Manifest& m) {
  std::string payload = m.SerializeAsString();
  uint32_t version = 1, crc = Crc32c(payload.data(), payload.size());
  uint64_t len = payload.size();
  std::string out = "RFCKMAN1";
  out.append(reinterpret_cast<const char*>(&version), 4);
  out.append(reinterpret_cast<const char*>(&len), 8);
  out.append(reinterpret_cast<const char*>(&crc), 4);
  out += payload;
  std::ofstream(dir + "/manifest.pb", std::ios::binary | std::ios::trunc) << out;
}

TEST(Checkpoint, InconsistentManifestWithValidCrcIsRejected) {
  TempDir tmp("semantic");
  ParamStore b;
  DeclareModel(&b, 0, 1);
  b.Allocate(true);
  SaveOptions opt;
  opt.max_chunk_bytes = 128;
  std::string dir = SaveCheckpoint(tmp.path(), b, SomeConfig(), SomeState(1), opt);
  const ckpt::Manifest good = ReadCheckpointManifest(dir);
  WriteManifest(dir, good);
  VerifyCheckpoint(dir);  // the test's framing matches the writer's
  struct Case {
    const char* want;
    std::function<void(ckpt::Manifest*)> edit;
  };
  std::vector<Case> cases = {
      {"format_version", [](ckpt::Manifest* m) { m->set_format_version(99); }},
      {"shards cover",
       [](ckpt::Manifest* m) { m->mutable_tensors(0)->mutable_shards()->RemoveLast(); }},
      {"overlaps",
       [](ckpt::Manifest* m) {
         auto* t = m->mutable_tensors(0);
         *t->add_shards() = t->shards(0);
       }},
      {"outside the global shape",
       [](ckpt::Manifest* m) { m->mutable_tensors(0)->mutable_shards(0)->set_offsets(0, 15); }},
      {"byte_length",
       [](ckpt::Manifest* m) { m->mutable_tensors(0)->mutable_shards(0)->set_byte_length(12); }},
      {"not listed",
       [](ckpt::Manifest* m) { m->mutable_tensors(1)->mutable_shards(0)->set_file("x.bin"); }},
      {"dtype", [](ckpt::Manifest* m) { m->mutable_tensors(2)->set_dtype(ckpt::BFLOAT16); }},
      {"listed twice", [](ckpt::Manifest* m) { *m->add_tensors() = m->tensors(3); }},
      {"negative dimension",
       [](ckpt::Manifest* m) { m->mutable_tensors(3)->set_global_shape(0, -8); }},
      {"shards cover",
       [](ckpt::Manifest* m) { m->mutable_tensors(3)->set_global_shape(0, 1 << 30); }},
      {"offsets",
       [](ckpt::Manifest* m) { m->mutable_tensors(4)->mutable_shards(0)->add_offsets(0); }},
      {"but its shards cover",
       [](ckpt::Manifest* m) { m->mutable_chunks(0)->set_size(m->chunks(0).size() + 4); }},
      {"run past",
       [](ckpt::Manifest* m) {
         auto* sh = m->mutable_tensors(0)->mutable_shards(0);
         sh->set_byte_offset(sh->byte_offset() + (uint64_t{1} << 40));
       }},
      {"bad chunk name", [](ckpt::Manifest* m) { m->mutable_chunks(0)->set_name("../evil"); }},
      {"unknown kind",
       [](ckpt::Manifest* m) { m->mutable_tensors(0)->set_kind(ckpt::TENSOR_KIND_UNSPECIFIED); }},
  };
  for (const auto& c : cases) {
    ckpt::Manifest m = good;
    c.edit(&m);
    WriteManifest(dir, m);
    std::string msg = ErrorOf([&] { LoadCheckpoint(dir); });
    EXPECT_NE(msg.find(c.want), std::string::npos) << "want '" << c.want << "', got: " << msg;
    EXPECT_NE(msg.find("manifest.pb"), std::string::npos) << msg;
  }
  WriteManifest(dir, good);
  RestoreInto(LoadCheckpoint(dir), &b, true);
}

TEST(Checkpoint, CliVerifyAndInspect) {
  TempDir tmp("cli");
  ParamStore a;
  DeclareModel(&a, 0, 1);
  a.Allocate(true);
  FillPattern(&a);
  std::string dir = SaveCheckpoint(tmp.path(), a, SomeConfig(), SomeState(12));
  auto run = [&](const std::string& args, std::string* out) {
    std::string cmd = std::string(ROFORMER_BINARY) + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    out->clear();
    while (size_t n = fread(buf, 1, sizeof(buf), p)) out->append(buf, n);
    return WEXITSTATUS(pclose(p));
  };
  std::string out;
  EXPECT_EQ(run("ckpt verify " + tmp.path(), &out), 0) << out;
  EXPECT_NE(out.find("ok:"), std::string::npos) << out;
  EXPECT_EQ(run("ckpt inspect " + dir + " --shards", &out), 0) << out;
  for (const char* want : {"step 12", "layout tp=1 dp=1", "cube", "[4, 6, 3]", "adam_v",
                           "realformer: true", "chunk-r0-0.bin"}) {
    EXPECT_NE(out.find(want), std::string::npos) << want << "\n" << out;
  }
  ckpt::Manifest m = ReadCheckpointManifest(dir);
  FlipByte(dir + "/" + m.chunks(0).name(), 3, 1);
  EXPECT_NE(run("ckpt verify " + dir, &out), 0) << out;
  EXPECT_NE(out.find("crc32c mismatch"), std::string::npos) << out;
  EXPECT_NE(run("ckpt verify " + tmp.path() + "/nope", &out), 0) << out;
}

}  // namespace
}  // namespace roformer
