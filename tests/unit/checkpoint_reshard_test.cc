// Padded-vocab resharding (RestoreInto pads/trims dim 0 of tensors with logical_rows) and the
// asynchronous checkpointer (snapshot isolation, one save at a time, error propagation, multi-rank
// commit at a later synchronization point).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/checkpoint.h"
#include "runtime/error.h"
#include "runtime/param_store.h"

namespace roformer {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kLogical = 600;  // vocab rows; padded to 128 * tp
constexpr int64_t kCols = 4;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("ckpt_reshard_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

int64_t Padded(int tp) { return (kLogical + 128 * tp - 1) / (128 * tp) * (128 * tp); }

// A model-like store: padded word embeddings and MLM bias (dim-0 sharded, logical rows), a
// row-parallel weight (dim 1) and a replicated LayerNorm weight.
ParamStore MakeStore(int tp, int tp_rank) {
  ParamStore s;
  s.Declare("emb", {Padded(tp), kCols}, Placement::kShardDim0, true, tp_rank, tp, kLogical);
  s.Declare("w", {kCols, 8}, Placement::kShardDim1, true, tp_rank, tp);
  s.Declare("ln", {kCols}, Placement::kReplicated, false, tp_rank, tp);
  s.Declare("bias", {Padded(tp)}, Placement::kShardDim0, false, tp_rank, tp, kLogical);
  s.Allocate(true);
  return s;
}

// Value of global element (r, c) of a tensor for buffer `kind` (0 params, 1 m, 2 v): a function of
// logical coordinates only, zero on padding rows.
float Value(const std::string& name, int kind, int64_t r, int64_t c) {
  if ((name == "emb" || name == "bias") && r >= kLogical) return 0.0f;
  return static_cast<float>(name.size() * 1000 + kind * 100000 + r * 10 + c) * 1e-3f;
}

void Fill(ParamStore* s) {
  std::vector<float>* bufs[3] = {&s->params(), &s->adam_m(), &s->adam_v()};
  for (const auto& pi : s->infos()) {
    const int64_t rows = pi.local_shape[0];
    const int64_t cols = pi.local_shape.size() > 1 ? pi.local_shape[1] : 1;
    for (int k = 0; k < 3; ++k) {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          int64_t gr = r, gc = c;
          if (pi.placement == Placement::kShardDim0) gr += pi.shard_start;
          if (pi.placement == Placement::kShardDim1) gc += pi.shard_start;
          (*bufs[k])[pi.offset + r * cols + c] = Value(pi.name, k, gr, gc);
        }
      }
    }
  }
}

void ExpectFilled(const ParamStore& s, const std::string& label) {
  const std::vector<float>* bufs[3] = {&s.params(), &s.adam_m(), &s.adam_v()};
  for (const auto& pi : s.infos()) {
    const int64_t rows = pi.local_shape[0];
    const int64_t cols = pi.local_shape.size() > 1 ? pi.local_shape[1] : 1;
    for (int k = 0; k < 3; ++k) {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          int64_t gr = r, gc = c;
          if (pi.placement == Placement::kShardDim0) gr += pi.shard_start;
          if (pi.placement == Placement::kShardDim1) gc += pi.shard_start;
          ASSERT_EQ((*bufs[k])[pi.offset + r * cols + c], Value(pi.name, k, gr, gc))
              << label << " " << pi.name << " kind " << k << " (" << gr << ", " << gc << ")";
        }
      }
    }
  }
}

