// Tensor-parallel GPU model (model/cuda/roformer_model_cuda.h with a TP NcclCommunicator) against
// the CPU model at TP = 1 (model/roformer_model.h): one rank per GPU under mpirun (ctest runs
// tests/gpu/model_tp_parity.sh: `mpirun -np 2`), TP = the number of ranks. Every rank builds the
// same TP = 1 CPU reference (same config, weights, batch and dropout context, so the same masks:
// the GPU passes the CPU's TP column offsets), takes its shard of the reference's weights into a
// CPU model built with the TP layout, and runs the GPU model on that shard. Checked, combined over
// the ranks (a sharded tensor's error sums over its shards, i.e. the gathered tensor):
//   - MLM and SOP losses and counts against the reference; the losses bit-identical on all ranks;
//   - every parameter gradient (relative L2 per gathered tensor) against the reference;
//   - replicated gradients bit-identical across TP ranks (the TpGradState rule);
//   - the grad-ready hook: the CPU model's groups, in its order;
//   - a second step bit-identical (deterministic, collectives included);
//   - CheckGradients: the TP global norm equals the reference's and is identical on all ranks;
//     ApplyAdamW's update equals the reference AdamW update;
//   - a fresh model built from the downloaded store restores the Adam moments (resume);
//   - a NaN planted in one rank's shard: every rank reports the step non-finite, same tensor.
// fp32 within 1e-5 (losses) / 2e-5 (gradients); bf16 activations (and bf16 TP all-reduces) as a
// sanity bound, as tests/gpu/model_parity.cc. Exit 0 all passed, 1 a failure, 77 fewer than two
// CUDA devices (ctest: skipped). `--count-devices` prints the device count (for the wrapper).
#include <cuda_runtime_api.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/ops.h"
#include "model/cuda/roformer_model_cuda.h"
#include "model/optimizer.h"
#include "model/roformer_model.h"
#include "runtime/comm_nccl.h"
#include "runtime/fnv1a.h"
#include "runtime/tp_region.h"
#include "tests/gpu/model_parity_inputs.h"

