// One full pretraining step (forward, MLM + SOP heads, backward) of the GPU model
// (model/cuda/roformer_model_cuda.h) against the CPU model (model/roformer_model.h): same config,
// same initial weights, same batch, same dropout context (so the same masks). fp32: the MLM and
// SOP losses and every parameter gradient (relative L2 per tensor) within 1e-5. bf16 activations
// on the GPU against the fp32 CPU: a sanity bound (2e-2 on the losses, 5e-2 per gradient tensor),
// since a whole step's bf16 rounding compounds beyond one op's 1e-2. Each GPU step runs twice and
// must give bit-identical gradients (deterministic mode). Then one optimizer step on both (grad
// norm + AdamW): the weight updates must agree (1e-4 relative in fp32). Also: the grad-ready hook
// reports the CPU model's groups in its order, and a fresh GPU model built from the stepped store
// restores its Adam moments (UploadParams). tests/gpu/model_tp_parity.cc covers TP > 1.
// Exit 0 all passed, 1 a failure, 77 no CUDA device (ctest: skipped).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/ops.h"
#include "model/cuda/roformer_model_cuda.h"
#include "model/optimizer.h"
#include "model/roformer_model.h"
#include "tests/gpu/model_parity_inputs.h"

namespace roformer {
namespace {

int g_failures = 0;

void Report(bool ok, const std::string& what) {
  std::printf("%s  %s\n", ok ? "PASS" : "FAIL", what.c_str());
  std::fflush(stdout);
  if (!ok) ++g_failures;
}

void RunCase(const std::string& name, config::ModelConfig cfg, bool dropout, bool bf16) {
  const Batch batch = ParityBatch();
  DropoutContext dc;
  dc.enabled = dropout;
  dc.seed = 1234;
  dc.step = 7;
  dc.micro = 1;
  cfg.set_precision("fp32");
  RoFormerModel cpu(cfg);
  cpu.InitWeights(42);
  PerturbNormsAndBiases(&cpu.store());
  cpu.store().ZeroGrads();
  const float grad_scale = 0.5f;
  std::vector<std::vector<std::string>> cpu_groups, gpu_groups;
  cpu.SetGradReadyHook([&](const std::vector<size_t>& ix) {
    cpu_groups.emplace_back();
    for (size_t i : ix) cpu_groups.back().push_back(cpu.store().infos()[i].name);
  });
  const LossStats lc = cpu.ForwardBackward(batch, dc, true, grad_scale);
  cpu.SetGradReadyHook({});

  config::ModelConfig gcfg = cfg;
  gcfg.set_precision(bf16 ? "bf16" : "fp32");
  cudaStream_t stream;
  ROFORMER_CUDA_CHECK(cudaStreamCreate(&stream));
  // Declared before the model, so destroyed after it: the model's destructor synchronises its
  // stream, and a destroyed stream there leaves an error that the next case's first launch check
  // (cudaGetLastError) would report as its own.
  struct StreamGuard {
    cudaStream_t s;
    ~StreamGuard() { cudaStreamDestroy(s); }
  } stream_guard{stream};
  cuda::CudaRoFormerModel gpu(gcfg, cpu.store(), stream);
  gpu.SetGradReadyHook([&](const std::vector<size_t>& ix) {
    gpu_groups.emplace_back();
    for (size_t i : ix) gpu_groups.back().push_back(gpu.infos()[i].name);
  });
  const LossStats lg = gpu.ForwardBackward(batch, dc, true, grad_scale);
  gpu.SetGradReadyHook({});
  ParamStore got = cpu.store();
  gpu.DownloadGrads(&got);

  const double loss_tol = bf16 ? 2e-2 : 1e-5, grad_tol = bf16 ? 5e-2 : 1e-5;
  const std::string tag = name + (bf16 ? " [gpu bf16]" : " [fp32]");
  Report(!gpu_groups.empty() && gpu_groups == cpu_groups,
         tag + ": grad-ready hook: " + std::to_string(gpu_groups.size()) +
             " groups, the CPU model's groups in its order");
  const double emlm = std::fabs(lg.mlm_loss - lc.mlm_loss) / std::fabs(lc.mlm_loss);
  const double esop = std::fabs(lg.sop_loss - lc.sop_loss) / std::fabs(lc.sop_loss);
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "%s: mlm loss %.6f vs cpu %.6f (rel %.2e), sop %.6f vs %.6f "
                "(rel %.2e), mlm count %lld/%lld",
                tag.c_str(), lg.mlm_loss, lc.mlm_loss, emlm, lg.sop_loss, lc.sop_loss, esop,
                static_cast<long long>(lg.mlm_count), static_cast<long long>(lc.mlm_count));
  Report(emlm <= loss_tol && esop <= loss_tol && lg.mlm_count == lc.mlm_count &&
             lg.sop_count == lc.sop_count,
         buf);

