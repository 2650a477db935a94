// RoFormer / RealFormer encoder with MLM and SOP heads on the CPU backend, fp32.
//
// Architecture (HF RoFormer numerics, clue-and-reference.md §3): token + segment embeddings (no
// absolute positions) -> LN -> dropout -> [embeddings_project if E != H] -> N layers of
// {Q,K,V projections, RoPE (interleaved pairs) on q and k, scores scaled by 1/sqrt(d) or
// log512(max(n,16))/sqrt(d), RealFormer residual scores (running sum of the scaled raw scores, mask
// excluded; optional running mean), masked softmax, attention dropout, output projection, residual
// + LN (Post-LN) or Pre-LN with a final LN, exact-erf GELU FFN}. Heads: MLM (dense + GELU + LN +
// decoder tied to the word embeddings + bias) computed only at the masked positions; SOP on [CLS]
// (pooler dense + tanh, classifier). Vocab is padded to a multiple of 128*tp; padded logits masked.
//
// Parameters live in a ParamStore under HF names (so HF checkpoints convert by name); the padded
// word embedding rows beyond vocab_size are zero and never receive gradient.
//
// The encoder and the heads are separate so fine-tuning heads (CLUE) and multi-task weighting can
// reuse the encoder: EncoderForward -> head forward/backward -> EncoderBackward.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/batch.h"
#include "runtime/config.pb.h"
#include "runtime/param_store.h"
#include "runtime/tp_region.h"

namespace roformer {

// Dropout stream key: masks are a pure function of (seed, step, micro-batch, layer, op, logical
// element index) through a counter-based RNG, so TP=N draws the masks TP=1 draws.
struct DropoutContext {
  bool enabled = false;  // false: eval / inference (dropout off)
  uint64_t seed = 0;
  uint64_t step = 0;
  uint32_t micro = 0;
};

struct LossStats {
  double loss = 0;      // total objective = mlm_loss + sop_loss (sop term only when labels exist)
  double mlm_loss = 0;  // mean cross-entropy over masked positions
  double sop_loss = 0;  // mean cross-entropy over sequences
  int64_t mlm_count = 0, mlm_correct = 0;
  int64_t sop_count = 0, sop_correct = 0;
  double forward_seconds = 0;   // encoder forward
  double backward_seconds = 0;  // heads (forward + backward) and encoder backward
};

// Derived sizes of a model on one TP rank.
struct ModelDims {
  int vocab = 0;         // unpadded vocab size
  int vocab_padded = 0;  // multiple of 128 * tp
  int hidden = 0, embedding = 0, layers = 0, heads = 0, head_dim = 0, intermediate = 0;
  int type_vocab = 0, max_positions = 0;
  int tp = 1, tp_rank = 0;
  int local_heads() const { return heads / tp; }
  int local_intermediate() const { return intermediate / tp; }
  int local_vocab() const { return vocab_padded / tp; }
};

ModelDims MakeModelDims(const config::ModelConfig& cfg, int tp = 1, int tp_rank = 0);

// Throws roformer::Error unless the model splits evenly over d.tp ranks: heads % tp,
// intermediate % tp, padded vocab % tp (and hidden % heads). The constructor calls it; launchers
// may call it early to fail before building anything.
void ValidateTpLayout(const ModelDims& d);

// What a parameter's accumulated gradient is on one TP rank after backward, derived from its
// placement (anchors §10.1: the TP fix-up is derived from declarations, never hand-listed).
enum class TpGradState {
  kShardComplete,    // sharded: this rank owns its shard's full gradient (no collective)
  kReplicaComplete,  // replicated and consumed only on TP-invariant activations: full and
                     // identical on every TP rank (no collective)
  kPartial,          // replicated but fed by rank-local data (e.g. sequence-parallel LN):
                     // must be summed over TP
};
TpGradState TpGradStateOf(const ParamInfo& info);

class RoFormerModel {
 public:
  // cfg.vocab_size must be > 0 here (resolved from the vocab file by the caller). Tensor
  // parallelism: pass TpRegion(&grid.tp()); this rank then holds only its shards (heads, FFN
  // slice, vocab rows) and every TP rank must run the same calls in the same order. Throws
  // roformer::Error when the layout does not divide (ValidateTpLayout).
  explicit RoFormerModel(const config::ModelConfig& cfg, TpRegion tp = TpRegion(),
                         bool with_optimizer_state = true);
  ~RoFormerModel();