namespace roformer {
namespace {

int g_rank = 0, g_failures = 0;

// Collective: passes only when it passes on every rank; rank 0 prints.
void Expect(bool ok, const std::string& what) {
  int all_ok = ok ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (g_rank == 0) {
    std::printf("%s  %s\n", all_ok ? "PASS" : "FAIL", what.c_str());
    std::fflush(stdout);
  }
  if (!all_ok) ++g_failures;
}

// True when `x` is bit-identical on every rank.
bool SameOnAllRanks(const void* x, size_t bytes) {
  uint64_t h = Fnv1a64(x, bytes);
  uint64_t h0 = h;
  MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  int same = h == h0 ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return same == 1;
}

// This rank's shard of `values` (a flat buffer laid out like the TP = 1 store `full`), laid out
// like the TP store `local` (same names). Rows of a vocab-padded tensor beyond the reference's
// rows are zero (padding in both layouts).
std::vector<float> ShardOf(const ParamStore& full, const std::vector<float>& values,
                           const ParamStore& local) {
  std::vector<float> out(static_cast<size_t>(local.size()), 0.0f);
  for (const ParamInfo& li : local.infos()) {
    const ParamInfo& fi = full.info(li.name);
    const float* src = values.data() + fi.offset;
    float* dst = out.data() + li.offset;
    switch (li.placement) {
      case Placement::kReplicated:
        std::memcpy(dst, src, sizeof(float) * li.numel);
        break;
      case Placement::kShardDim0: {
        const int64_t rows = li.local_shape[0], cols = li.numel / std::max<int64_t>(rows, 1);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t gr = li.shard_start + r;
          if (gr < fi.local_shape[0]) std::memcpy(dst + r * cols, src + gr * cols, 4 * cols);
        }
        break;
      }
      case Placement::kShardDim1: {
        const int64_t rows = li.local_shape[0], lc = li.local_shape[1], gc = fi.local_shape[1];
        for (int64_t r = 0; r < rows; ++r)
          std::memcpy(dst + r * lc, src + r * gc + li.shard_start, 4 * lc);
        break;
      }
    }
  }
  return out;
}

// Worst relative L2 error over the gathered tensors: per tensor ||got - want|| / max(||want||,
// 1e-3 x the largest tensor norm) (model_parity's floor), where a sharded tensor's squared sums
// add over the ranks and a replicated one counts once (rank 0's).
double WorstGatheredError(const ParamStore& local, const std::vector<float>& got,
                          const std::vector<float>& want, std::string* worst_name,
                          int64_t* nonfinite) {
  const auto& infos = local.infos();
  std::vector<double> sums(2 * infos.size() + 1, 0.0);
  for (size_t t = 0; t < infos.size(); ++t) {
    const ParamInfo& info = infos[t];
    if (info.placement == Placement::kReplicated && g_rank != 0) continue;
    double n2 = 0, d2 = 0;
    for (int64_t i = info.offset; i < info.offset + info.numel; ++i) {
      if (!std::isfinite(got[i])) sums.back() += 1;
      const double dd = static_cast<double>(got[i]) - want[i];
      n2 += dd * dd;
      d2 += static_cast<double>(want[i]) * want[i];
    }
    sums[2 * t] = n2;
    sums[2 * t + 1] = d2;
  }
  MPI_Allreduce(MPI_IN_PLACE, sums.data(), static_cast<int>(sums.size()), MPI_DOUBLE, MPI_SUM,
                MPI_COMM_WORLD);
  double largest = 0;
  for (size_t t = 0; t < infos.size(); ++t)
    largest = std::fmax(largest, std::sqrt(sums[2 * t + 1]));
  double worst = 0;
  for (size_t t = 0; t < infos.size(); ++t) {
    const double e = std::sqrt(sums[2 * t]) / std::fmax(std::sqrt(sums[2 * t + 1]), 1e-3 * largest);
    if (!(e <= worst)) {
      worst = e;
      *worst_name = infos[t].name;
    }
  }
  *nonfinite = static_cast<int64_t>(sums.back());
  return worst;
}

using Groups = std::vector<std::vector<std::string>>;

void RunCase(NcclGrid& grid, const std::string& name, config::ModelConfig cfg, bool dropout,
             bool bf16) {
  const Batch batch = ParityBatch();
  DropoutContext dc;
  dc.enabled = dropout;
  dc.seed = 1234;
  dc.step = 7;
  dc.micro = 1;
  cfg.set_precision("fp32");
  const float grad_scale = 0.5f;
  const std::string tag =
      name + (bf16 ? " [gpu bf16]" : " [fp32]") + " tp " + std::to_string(grid.tp->size());
  char buf[512];

  // The TP = 1 CPU reference, identical on every rank.
  RoFormerModel ref(cfg);
  ref.InitWeights(42);
  PerturbNormsAndBiases(&ref.store());
  {
    // The padded rows of the word embedding and MLM bias stay zero (the layout's invariant).
    const ParamInfo& bias = ref.store().info("cls.predictions.bias");
    for (int64_t i = cfg.vocab_size(); i < bias.numel; ++i)
      ref.store().params()[bias.offset + i] = 0.0f;
  }
  Groups ref_groups;
  ref.SetGradReadyHook([&](const std::vector<size_t>& ix) {
    ref_groups.emplace_back();
    for (size_t i : ix) ref_groups.back().push_back(ref.store().infos()[i].name);
  });
  ref.store().ZeroGrads();
  const LossStats lc = ref.ForwardBackward(batch, dc, true, grad_scale);
  ref.SetGradReadyHook({});

  // This rank's TP layout (a CPU model used only for its store) holding the reference's shard.
  RoFormerModel shard(cfg, TpRegion(grid.tp.get()), /*with_optimizer_state=*/true);
  shard.store().params() = ShardOf(ref.store(), ref.store().params(), shard.store());

  config::ModelConfig gcfg = cfg;
  gcfg.set_precision(bf16 ? "bf16" : "fp32");
  cudaStream_t stream;
  ROFORMER_CUDA_CHECK(cudaStreamCreate(&stream));
  struct StreamGuard {  // destroyed after the models (declared before them)
    cudaStream_t s;
    ~StreamGuard() { cudaStreamDestroy(s); }
  } stream_guard{stream};
  cuda::CudaRoFormerModel gpu(gcfg, shard.store(), stream, grid.tp.get());
  Groups gpu_groups;
  gpu.SetGradReadyHook([&](const std::vector<size_t>& ix) {
    gpu_groups.emplace_back();
    for (size_t i : ix) gpu_groups.back().push_back(gpu.infos()[i].name);
  });
  const LossStats lg = gpu.ForwardBackward(batch, dc, true, grad_scale);
  gpu.SetGradReadyHook({});
  gpu.FinishGradientsTp();
  ParamStore got = shard.store();
  gpu.DownloadGrads(&got);

  // Losses.
  const double loss_tol = bf16 ? 2e-2 : 1e-5, grad_tol = bf16 ? 5e-2 : 2e-5;
  const double emlm = std::fabs(lg.mlm_loss - lc.mlm_loss) / std::fabs(lc.mlm_loss);
  const double esop = std::fabs(lg.sop_loss - lc.sop_loss) / std::fabs(lc.sop_loss);
  std::snprintf(buf, sizeof(buf),
                "%s: mlm loss %.6f vs cpu tp 1 %.6f (rel %.2e), sop %.6f vs %.6f (rel %.2e), "
                "mlm count %lld/%lld, correct %lld/%lld",
                tag.c_str(), lg.mlm_loss, lc.mlm_loss, emlm, lg.sop_loss, lc.sop_loss, esop,
                static_cast<long long>(lg.mlm_count), static_cast<long long>(lc.mlm_count),
                static_cast<long long>(lg.mlm_correct), static_cast<long long>(lc.mlm_correct));
  Expect(emlm <= loss_tol && esop <= loss_tol && lg.mlm_count == lc.mlm_count &&
             lg.sop_count == lc.sop_count,
         buf);
  const double losses[2] = {lg.mlm_loss, lg.sop_loss};
  Expect(SameOnAllRanks(losses, sizeof(losses)), tag + ": losses bit-identical on every TP rank");

  // Gradients, gathered over the ranks.
  const std::vector<float> want = ShardOf(ref.store(), ref.store().grads(), shard.store());
  std::string worst_name;
  int64_t nonfinite = 0;
  const double worst = WorstGatheredError(got, got.grads(), want, &worst_name, &nonfinite);
  std::snprintf(buf, sizeof(buf),
                "%s: %zu gradient tensors, worst rel L2 %.2e (%s), %lld non-finite", tag.c_str(),
                got.infos().size(), worst, worst_name.c_str(), static_cast<long long>(nonfinite));
  Expect(nonfinite == 0 && worst <= grad_tol, buf);

  // Replicated gradients: bit-identical on every TP rank.
  std::string differs;
  for (const ParamInfo& info : got.infos()) {
    if (info.placement != Placement::kReplicated) continue;
    if (!SameOnAllRanks(got.grads().data() + info.offset, sizeof(float) * info.numel) &&
        differs.empty())
      differs = info.name;
  }
  Expect(differs.empty(), tag + ": replicated gradients bit-identical across TP ranks" +
                              (differs.empty() ? "" : " (first differing: " + differs + ")"));

  Expect(gpu_groups == ref_groups && !gpu_groups.empty(),
         tag + ": grad-ready hook: " + std::to_string(gpu_groups.size()) +
             " groups, the CPU model's groups in its order (" + std::to_string(ref_groups.size()) +
             ")");

  // Determinism: the same step again from zero gradients, collectives included.
  gpu.ZeroGrads();
  gpu.ForwardBackward(batch, dc, true, grad_scale);
  gpu.FinishGradientsTp();
  ParamStore again = shard.store();
  gpu.DownloadGrads(&again);
  Expect(std::memcmp(again.grads().data(), got.grads().data(),
                     sizeof(float) * got.grads().size()) == 0,
         tag + ": second GPU step bit-identical");

  // The optimizer halves: TP grad norm, then AdamW from that norm.
  AdamWOptions opt;
  opt.weight_decay = 0.01;
  opt.grad_clip = 1.0;
  const double lr = 1e-3;
  const std::vector<float> p0 = shard.store().params();
  const GradCheck gc = CheckGradients(ref.store());
  AdamWStep(&ref.store(), opt, lr, 1, gc.norm);
  const GradCheck gg = gpu.CheckGradients();
  gpu.ApplyAdamW(opt, lr, 1, gg.norm);
  ParamStore stepped = shard.store();
  gpu.DownloadParams(&stepped);
  const std::vector<float> p1 = ShardOf(ref.store(), ref.store().params(), shard.store());
  std::vector<float> dgot(p0.size()), dwant(p0.size());
  for (size_t i = 0; i < p0.size(); ++i) {
    dgot[i] = stepped.params()[i] - p0[i];
    dwant[i] = p1[i] - p0[i];
  }
  int64_t bad = 0;
  const double update_err = WorstGatheredError(stepped, dgot, dwant, &worst_name, &bad);
  const double norm_err = std::fabs(gg.norm - gc.norm) / gc.norm;
  const double update_tol = bf16 ? 0.25 : 1e-4;
  std::snprintf(buf, sizeof(buf),
                "%s: CheckGradients norm %.6e vs cpu tp 1 %.6e (rel %.2e); ApplyAdamW update "
                "worst rel L2 %.2e (%s), %lld non-finite",
                tag.c_str(), gg.norm, gc.norm, norm_err, update_err, worst_name.c_str(),
                static_cast<long long>(bad));
  Expect(gg.finite && bad == 0 && norm_err <= grad_tol && update_err <= update_tol, buf);
  Expect(SameOnAllRanks(&gg.norm, sizeof(gg.norm)), tag + ": grad norm identical on every rank");

  // Resume: a fresh model built from the downloaded store (weights + moments) holds the moments.
  {
    cuda::CudaRoFormerModel resumed(gcfg, stepped, stream, grid.tp.get());
    ParamStore back = shard.store();
    std::fill(back.adam_m().begin(), back.adam_m().end(), -1.0f);
    std::fill(back.adam_v().begin(), back.adam_v().end(), -1.0f);
    resumed.DownloadParams(&back);
    const bool moved = std::any_of(stepped.adam_v().begin(), stepped.adam_v().end(),
                                   [](float v) { return v != 0.0f; });
    Expect(moved && back.adam_m() == stepped.adam_m() && back.adam_v() == stepped.adam_v() &&
               back.params() == stepped.params(),
           tag + ": UploadParams restores the Adam moments on a fresh model");
  }

  // A NaN in one rank's shard of a sharded tensor: the step is non-finite on every rank, and
  // every rank names the same (lowest-index) tensor.
  const std::string poisoned = "roformer.encoder.layer.1.intermediate.dense.weight";
  if (grid.tp->rank() == grid.tp->size() - 1) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    ROFORMER_CUDA_CHECK(cudaMemcpy(gpu.device_grads() + got.info(poisoned).offset + 3, &nan,
                                   sizeof(float), cudaMemcpyHostToDevice));
  }
  const GradCheck gn = gpu.CheckGradients();
  Expect(!gn.finite && gn.first_bad == poisoned && !std::isfinite(gn.norm),
         tag + ": NaN in the last rank's shard -> non-finite on every rank, first bad '" +
             gn.first_bad + "'");
}

