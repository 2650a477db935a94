// `roformer bench ckpt`: the training stall a checkpoint causes, synchronous vs asynchronous
// (checkpoint.async), and save/load throughput, on a BERT-base-sized store (or --params N) with
// Adam m and v. Prints one JSON line.
//
// Stall = seconds the training thread is blocked by SaveCheckpointNow: the whole write for a
// synchronous save; the host snapshot for an async one. The async writer competes with training for
// cores and memory bandwidth, so the bench also times a fixed CPU "step" (an AdamW-like pass over
// --step-mb of floats) idle and while the writer runs, and reports the slowdown.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "launch/command.h"
#include "runtime/checkpoint.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/param_store.h"

namespace roformer {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// BERT-base / Chinese RoFormer-base shapes (vocab 21128 padded to 21248; 12 layers, H 768, FFN
// 3072): about 102 M parameters.
void DeclareBertBase(ParamStore* s) {
  const int64_t V = 21248, H = 768, I = 3072;
  const auto R = Placement::kReplicated, S0 = Placement::kShardDim0, S1 = Placement::kShardDim1;
  s->Declare("roformer.embeddings.word_embeddings.weight", {V, H}, S0, true, 0, 1, 21128);
  s->Declare("roformer.embeddings.token_type_embeddings.weight", {2, H}, R, true);
  s->Declare("roformer.embeddings.LayerNorm.weight", {H}, R, false);
  s->Declare("roformer.embeddings.LayerNorm.bias", {H}, R, false);
  for (int l = 0; l < 12; ++l) {
    const std::string p = "roformer.encoder.layer." + std::to_string(l) + ".";
    for (const char* qkv : {"query", "key", "value"}) {
      s->Declare(p + "attention.self." + qkv + ".weight", {H, H}, S0, true);
      s->Declare(p + "attention.self." + qkv + ".bias", {H}, S0, false);
    }
    s->Declare(p + "attention.output.dense.weight", {H, H}, S1, true);
    s->Declare(p + "attention.output.dense.bias", {H}, R, false);
    s->Declare(p + "attention.output.LayerNorm.weight", {H}, R, false);
    s->Declare(p + "attention.output.LayerNorm.bias", {H}, R, false);
    s->Declare(p + "intermediate.dense.weight", {I, H}, S0, true);
    s->Declare(p + "intermediate.dense.bias", {I}, S0, false);
    s->Declare(p + "output.dense.weight", {H, I}, S1, true);
    s->Declare(p + "output.dense.bias", {H}, R, false);
    s->Declare(p + "output.LayerNorm.weight", {H}, R, false);
    s->Declare(p + "output.LayerNorm.bias", {H}, R, false);
  }
  s->Declare("cls.predictions.transform.dense.weight", {H, H}, R, true);
  s->Declare("cls.predictions.transform.dense.bias", {H}, R, false);
  s->Declare("cls.predictions.transform.LayerNorm.weight", {H}, R, false);
  s->Declare("cls.predictions.transform.LayerNorm.bias", {H}, R, false);
  s->Declare("cls.predictions.bias", {V}, S0, false, 0, 1, 21128);
  s->Declare("sop.pooler.dense.weight", {H, H}, R, true);
  s->Declare("sop.pooler.dense.bias", {H}, R, false);
  s->Declare("sop.classifier.weight", {2, H}, R, true);
  s->Declare("sop.classifier.bias", {2}, R, false);
}

// N parameters as [1024, 1024] tensors plus a remainder.
void DeclareN(ParamStore* s, int64_t n) {
  const int64_t block = 1024 * 1024;
  int k = 0;
  for (; n >= block; n -= block)
    s->Declare(std::string("block.") += std::to_string(k++), {1024, 1024}, Placement::kReplicated,
               true);
  if (n > 0)
    s->Declare(std::string("block.") += std::to_string(k), {n}, Placement::kReplicated, true);
}

void Fill(std::vector<float>* v, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& f : *v) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    f = static_cast<float>(static_cast<int64_t>(x >> 33) - (int64_t{1} << 30)) * 1e-9f;
  }
}

// A stand-in training step: one AdamW-like pass over `w` (memory-bound, like the optimizer).
void FakeStep(std::vector<float>* w, std::vector<float>* m) {
  float* a = w->data();
  float* b = m->data();
  const size_t n = w->size();
  for (size_t i = 0; i < n; ++i) {
    b[i] = 0.9f * b[i] + 0.1f * a[i];
    a[i] -= 1e-4f * b[i] / (std::sqrt(std::fabs(b[i])) + 1e-8f);
  }
}