  // Per tensor: ||gpu - cpu|| / max(||cpu||, floor), floor = 1e-3 x the largest tensor norm, so
  // a gradient that is zero up to rounding in exact arithmetic (a bias whose effect cancels)
  // cannot fail on noise while every other tensor is held to the relative tolerance.
  std::vector<double> num, den;
  int64_t nonfinite = 0;
  double largest = 0;
  for (const auto& info : cpu.store().infos()) {
    const float* a = got.grads().data() + info.offset;
    const float* b = cpu.store().grads().data() + info.offset;
    double n2 = 0, d2 = 0;
    for (int64_t i = 0; i < info.numel; ++i) {
      if (!std::isfinite(a[i])) ++nonfinite;
      const double dd = static_cast<double>(a[i]) - b[i];
      n2 += dd * dd;
      d2 += static_cast<double>(b[i]) * b[i];
    }
    num.push_back(std::sqrt(n2));
    den.push_back(std::sqrt(d2));
    largest = std::fmax(largest, den.back());
  }
  double worst = 0;
  std::string worst_name;
  for (size_t t = 0; t < num.size(); ++t) {
    const double e = num[t] / std::fmax(den[t], 1e-3 * largest);
    if (!(e <= worst)) {
      worst = e;
      worst_name = cpu.store().infos()[t].name;
    }
  }
  std::snprintf(buf, sizeof(buf),
                "%s: %zu gradient tensors, worst rel L2 %.2e (%s), %lld non-finite", tag.c_str(),
                cpu.store().infos().size(), worst, worst_name.c_str(),
                static_cast<long long>(nonfinite));
  Report(nonfinite == 0 && worst <= grad_tol, buf);

  // Determinism: the same step again from zero gradients, bit for bit.
  gpu.ZeroGrads();
  gpu.ForwardBackward(batch, dc, true, grad_scale);
  ParamStore again = cpu.store();
  gpu.DownloadGrads(&again);
  const bool same = std::memcmp(again.grads().data(), got.grads().data(),
                                sizeof(float) * got.grads().size()) == 0;
  Report(same, tag + ": second GPU step bit-identical");

  // The optimizer: grad norm + AdamW on both (the GPU's gradients are those of the step above).
  AdamWOptions opt;
  opt.weight_decay = 0.01;
  opt.grad_clip = 1.0;
  const double lr = 1e-3;
  const std::vector<float> p0 = cpu.store().params();
  const GradCheck gc = CheckGradients(cpu.store());
  AdamWStep(&cpu.store(), opt, lr, 1, gc.norm);
  const GradCheck gg = gpu.AdamWStep(opt, lr, 1);
  gpu.DownloadParams(&got);
  double unum = 0, uden = 0;
  int64_t bad = 0;
  for (size_t i = 0; i < p0.size(); ++i) {
    const double dg = static_cast<double>(got.params()[i]) - p0[i];
    const double dc = static_cast<double>(cpu.store().params()[i]) - p0[i];
    if (!std::isfinite(got.params()[i])) ++bad;
    unum += (dg - dc) * (dg - dc);
    uden += dc * dc;
  }
  // Adam's first step divides each gradient element by its own magnitude, so elements whose
  // gradient is rounding noise move by up to lr either way: bf16 gets a loose sanity bound.
  const double update_err = std::sqrt(unum / uden);
  const double norm_err = std::fabs(gg.norm - gc.norm) / gc.norm;
  const double update_tol = bf16 ? 0.25 : 1e-4;
  std::snprintf(buf, sizeof(buf),
                "%s: AdamW step: grad norm %.6e vs cpu %.6e (rel %.2e), weight update rel L2 "
                "%.2e, %lld non-finite",
                tag.c_str(), gg.norm, gc.norm, norm_err, update_err, static_cast<long long>(bad));
  Report(gg.finite && bad == 0 && norm_err <= grad_tol && update_err <= update_tol, buf);

  // Resume: a fresh model built from the stepped store (weights + Adam moments) holds them.
  {
    cuda::CudaRoFormerModel resumed(gcfg, got, stream);
    ParamStore back = got;
    std::fill(back.adam_m().begin(), back.adam_m().end(), -1.0f);
    std::fill(back.adam_v().begin(), back.adam_v().end(), -1.0f);
    resumed.DownloadParams(&back);
    const bool moved =
        std::any_of(got.adam_v().begin(), got.adam_v().end(), [](float v) { return v != 0.0f; });
    Report(moved && back.adam_m() == got.adam_m() && back.adam_v() == got.adam_v() &&
               back.params() == got.params(),
           tag + ": UploadParams restores the Adam moments on a fresh model");
  }
}

int Main() {
  int devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&devices);
  if (err != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "device count 0");
    return 77;
  }
  config::ModelConfig plain = ParityBaseConfig();
  config::ModelConfig real = ParityBaseConfig();
  real.set_realformer(true);
  real.set_attention_scale("log_n");
  config::ModelConfig pre = ParityBaseConfig();
  pre.set_pre_ln(true);
  pre.set_embedding_size(32);  // embeddings_project H != E
  pre.set_realformer(true);
  pre.set_realformer_running_mean(true);
  for (bool bf16 : {false, true}) {
    RunCase("plain post-LN, no dropout", plain, false, bf16);
    RunCase(
        "post-LN RealFormer log-n, dropout 0.1",
        [&] {
          auto c = real;
          c.set_hidden_dropout_prob(0.1f);
          c.set_attention_probs_dropout_prob(0.1f);
          return c;
        }(),
        true, bf16);
    RunCase(
        "post-LN RealFormer log-n, attention_recompute, dropout 0.1",
        [&] {
          auto c = real;
          c.set_attention_recompute(true);
          c.set_hidden_dropout_prob(0.1f);
          c.set_attention_probs_dropout_prob(0.1f);
          return c;
        }(),
        true, bf16);
    RunCase(
        "pre-LN E!=H RealFormer running mean, dropout 0.1",
        [&] {
          auto c = pre;
          c.set_hidden_dropout_prob(0.1f);
          c.set_attention_probs_dropout_prob(0.1f);
          return c;
        }(),
        true, bf16);
  }
  std::printf("model parity: %d failures\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace roformer

int main() { return roformer::Main(); }