  const ModelDims& dims() const;
  const config::ModelConfig& config() const;
  ParamStore& store();
  const ParamStore& store() const;

  // HF-style init: weights ~ N(0, initializer_range) from a counter RNG keyed by (seed, logical
  // name, logical element index) so every TP layout initialises identically; biases 0; LN 1/0;
  // pad row (id 0) and padded vocab rows 0.
  void InitWeights(uint64_t seed);

  // Pretraining step on one micro-batch: forward, and when `backward` is true, backward with the
  // parameter gradients ACCUMULATED (+=) into store().grads() scaled by `grad_scale`.
  // Multi-task weighting (model/loss_weighting.h): the gradient is that of
  // grad_scale * (mlm_scale * mlm_loss + sop_scale * sop_loss); a scale of exactly 0 skips that
  // head's backward (its loss is still computed), so one task's gradient can be taken alone.
  // Scales of 1 give bit-identical gradients to the unweighted sum.
  LossStats ForwardBackward(const Batch& batch, const DropoutContext& dropout, bool backward,
                            float grad_scale = 1.0f, float mlm_scale = 1.0f,
                            float sop_scale = 1.0f);

  // Inference (dropout off). Outputs (resized here): mlm_logits [B, L, vocab] (unpadded, every
  // position), sequence_output [B, L, H]. hidden_states, if non-null, gets num_hidden_layers + 1
  // tensors [B, L, H] (embedding output then each layer's output, HF's output_hidden_states; with
  // pre_ln the last one is before the final LayerNorm, sequence_output after it).
  void Infer(const Batch& batch, std::vector<float>* mlm_logits,
             std::vector<float>* sequence_output,
             std::vector<std::vector<float>>* hidden_states = nullptr);

  // ---- encoder/head split for fine-tuning and multi-task ----
  // Runs the encoder; returns the sequence output [B*L, H] (valid until the next call).
  const float* EncoderForward(const Batch& batch, const DropoutContext& dropout);
  // Backpropagates d(sequence_output) [B*L, H] through the encoder of the last EncoderForward,
  // accumulating parameter grads scaled by grad_scale.
  void EncoderBackward(const float* d_sequence_output, float grad_scale);

  // Post-backward TP gradient fix-up, once per optimizer step (after the last micro-batch, before
  // the DP reduction and the grad norm): sums over TP every gradient TpGradStateOf() reports
  // partial, packed into one all-reduce. In this layout (no sequence parallelism) no parameter is
  // partial, so it issues no collective; it is derived, so a new placement cannot be forgotten.
  void FinishGradientsTp();

  // Debug / tests: hashes every replicated tensor (parameters, or gradients when `grads`) and
  // all-gathers the hashes over TP (one collective, every TP rank must call it). Returns the name
  // of the first replicated tensor that differs on some TP rank, or "" when all are bit-identical.
  std::string CheckReplicatedAcrossTp(bool grads);

  TpRegion& tp();

  // Called during backward with the ParamStore indices (store().infos()) of tensors whose
  // gradients just became final for this micro-batch: the heads, then each layer from the top,
  // then the embeddings. The data-parallel reducer uses it to start bucket all-reduces while
  // earlier layers are still in backward. Set it for the last micro-batch of a step only; an
  // empty function disables it.
  void SetGradReadyHook(std::function<void(const std::vector<size_t>& tensors)> hook);

  // MLM head logits [mlm rows, local padded vocab] of the last ForwardBackward run with
  // backward = false (a backward overwrites them with their gradient). Tests and diagnostics.
  std::span<const float> LastMlmLogits() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace roformer
