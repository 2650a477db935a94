// One full pretraining step (forward, MLM + SOP heads, backward) of the GPU model
// (model/cuda/roformer_model_cuda.h) against the CPU model (model/roformer_model.h): same config,
// same initial weights, same batch, same dropout context (so the same masks). fp32: the MLM and
// SOP losses and every parameter gradient (relative L2 per tensor) within 1e-5. bf16 activations
// on the GPU against the fp32 CPU: a sanity bound (2e-2 on the losses, 5e-2 per gradient tensor),
// since a whole step's bf16 rounding compounds beyond one op's 1e-2. Each GPU step runs twice and
// must give bit-identical gradients (deterministic mode). Then one optimizer step on both (grad
// norm + AdamW): the weight updates must agree (1e-4 relative in fp32).
// Exit 0 all passed, 1 a failure, 77 no CUDA device (ctest: skipped).
#include <cuda_runtime_api.h>

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

namespace roformer {
namespace {

int g_failures = 0;

void Report(bool ok, const std::string& what) {
  std::printf("%s  %s\n", ok ? "PASS" : "FAIL", what.c_str());
  std::fflush(stdout);
  if (!ok) ++g_failures;
}

config::ModelConfig BaseConfig() {
  config::ModelConfig c;
  c.set_vocab_size(300);  // padded to 384: the padded-vocab masking is exercised
  c.set_hidden_size(64);
  c.set_num_hidden_layers(2);
  c.set_num_attention_heads(4);
  c.set_intermediate_size(128);
  c.set_max_position_embeddings(64);
  c.set_type_vocab_size(2);
  c.set_layer_norm_eps(1e-12f);
  c.set_initializer_range(0.1f);
  c.set_hidden_dropout_prob(0.0f);
  c.set_attention_probs_dropout_prob(0.0f);
  return c;
}

// B = 3, L = 32; row 2 is right-padded to 20 real tokens; ~15 % MLM positions; SOP labels.
Batch MakeBatch() {
  Batch b;
  b.batch = 3;
  b.seq_len = 32;
  std::mt19937 g(17);
  for (int r = 0; r < b.batch; ++r) {
    const int len = r == 2 ? 20 : b.seq_len;
    for (int t = 0; t < b.seq_len; ++t) {
      const bool real = t < len;
      b.input_ids.push_back(real ? (t == 0 ? 2 : 5 + static_cast<int>(g() % 290)) : 0);
      b.token_type_ids.push_back(real && t >= len / 2 ? 1 : 0);
      b.attention_mask.push_back(real ? 1 : 0);
      if (real && t > 0 && g() % 100 < 15) {
        b.mlm_positions.push_back(r * b.seq_len + t);
        b.mlm_labels.push_back(static_cast<int32_t>(g() % 300));
      }
    }
  }
  b.sop_labels = {0, 1, 0};
  return b;
}

void RunCase(const std::string& name, config::ModelConfig cfg, bool dropout, bool bf16) {
  const Batch batch = MakeBatch();
  DropoutContext dc;
  dc.enabled = dropout;
  dc.seed = 1234;
  dc.step = 7;
  dc.micro = 1;
  cfg.set_precision("fp32");
  RoFormerModel cpu(cfg);
  cpu.InitWeights(42);
  // Non-trivial LayerNorm and bias parameters, so a swapped gamma/beta or a lost bias shows.
  {
    std::mt19937 g(5);
    std::normal_distribution<float> nd(0.0f, 0.1f);
    for (const auto& info : cpu.store().infos()) {
      const bool ln = info.name.find("LayerNorm") != std::string::npos ||
                      info.name.find("final_layer_norm") != std::string::npos;
      const bool bias = info.name.size() > 5 && info.name.rfind(".bias") == info.name.size() - 5;
      if (!ln && !bias) continue;
      float* p = cpu.store().params().data() + info.offset;
      for (int64_t i = 0; i < info.numel; ++i) p[i] += nd(g);
    }
  }
  cpu.store().ZeroGrads();
  const float grad_scale = 0.5f;
  const LossStats lc = cpu.ForwardBackward(batch, dc, true, grad_scale);

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
  const LossStats lg = gpu.ForwardBackward(batch, dc, true, grad_scale);
  ParamStore got = cpu.store();
  gpu.DownloadGrads(&got);

  const double loss_tol = bf16 ? 2e-2 : 1e-5, grad_tol = bf16 ? 5e-2 : 1e-5;
  const std::string tag = name + (bf16 ? " [gpu bf16]" : " [fp32]");
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
}

int Main() {
  int devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&devices);
  if (err != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "device count 0");
    return 77;
  }
  config::ModelConfig plain = BaseConfig();
  config::ModelConfig real = BaseConfig();
  real.set_realformer(true);
  real.set_attention_scale("log_n");
  config::ModelConfig pre = BaseConfig();
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