// AND-allreduce over n threads: a reusable barrier carrying a flag.
class FakeWorld {
 public:
  explicit FakeWorld(int n) : n_(n) {}
  bool AllOk(bool ok) {
    std::unique_lock<std::mutex> l(mu_);
    const int64_t gen = gen_;
    acc_ = acc_ && ok;
    if (++arrived_ == n_) {
      results_.push_back(acc_);
      acc_ = true;
      arrived_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(l, [&] { return gen_ != gen; });
    }
    ++rounds_;
    return results_[gen];
  }
  int64_t rounds() {
    std::lock_guard<std::mutex> l(mu_);
    return rounds_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_, arrived_ = 0;
  int64_t gen_ = 0, rounds_ = 0;
  bool acc_ = true;
  std::vector<bool> results_;
};

SaveOptions RankOptions(int rank, int world, int tp, FakeWorld* fw) {
  SaveOptions o;
  o.rank = rank;
  o.world = world;
  o.tp = tp;
  o.fsync = false;
  o.keep = 0;
  o.max_chunk_bytes = 1000;  // several chunk files per rank
  o.vocab.size = kLogical;
  o.vocab.padded_size = Padded(tp);
  if (world > 1) o.all_ok = [fw](bool ok) { return fw->AllOk(ok); };
  return o;
}

// Runs fn(rank) on `world` threads; returns per-rank Error messages ("" = none).
std::vector<std::string> OnRanks(int world, const std::function<void(int)>& fn) {
  std::vector<std::string> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (const Error& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

// Saves a tp-way layout (world = tp, dp = 1) of the filled model at `step`.
void SaveLayout(const std::string& root, int tp, int64_t step,
                const std::function<void(ParamStore*)>& tweak = {}) {
  FakeWorld fw(tp);
  TrainState st;
  st.step = step;
  auto errors = OnRanks(tp, [&](int r) {
    ParamStore s = MakeStore(tp, r);
    Fill(&s);
    if (tweak) tweak(&s);
    SaveCheckpoint(root, s, config::Config(), st, RankOptions(r, tp, tp, &fw));
  });
  for (int r = 0; r < tp; ++r) ASSERT_EQ(errors[r], "") << "rank " << r;
}

TEST(CheckpointReshard, PaddedVocabAcrossTpSizes) {
  for (int save_tp : {1, 2, 4}) {
    TempDir d;
    SaveLayout(d.str(), save_tp, 3);
    LoadedCheckpoint ck = LoadCheckpoint(d.str(), true);
    ASSERT_EQ(ck.Find("emb", ckpt::PARAM)->shape, (std::vector<int64_t>{Padded(save_tp), kCols}));
    for (int load_tp : {1, 2, 4}) {
      for (int r = 0; r < load_tp; ++r) {
        ParamStore s = MakeStore(load_tp, r);
        // Garbage first: padding rows must come back as zeros, not stale values.
        std::fill(s.params().begin(), s.params().end(), 7.0f);
        std::fill(s.adam_m().begin(), s.adam_m().end(), 7.0f);
        std::fill(s.adam_v().begin(), s.adam_v().end(), 7.0f);
        RestoreInto(ck, &s, true);
        ExpectFilled(s, "tp " + std::to_string(save_tp) + " -> tp " + std::to_string(load_tp) +
                            " rank " + std::to_string(r));
      }
    }
  }
}

TEST(CheckpointReshard, NonZeroTrimmedRowIsAnErrorNamingTheTensor) {
  TempDir d;
  // tp = 2 saves 768 rows; tp = 1 keeps 640. Row 700 of adam_v is not padding-like.
  SaveLayout(d.str(), 2, 1, [](ParamStore* s) {
    const auto& pi = s->info("bias");
    if (pi.shard_start <= 700 && 700 < pi.shard_start + pi.local_shape[0]) {
      s->adam_v()[pi.offset + 700 - pi.shard_start] = 0.5f;
    }
  });
  LoadedCheckpoint ck = LoadCheckpoint(d.str(), true);
  ParamStore s = MakeStore(1, 0);
  try {
    RestoreInto(ck, &s, true);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("'bias' (adam_v)"), std::string::npos) << m;
    EXPECT_NE(m.find("[768]"), std::string::npos) << m;
    EXPECT_NE(m.find("[640]"), std::string::npos) << m;
    EXPECT_NE(m.find("row 700"), std::string::npos) << m;
  }
  // Params only: the params' padding rows are zero, so that restore works.
  ParamStore p = MakeStore(1, 0);
  EXPECT_NO_THROW(RestoreInto(ck, &p, false));
  // Loading at tp = 4 pads (nothing trimmed): fine as well.
  ParamStore q = MakeStore(4, 3);
  EXPECT_NO_THROW(RestoreInto(ck, &q, true));
}

TEST(CheckpointReshard, OtherShapeMismatchesStayErrors) {
  TempDir d;
  SaveLayout(d.str(), 1, 1);
  LoadedCheckpoint ck = LoadCheckpoint(d.str(), true);
  {
    // A tensor without logical_rows whose dim 0 differs.
    ParamStore s;
    s.Declare("emb", {Padded(1), kCols}, Placement::kShardDim0, true, 0, 1, kLogical);
    s.Declare("w", {kCols, 8}, Placement::kShardDim1, true);
    s.Declare("ln", {kCols + 1}, Placement::kReplicated, false);
    s.Declare("bias", {Padded(1)}, Placement::kShardDim0, false, 0, 1, kLogical);
    s.Allocate(true);
    try {
      RestoreInto(ck, &s, true);
      FAIL() << "expected an Error";
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find("'ln'"), std::string::npos) << m;
      EXPECT_NE(m.find("[4]"), std::string::npos) << m;
      EXPECT_NE(m.find("[5]"), std::string::npos) << m;
    }
  }
  {
    // A padded tensor whose trailing dims differ.
    ParamStore s;
    s.Declare("emb", {Padded(2), kCols + 1}, Placement::kShardDim0, true, 0, 2, kLogical);
    s.Allocate(true);
    EXPECT_THROW(RestoreInto(ck, &s, true, /*allow_unused=*/true), Error);
  }
  {
    // A different vocab: fewer meaningful rows in the checkpoint than the model needs.
    ParamStore s;
    s.Declare("emb", {768, kCols}, Placement::kShardDim0, true, 0, 1, 700);
    s.Allocate(true);
    try {
      RestoreInto(ck, &s, true, /*allow_unused=*/true);
      FAIL() << "expected an Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("a different vocab"), std::string::npos) << e.what();
    }
  }
}

TEST(CheckpointReshard, PaddedRowsRuleDirectly) {
  std::vector<float> big(8 * 2, 0.0f), small(6 * 2, 1.0f);
  for (int i = 0; i < 10; ++i) big[i] = 1.0f;  // rows 0..4 set, rows 5..7 zero
  EXPECT_EQ(PaddedRowsToCopy("t", 5, {8, 2}, big.data(), {6, 2}, "a", "b"), 6);
  EXPECT_EQ(PaddedRowsToCopy("t", 5, {6, 2}, small.data(), {8, 2}, "a", "b"), 6);
  EXPECT_EQ(PaddedRowsToCopy("t", -1, {6, 2}, small.data(), {6, 2}, "a", "b"), 6);
  EXPECT_THROW(PaddedRowsToCopy("t", -1, {8, 2}, big.data(), {6, 2}, "a", "b"), Error);
  big[13] = 2.0f;  // row 6
  EXPECT_THROW(PaddedRowsToCopy("t", 5, {8, 2}, big.data(), {6, 2}, "a", "b"), Error);
}

TEST(AsyncCheckpoint, SnapshotIsIsolatedFromLaterUpdates) {
  TempDir d;
  ParamStore s = MakeStore(1, 0);
  Fill(&s);
  AsyncCheckpointer ac;
  std::atomic<bool> release{false};
  ac.before_write_for_test = [&] {
    while (!release.load()) std::this_thread::yield();
  };
  TrainState st;
  st.step = 5;
  ac.Start(d.str(), s, config::Config(), st, RankOptions(0, 1, 1, nullptr));
  EXPECT_TRUE(ac.pending());
  // Training continues and changes everything while the writer has not even started.
  std::fill(s.params().begin(), s.params().end(), -1.0f);
  std::fill(s.adam_m().begin(), s.adam_m().end(), -1.0f);
  EXPECT_EQ(FindLatestCheckpoint(d.str()), "");  // not committed yet
  EXPECT_EQ(ac.TryCommit(), "");                 // writer still blocked
  release = true;
  const std::string dir = ac.Wait();
  EXPECT_EQ(dir, CheckpointStepDir(d.str(), 5));
  EXPECT_FALSE(ac.pending());
  EXPECT_EQ(ac.Wait(), "");
  ParamStore back = MakeStore(1, 0);
  RestoreInto(LoadCheckpoint(d.str(), true), &back, true);
  ExpectFilled(back, "async");
  EXPECT_EQ(VerifyCheckpoint(dir).tensors, 12);
}

TEST(AsyncCheckpoint, SecondSaveWaitsForTheFirst) {
  TempDir d;
  ParamStore s = MakeStore(1, 0);
  Fill(&s);
  AsyncCheckpointer ac;
  std::atomic<int> writes{0};
  ac.before_write_for_test = [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ++writes;
  };
  TrainState st;
  for (int64_t step : {1, 2, 3}) {
    st.step = step;
    ac.Start(d.str(), s, config::Config(), st, RankOptions(0, 1, 1, nullptr));
    // Start returned: every earlier save is committed.
    EXPECT_EQ(writes.load(), step - 1);
    if (step > 1) {
      EXPECT_EQ(FindLatestCheckpoint(d.str()), CheckpointStepDir(d.str(), step - 1));
    }
  }
  EXPECT_EQ(ac.Wait(), CheckpointStepDir(d.str(), 3));
  EXPECT_EQ(ListCompleteCheckpoints(d.str()).size(), 3u);
}

TEST(AsyncCheckpoint, BackgroundErrorIsRethrownAtTheNextSyncPoint) {
  TempDir d;
  ParamStore s = MakeStore(1, 0);
  Fill(&s);
  AsyncCheckpointer ac;
  ac.before_write_for_test = [] { Fail("disk on fire"); };
  TrainState st;
  st.step = 1;
  ac.Start(d.str(), s, config::Config(), st, RankOptions(0, 1, 1, nullptr));  // does not throw
  // The next save re-throws it.
  st.step = 2;
  try {
    ac.Start(d.str(), s, config::Config(), st, RankOptions(0, 1, 1, nullptr));
    FAIL() << "expected the background error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("disk on fire"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(ac.pending());
  EXPECT_EQ(FindLatestCheckpoint(d.str()), "");
  // At the end of the run (Wait) as well; and a healthy save afterwards works.
  ac.Start(d.str(), s, config::Config(), st, RankOptions(0, 1, 1, nullptr));
  EXPECT_THROW(ac.Wait(), Error);
  ac.before_write_for_test = nullptr;
  ac.Start(d.str(), s, config::Config(), st, RankOptions(0, 1, 1, nullptr));
  EXPECT_EQ(ac.Wait(), CheckpointStepDir(d.str(), 2));
  VerifyCheckpoint(d.str());
}

TEST(AsyncCheckpoint, MultiRankCommitsAtALaterRoundWithoutWriterCollectives) {
  TempDir d;
  const int tp = 2, world = 4;  // tp 2 x dp 2: DP rank 1 writes nothing
  FakeWorld fw(world);
  std::atomic<bool> release{false};
  std::vector<int> polls(world, 0);
  TrainState st;
  st.step = 9;
  auto errors = OnRanks(world, [&](int r) {
    ParamStore s = MakeStore(tp, r % tp);
    Fill(&s);
    AsyncCheckpointer ac;
    // Rank 1's writer is slow: every rank keeps training (polling) until it is done.
    if (r == 1) {
      ac.before_write_for_test = [&] {
        while (!release.load()) std::this_thread::yield();
      };
    }
    ac.Start(d.str(), s, config::Config(), st, RankOptions(r, world, tp, &fw));
    std::fill(s.params().begin(), s.params().end(), -3.0f);  // the next steps
    std::string dir;
    while (dir.empty()) {
      if (++polls[r] == 5 && r == 0) release = true;
      dir = ac.TryCommit();
    }
    EXPECT_EQ(dir, CheckpointStepDir(d.str(), 9));
  });
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  // Every rank polled the same number of times (the AND-round keeps them in lockstep).
  for (int r = 1; r < world; ++r) EXPECT_EQ(polls[r], polls[0]);
  EXPECT_GE(polls[0], 5);
  LoadedCheckpoint ck = LoadCheckpoint(d.str(), true);
  EXPECT_EQ(ck.manifest.layout().tp(), 2);
  EXPECT_EQ(ck.manifest.layout().dp(), 2);
  ParamStore back = MakeStore(1, 0);
  RestoreInto(ck, &back, true);
  ExpectFilled(back, "tp2 x dp2 async -> tp1");
}

TEST(AsyncCheckpoint, MultiRankWriterErrorFailsEveryRank) {
  TempDir d;
  const int world = 2;
  FakeWorld fw(world);
  TrainState st;
  st.step = 4;
  auto errors = OnRanks(world, [&](int r) {
    ParamStore s = MakeStore(2, r);
    Fill(&s);
    AsyncCheckpointer ac;
    if (r == 1) ac.before_write_for_test = [] { Fail("rank 1 cannot write"); };
    ac.Start(d.str(), s, config::Config(), st, RankOptions(r, world, 2, &fw));
    ac.Wait();
  });
  EXPECT_NE(errors[1].find("rank 1 cannot write"), std::string::npos) << errors[1];
  EXPECT_NE(errors[0].find("failed on another rank"), std::string::npos) << errors[0];
  EXPECT_EQ(FindLatestCheckpoint(d.str()), "");
}

TEST(AsyncCheckpoint, DestructorJoinsWithoutCommitting) {
  TempDir d;
  ParamStore s = MakeStore(1, 0);
  Fill(&s);
  TrainState st;
  st.step = 2;
  {
    AsyncCheckpointer ac;
    ac.Start(d.str(), s, config::Config(), st, RankOptions(0, 1, 1, nullptr));
  }
  EXPECT_EQ(FindLatestCheckpoint(d.str()), "");  // the .tmp is left for a later save to remove
  EXPECT_TRUE(fs::exists(CheckpointStepDir(d.str(), 2) + ".tmp"));
  SaveCheckpoint(d.str(), s, config::Config(), st, RankOptions(0, 1, 1, nullptr));
  EXPECT_FALSE(fs::exists(CheckpointStepDir(d.str(), 2) + ".tmp"));
}

}  // namespace
}  // namespace roformer
