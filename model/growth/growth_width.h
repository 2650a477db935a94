// Exact width growth of a RoFormer / RealFormer encoder (anchors-growth.md §3.1-§3.6), tile gauge:
// hidden ×k (integer: a Post-LN LayerNorm over a k-fold duplicated vector has the same mean and
// variance, ε included, §3.9), heads ×k_heads with one global head map, head_dim ×k_d with the
// RoPE stride placement (growth_head_dim.h), k = k_heads·k_d, and the FFN to any larger size
// (tiled copies, W2 split by the copy counts c_i). Readers of a duplicated input get in-dim splits
// (copies sum to the source weight, optionally with zero-sum random Δ), writers are copied on the
// out-dim. With a tied decoder the MLM-transform LayerNorm affine is divided by k (the decoder sums
// k copies of t/k). Factorised embeddings (embedding_size != hidden_size, kept unchanged): the
// embeddings, their LN and the MLM LN stay as they are; embeddings_project is copied on its
// out-dim and the MLM transform dense split on its in-dim.
#pragma once

#include <cstdint>
#include <string>

#include "model/growth/growth_recipe.h"
#include "runtime/config.pb.h"

namespace roformer {

struct WidthPlan {
  int k = 1, k_heads = 1, k_head_dim = 1;  // hidden, head count and head_dim factors
  bool factorised = false;                 // embedding_size != hidden_size (both models)
  int64_t vocab = 0, vocab_padded_from = 0, vocab_padded_to = 0;
  AxisMap hidden, qkv, ffn, embed, vocab_rows, type_rows;
};

// Checks that `to` is an exact width growth of `from` (integer factors, same RealFormer / LN /
// scale / eps / type vocab, FFN not smaller, factorisation rules) and builds the index maps. The
// number of layers is not looked at. `tp_to` sets the target's vocab padding (multiple of
// 128·tp_to); `vocab_padded_from` is the source checkpoint's word-embedding row count.
// Throws Error with the offending fields.
WidthPlan PlanWidthGrowth(const config::ModelConfig& from, const config::ModelConfig& to,
                          int64_t vocab_padded_from, int tp_to);

// Recipe of one tensor under `plan` (HF names of model/roformer_model.cc; layer names of any
// index). Throws Error for a tensor this operator does not know (e.g. a fine-tuning head).
TensorRecipe WidthRecipeFor(const std::string& name, const WidthPlan& plan, double init_std);

// Grows every tensor of `src`. noise_std: std of the zero-sum split Δ (0 = symmetric split);
// init_std: std of brand-new random entries (new head_dim channels of Q and V).
GrowthTensors GrowWidth(const GrowthTensors& src, const WidthPlan& plan, uint64_t seed,
                        double noise_std, double init_std);

}  // namespace roformer
