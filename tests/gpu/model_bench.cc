// Training-step throughput of the GPU model itself (model/cuda/roformer_model_cuda.h) at
// BERT-base size (vocab 30522, hidden 768, 12 layers, 12 heads, FFN 3072), bf16 activations with
// fp32 master weights, 32768 tokens per step (seq 128 x 256, seq 512 x 64), RealFormer off and
// on, log-n scale and dropout 0.1 on. One step = ForwardBackward (forward, MLM on ~15 % of the
// positions + SOP, backward) with the model's deterministic kernels, then AdamWStep (fp64 grad
// norm read back for the clip, AdamW on the fp32 master weights, bf16 copy refreshed): a whole
// training step on one GPU, data already in host memory. Median of 5 timed steps after 2
// warm-ups. MFU = FLOPs/token (anchors §8: 6 N_nonemb + 12 L s h + 6 (h^2 + h V) f_masked) x
// tokens/s / 989 TFLOP/s. Exit 77 without a device.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/cuda/ops.h"
#include "model/cuda/roformer_model_cuda.h"
#include "model/optimizer.h"
#include "model/roformer_model.h"

namespace roformer {
namespace {

Batch MakeBatch(int b, int l, int vocab) {
  Batch batch;
  batch.batch = b;
  batch.seq_len = l;
  std::mt19937 g(3);
  for (int r = 0; r < b; ++r) {
    for (int t = 0; t < l; ++t) {
      batch.input_ids.push_back(t == 0 ? 2 : 5 + static_cast<int>(g() % (vocab - 5)));
      batch.token_type_ids.push_back(t >= l / 2 ? 1 : 0);
      batch.attention_mask.push_back(1);  // full-length rows: the FLOP count assumes them
      if (t > 0 && g() % 100 < 15) {
        batch.mlm_positions.push_back(r * l + t);
        batch.mlm_labels.push_back(static_cast<int32_t>(g() % vocab));
      }
    }
    batch.sop_labels.push_back(static_cast<int32_t>(g() % 2));
  }
  return batch;
}

int Main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  struct Row {
    int seq, batch;
    bool realformer;
    double ms, tps, mfu;
  };
  std::vector<Row> rows;
  for (bool realformer : {false, true}) {
    config::ModelConfig cfg;
    cfg.set_vocab_size(30522);
    cfg.set_hidden_size(768);
    cfg.set_num_hidden_layers(12);
    cfg.set_num_attention_heads(12);
    cfg.set_intermediate_size(3072);
    cfg.set_max_position_embeddings(512);
    cfg.set_type_vocab_size(2);
    cfg.set_hidden_dropout_prob(0.1f);
    cfg.set_attention_probs_dropout_prob(0.1f);
    cfg.set_attention_scale("log_n");
    cfg.set_realformer(realformer);
    cfg.set_precision("fp32");
    RoFormerModel layout(cfg, TpRegion(), /*with_optimizer_state=*/false);
    layout.InitWeights(1);
    config::ModelConfig gcfg = cfg;
    gcfg.set_precision("bf16");
    cudaStream_t stream;
    ROFORMER_CUDA_CHECK(cudaStreamCreate(&stream));
    for (auto [b, l] : {std::pair{256, 128}, std::pair{64, 512}}) {
      // A model per shape: its buffers are sized by the largest batch it has seen.
      cuda::CudaRoFormerModel gpu(gcfg, layout.store(), stream);
      const Batch batch = MakeBatch(b, l, cfg.vocab_size());
      AdamWOptions opt;
      DropoutContext dc;
      dc.enabled = true;
      dc.seed = 9;
      std::vector<double> ms;
      for (int i = 0; i < 7; ++i) {
        dc.step = i;
        gpu.ZeroGrads();
        ROFORMER_CUDA_CHECK(cudaStreamSynchronize(stream));
        const auto t0 = std::chrono::steady_clock::now();
        const LossStats ls = gpu.ForwardBackward(batch, dc, true);  // returns when finished
        const GradCheck gc = gpu.AdamWStep(opt, 1e-4, i + 1);      // norm read back + AdamW
        const auto t1 = std::chrono::steady_clock::now();
        // A broken step (non-finite loss, or gradients that make AdamW skip) would time short.
        if (!std::isfinite(ls.loss) || !gc.finite) {
          std::printf("FAIL: step %d: loss %g, gradients %s (first bad: %s)\n", i, ls.loss,
                      gc.finite ? "finite" : "NOT finite", gc.first_bad.c_str());
          return 1;
        }
        if (i >= 2) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      const double h = 768, V = 30592, f_masked = double(batch.mlm_positions.size()) / (b * l);
      const double n_nonemb = 12 * (12 * h * h + 13 * h);
      const double flops_tok = 6 * n_nonemb + 12.0 * 12 * l * h + 6 * (h * h + h * V) * f_masked;
      const double tps = b * l / (med * 1e-3);
      rows.push_back({l, b, realformer, med, tps, flops_tok * tps / 989e12});
      std::printf("model step seq %d batch %d realformer %s: %.2f ms, %.0f tokens/s\n", l, b,
                  realformer ? "on" : "off", med, tps);
      std::fflush(stdout);
    }
    cudaStreamDestroy(stream);
  }
  std::printf("\n==== GPU model (model/cuda) BERT-base training step, bf16, incl. AdamW ====\n");
  std::printf("%6s %6s %10s %10s %12s %7s\n", "seq", "batch", "realformer", "ms/step", "tokens/s",
              "MFU");
  for (const auto& r : rows)
    std::printf("%6d %6d %10s %10.2f %12.0f %6.1f%%\n", r.seq, r.batch, r.realformer ? "on" : "off",
                r.ms, r.tps, 100 * r.mfu);
  return 0;
}

}  // namespace
}  // namespace roformer

int main() { return roformer::Main(); }
