// `roformer bench train`: tokens/s and MFU of full training steps (forward + backward + AdamW) on
// synthetic batches, beside the sgemm peak measured in the same run.
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "launch/command.h"
#include "model/device_model.h"
#include "model/flops.h"
#include "model/roformer_model.h"
#include "model/synthetic_batches.h"
#include "model/trainer.h"
#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/gemm_peak.h"
#include "runtime/grid.h"

namespace roformer {
namespace {

int RunBenchTrain(int argc, char** argv) {
  Flags flags(argc, argv, {"config", "set", "shape", "steps", "warmup"});
  std::vector<std::string> sets;
  const std::string shape = flags.Get("shape", "small");
  if (shape == "base") {
    sets = {"model.hidden_size=768",
            "model.num_hidden_layers=12",
            "model.num_attention_heads=12",
            "model.intermediate_size=3072",
            "train.seq_len=128",
            "train.micro_batch=32",
            "train.global_batch=32"};
  } else if (shape == "small") {
    sets = {"model.hidden_size=256",       "model.num_hidden_layers=4",
            "model.num_attention_heads=4", "model.intermediate_size=1024",
            "train.seq_len=128",           "train.micro_batch=32",
            "train.global_batch=32"};
  } else if (shape != "config") {
    Fail("--shape must be base, small or config (use --config/--set), got '", shape, "'");
  }
  sets.push_back("model.vocab_size=21128");
  for (const auto& s : flags.GetAll("set")) sets.push_back(s);
  config::Config cfg = ResolveConfig(flags.Get("config"), sets);
  const int steps = static_cast<int>(flags.GetInt("steps", 5));
  const int warmup = static_cast<int>(flags.GetInt("warmup", 2));
  if (steps <= 0 || warmup < 0) Fail("--steps must be > 0 and --warmup >= 0");
  cfg.mutable_train()->set_steps(steps + warmup);
  cfg.mutable_train()->set_log_every(1 << 30);

  GridOptions go;
  go.tp = cfg.parallel().tp();
  go.dp = cfg.parallel().dp();
  go.watchdog_timeout_s = cfg.parallel().watchdog_timeout_s();
  auto grid = Grid::Create(go);
  const double peak = MeasureSgemmPeakGflops();
  // The other backend's peak too, so a reader sees what the chosen GEMM is worth here.
  const GemmBackend backend = CurrentGemmBackend();
  double openblas_peak = peak;
  if (backend != GemmBackend::kOpenBlas) {
    SetGemmBackend(GemmBackend::kOpenBlas);
    openblas_peak = MeasureSgemmPeakGflops();
    SetGemmBackend(backend);
  }
  RoFormerModel model(HostModelConfig(cfg), TpRegion(&grid->tp()));
  model.InitWeights(cfg.train().seed());
  SyntheticBatchSource data(cfg.model().vocab_size(), cfg.train().seq_len(), cfg.train().seed());
  TrainerOptions to;
  to.quiet = true;
  to.world = &grid->world();
  to.tp = &grid->tp();
  to.dp = &grid->dp();
  Trainer trainer(cfg, &model, &data, to);
  // On a device (train.device) MFU is against the device's datasheet peak, not the host SGEMM.
  const double mfu_peak = trainer.device() ? trainer.device()->PeakGflops() : peak;
  const std::string peak_label =
      trainer.device() ? trainer.device()->Describe() + " datasheet"
                       : std::string("sgemm ") + GemmBackendName(backend) + " measured";
  for (int i = 0; i < warmup; ++i) trainer.Step();
  const double exposed0 = trainer.dp_exposed_seconds(), comm0 = trainer.dp_comm_seconds();

  // FLOPs of the timed steps come from the actual masked counts of their batches.
  double flops = 0;
  int64_t tokens = 0;
  std::vector<double> times;
  Batch b;
  for (int i = 0; i < steps; ++i) {
    const int64_t first = trainer.consumed_samples();
    // FLOPs and tokens of the whole global batch (all DP ranks), counted on every rank.
    for (int m = 0; m < cfg.train().global_batch() / cfg.train().micro_batch(); ++m) {
      data.Fill(first + static_cast<int64_t>(m) * cfg.train().micro_batch(),
                cfg.train().micro_batch(), false, &b);
      flops +=
          b.batch * TrainFlopsPerSequence(model.dims(), b.seq_len,
                                          static_cast<double>(b.mlm_positions.size()) / b.batch,
                                          !b.sop_labels.empty());
      tokens += static_cast<int64_t>(b.batch) * b.seq_len;
    }
    auto t0 = std::chrono::steady_clock::now();
    trainer.Step();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  // The slowest rank sets the pace; every rank reports the same numbers.
  grid->world().AllReduce(std::span<double>(times), ReduceOp::kMax);
  double exposed = trainer.dp_exposed_seconds() - exposed0;
  double comm = trainer.dp_comm_seconds() - comm0;
  double ex[2] = {exposed, comm};
  grid->world().AllReduce(std::span<double>(ex, 2), ReduceOp::kMax);
  exposed = ex[0];
  comm = ex[1];
  double total = 0;
  for (double t : times) total += t;
  if (grid->world_rank() != 0) return 0;
  std::sort(times.begin(), times.end());
  const double tok_s = tokens / total;
  const double gflops = flops / total / 1e9;
  const ModelDims& d = model.dims();
  const int world = grid->world_size();
  std::printf(
      "bench train: shape %s L=%d H=%d A=%d FFN=%d seq %d batch %d tp %d dp %d: %.3f "
      "s/step (median %.3f), %.0f tokens/s, %.1f GFLOP/s, peak (%s) %.1f GFLOP/s per "
      "rank, MFU %.1f%% (of %d x peak), exposed DP comm %.1f%% of step time\n",
      shape.c_str(), d.layers, d.hidden, d.heads, d.intermediate, cfg.train().seq_len(),
      cfg.train().global_batch(), grid->tp_size(), grid->dp_size(), total / steps,
      times[times.size() / 2], tok_s, gflops, peak_label.c_str(), mfu_peak,
      mfu_peak > 0 ? 100 * gflops / (mfu_peak * world) : 0.0, world, 100 * exposed / total);
  std::printf(
      "{\"shape\":\"%s\",\"layers\":%d,\"hidden\":%d,\"heads\":%d,\"intermediate\":%d,"
      "\"seq_len\":%d,\"batch\":%d,\"steps\":%d,\"step_seconds\":%.6g,\"tokens_per_s\":%.6g,"
      "\"gflops\":%.6g,\"gemm_peak_gflops\":%.6g,\"mfu\":%.6g,\"tp\":%d,\"dp\":%d,"
      "\"dp_exposed_fraction\":%.6g,\"dp_comm_seconds_per_step\":%.6g,\"gemm_backend\":\"%s\","
      "\"openblas_peak_gflops\":%.6g,\"device\":\"%s\"}\n",
      shape.c_str(), d.layers, d.hidden, d.heads, d.intermediate, cfg.train().seq_len(),
      cfg.train().global_batch(), steps, total / steps, tok_s, gflops, mfu_peak,
      mfu_peak > 0 ? gflops / (mfu_peak * world) : 0.0, grid->tp_size(), grid->dp_size(),
      exposed / total, comm / steps, GemmBackendName(backend), openblas_peak,
      cfg.train().device().c_str());
  return 0;
}

RegisterCommand reg(
    "bench train", "tokens/s and MFU of full training steps vs the measured sgemm peak",
    "roformer bench train [--shape small|base|config] [--config F] [--set k=v ...]\n"
    "                     [--steps N=5] [--warmup N=2]\n"
    "Times forward + backward + AdamW on synthetic batches (vocab 21128, 15%\n"
    "masked, lengths L/2..L). base = L12 H768 A12 FFN3072 seq 128 batch 32;\n"
    "small = L4 H256 A4 FFN1024 seq 128 batch 32. The last line is JSON with\n"
    "tokens_per_s, mfu and gemm_peak_gflops. Threads: OMP_NUM_THREADS /\n"
    "OPENBLAS_NUM_THREADS. GEMM backend: ROFORMER_GEMM=onednn|openblas (default\n"
    "oneDNN when built in); the peak is measured with the backend in use.",
    &RunBenchTrain);

}  // namespace
}  // namespace roformer
