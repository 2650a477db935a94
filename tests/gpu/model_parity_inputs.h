// The inputs shared by the GPU model parity programs (model_parity.cc, model_tp_parity.cc): a
// small model config, one batch with padding, MLM positions and SOP labels, and the parameter
// perturbation applied after InitWeights.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "model/batch.h"
#include "runtime/config.pb.h"
#include "runtime/param_store.h"

namespace roformer {

// vocab 300 is padded (to 384 at TP 1, 512 at TP 2), so the padded-vocab masking is exercised.
inline config::ModelConfig ParityBaseConfig() {
  config::ModelConfig c;
  c.set_vocab_size(300);
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
inline Batch ParityBatch() {
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

// Non-trivial LayerNorm and bias parameters (on top of InitWeights), so a swapped gamma/beta or a
// lost bias shows in the parity checks.
inline void PerturbNormsAndBiases(ParamStore* store) {
  std::mt19937 g(5);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (const auto& info : store->infos()) {
    const bool ln = info.name.find("LayerNorm") != std::string::npos ||
                    info.name.find("final_layer_norm") != std::string::npos;
    const bool bias = info.name.size() > 5 && info.name.rfind(".bias") == info.name.size() - 5;
    if (!ln && !bias) continue;
    float* p = store->params().data() + info.offset;
    for (int64_t i = 0; i < info.numel; ++i) p[i] += nd(g);
  }
}

}  // namespace roformer