int Main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&devices);
  if (argc > 1 && std::strcmp(argv[1], "--count-devices") == 0) {
    std::printf("%d\n", err == cudaSuccess ? devices : 0);
    return 0;
  }
  if (err != cudaSuccess || devices < 2) {
    std::printf("SKIPPED: needs 2 CUDA devices (%s)\n",
                err != cudaSuccess ? cudaGetErrorString(err)
                                   : ("found " + std::to_string(devices)).c_str());
    return 77;
  }
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  {
    NcclGrid grid = MakeNcclGrid(/*tp=*/world, /*dp=*/1);
    if (g_rank == 0)
      std::printf("model_tp_parity: %d ranks (tp %d), rank 0 on cuda:%d\n", world, world,
                  grid.device);
    config::ModelConfig plain = ParityBaseConfig();
    config::ModelConfig real = ParityBaseConfig();
    real.set_realformer(true);
    real.set_attention_scale("log_n");
    real.set_hidden_dropout_prob(0.1f);
    real.set_attention_probs_dropout_prob(0.1f);
    config::ModelConfig pre = ParityBaseConfig();
    pre.set_pre_ln(true);
    pre.set_embedding_size(32);  // embeddings_project H != E
    pre.set_realformer(true);
    pre.set_realformer_running_mean(true);
    pre.set_hidden_dropout_prob(0.1f);
    pre.set_attention_probs_dropout_prob(0.1f);
    for (bool bf16 : {false, true}) {
      RunCase(grid, "plain post-LN, no dropout", plain, false, bf16);
      RunCase(grid, "post-LN RealFormer log-n, dropout 0.1", real, true, bf16);
      RunCase(grid, "pre-LN E!=H RealFormer running mean, dropout 0.1", pre, true, bf16);
    }
  }
  if (g_rank == 0) std::printf("model tp parity: %d failures\n", g_failures);
  MPI_Finalize();
  return g_failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace roformer

int main(int argc, char** argv) { return roformer::Main(argc, argv); }