int RunBenchCkpt(int argc, char** argv) {
  Flags flags(argc, argv, {"params", "dir", "no-fsync!", "step-mb", "keep!"});
  const int64_t n = flags.GetInt("params", 0);
  if (n < 0) Fail("bench ckpt: --params must be >= 0 (0 = BERT-base shapes)");
  const std::string dir = flags.Get("dir", "/tmp/roformer-bench-ckpt");
  const bool fsync = !flags.GetBool("no-fsync");
  const int64_t step_mb = flags.GetInt("step-mb", 64);
  if (step_mb <= 0) Fail("bench ckpt: --step-mb must be > 0");

  ParamStore store;
  if (n == 0) {
    DeclareBertBase(&store);
  } else {
    DeclareN(&store, n);
  }
  store.Allocate(/*with_optimizer=*/true);
  Fill(&store.params(), 1);
  Fill(&store.adam_m(), 2);
  Fill(&store.adam_v(), 3);
  // Padding rows are zero in a real run (and RestoreInto checks it on reshard).
  for (const auto& pi : store.infos()) {
    if (pi.logical_rows < 0) continue;
    const int64_t row = pi.numel / pi.local_shape[0];
    for (auto* buf : {&store.params(), &store.adam_m(), &store.adam_v()}) {
      std::fill(buf->begin() + pi.offset + pi.logical_rows * row,
                buf->begin() + pi.offset + pi.numel, 0.0f);
    }
  }
  const double mb = static_cast<double>(store.size()) * 3 * sizeof(float) / 1e6;

  config::Config cfg;
  TrainState st;
  st.step = 1;
  SaveOptions so;
  so.keep = 1;
  so.fsync = fsync;
  std::error_code ec;
  fs::remove_all(dir, ec);
  const std::string sync_root = dir + "/sync", async_root = dir + "/async";

  // Fake training steps idle, for the slowdown under the async writer.
  std::vector<float> w(static_cast<size_t>(step_mb) * (1 << 20) / 8), wm(w.size());
  Fill(&w, 4);
  FakeStep(&w, &wm);
  const int idle_steps = 5;
  auto t0 = Clock::now();
  for (int i = 0; i < idle_steps; ++i) FakeStep(&w, &wm);
  const double step_idle = Seconds(t0) / idle_steps;

  // Synchronous: the step waits for the whole write.
  t0 = Clock::now();
  SaveCheckpoint(sync_root, store, cfg, st, so);
  const double sync_s = Seconds(t0);

  // Load: assemble + restore (page cache warm: just written).
  t0 = Clock::now();
  LoadedCheckpoint ck = LoadCheckpoint(sync_root, true);
  const double read_s = Seconds(t0);
  t0 = Clock::now();
  RestoreInto(ck, &store, true);
  const double restore_s = Seconds(t0);
  ck = LoadedCheckpoint();

  // Asynchronous: the step waits for the snapshot; the writer runs while fake steps continue.
  AsyncCheckpointer async;
  st.step = 2;
  t0 = Clock::now();
  async.Start(async_root, store, cfg, st, so);
  const double async_stall = Seconds(t0);
  int busy_steps = 0;
  double busy_s = 0;
  std::string committed;
  while (committed.empty()) {
    auto ts = Clock::now();
    FakeStep(&w, &wm);
    busy_s += Seconds(ts);
    ++busy_steps;
    committed = async.TryCommit();
  }
  const double async_total = Seconds(t0);
  const double step_busy = busy_s / busy_steps;
  // Steady state: the next async save reuses the snapshot buffers (no page faults).
  st.step = 3;
  t0 = Clock::now();
  async.Start(async_root, store, cfg, st, so);
  const double async_stall_reused = Seconds(t0);
  async.Wait();
  if (!flags.GetBool("keep")) fs::remove_all(dir, ec);

  std::printf(
      "{\"bench\":\"ckpt\",\"params\":%lld,\"payload_mb\":%.1f,\"fsync\":%s,"
      "\"sync_stall_s\":%.4f,\"async_stall_s\":%.4f,\"async_stall_reused_s\":%.4f,"
      "\"async_commit_after_s\":%.4f,"
      "\"save_mb_per_s\":%.0f,\"async_save_mb_per_s\":%.0f,\"load_mb_per_s\":%.0f,"
      "\"load_read_s\":%.4f,\"load_restore_s\":%.4f,\"fake_step_idle_s\":%.4f,"
      "\"fake_step_during_async_s\":%.4f,\"fake_steps_during_async\":%d}\n",
      static_cast<long long>(store.size()), mb, fsync ? "true" : "false", sync_s, async_stall,
      async_stall_reused, async_total, mb / sync_s, mb / async_total, mb / (read_s + restore_s),
      read_s, restore_s, step_idle, step_busy, busy_steps);
  return 0;
}

RegisterCommand reg(
    "bench ckpt", "checkpoint save stall (sync vs async) and save/load MB/s",
    "roformer bench ckpt [--params N] [--dir DIR] [--no-fsync] [--step-mb 64] [--keep]\n"
    "Builds a store of BERT-base shapes (about 102 M parameters; --params N for N parameters)\n"
    "with Adam m and v, saves it synchronously (the stall is the whole write), loads it back\n"
    "(LoadCheckpoint + RestoreInto), then saves it with the AsyncCheckpointer (the stall is the\n"
    "snapshot; the first one also faults in its buffers, async_stall_reused_s is a later one) "
    "while\n"
    "timing a stand-in training step (an AdamW-like pass over --step-mb MB) until the commit. "
    "Prints one JSON line. Writes under --dir (default /tmp/roformer-bench-ckpt),\n"
    "removed afterwards unless --keep.",
    &RunBenchCkpt);

}  // namespace
}  // namespace roformer
