// Hugging Face RoFormer <-> our model: config.json mapping, weight import (`roformer convert
// --from-hf`) and export (`--to-hf`). Our parameters already use HF names, so the mapping is the
// identity except for:
//   - roformer.embeddings.word_embeddings.weight and cls.predictions.bias: HF has V rows, ours
//     vocab_padded (multiple of 128); the extra rows are zero.
//   - roformer.encoder.embed_positions.weight: HF's frozen sinusoidal table. Not a parameter here
//     (RoPE is computed); on import it is checked against our table (1e-6), on export written.
//   - cls.predictions.decoder.weight: tied to the word embeddings (must be equal; warning if not).
//     cls.predictions.decoder.bias: an alias of cls.predictions.bias. Both omitted on export, as
//     save_pretrained does with tie_word_embeddings.
//   - sop.*: no HF counterpart; initialised by InitWeights(seed) on import, dropped on export.
//   - roformer.encoder.final_layer_norm.*: Pre-LN only (our extension; HF has no Pre-LN).
// Variant switches that HF lacks travel as extra config.json keys: realformer,
// realformer_running_mean, pre_ln, attention_scale ("sqrt_d" | "log_n").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/roformer_model.h"
#include "runtime/config.pb.h"
#include "runtime/json.h"

namespace roformer {

struct HfImportReport {
  std::vector<std::string> loaded;       // our tensors filled from the checkpoint
  std::vector<std::string> initialised;  // not in the HF checkpoint, initialised (sop.*, ...)
  std::vector<std::string> ignored;      // HF tensors checked and dropped (table, tied decoder)
  std::vector<std::string> warnings;
};

// HF config.json (+ our variant keys) -> ModelConfig. Unsupported settings (hidden_act other than
// "gelu", rotary_value, is_decoder, ...) throw Error naming `origin` and the key.
config::ModelConfig ModelConfigFromHf(const Json& hf, const std::string& origin,
                                      std::vector<std::string>* warnings = nullptr);
// ModelConfig -> config.json for RoFormerForMaskedLM (+ our variant keys).
Json HfConfigFromModel(const config::ModelConfig& cfg);

// A full Config (defaults elsewhere) wrapping `model`, validated; train.seq_len is clamped to the
// model's max_position_embeddings so validation does not trip over it.
config::Config ConfigForModel(const config::ModelConfig& model, const std::string& origin);

// HF's RoFormerSinusoidalPositionalEmbedding table [max_pos, d] (float64 math, cast to float32).
std::vector<float> HfSinusoidalTable(int max_pos, int d);

// Reads DIR/config.json and DIR/model.safetensors (or a sharded model.safetensors.index.json) and
// builds a model (tp = 1). Every problem throws Error naming the file and tensor.
std::unique_ptr<RoFormerModel> LoadHfModel(const std::string& dir, uint64_t seed,
                                           HfImportReport* report = nullptr,
                                           bool with_optimizer_state = false);

// Writes DIR/config.json and DIR/model.safetensors loadable by HF RoFormerForMaskedLM (model must
// be tp = 1). `dropped` receives the names not exported (sop.*).
void ExportHfModel(const RoFormerModel& model, const std::string& dir,
                   std::vector<std::string>* dropped = nullptr);

}  // namespace roformer
