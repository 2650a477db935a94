// Progressive growth of a pretraining checkpoint: small model -> larger model computing the same
// function (anchors-growth.md §1, §3), as a pure transform of LOGICAL tensors (global shapes, the
// form LoadCheckpoint returns and SaveCheckpoint writes), deterministic in the seed and identical
// on every rank. Width first (growth_width.h, at the source depth), then depth (growth_depth.h,
// at the target width); Adam moments follow growth_optimizer_state.h, the step count is kept by
// the caller (TrainState is untouched).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/growth/growth_recipe.h"
#include "runtime/checkpoint.h"
#include "runtime/config.pb.h"
#include "runtime/param_store.h"

namespace roformer {

struct GrowthOptions {
  uint64_t seed = 0;
  // Std of the zero-sum random split Δ in units of the target's initializer_range (LEMON: 0.1);
  // 0 = the symmetric split (copies then never diverge without dropout: avoid for training).
  double noise_scale = 0.1;
  // Layer insertion positions (growth_depth.h); empty with more target layers = append at the top.
  std::vector<int> insert_positions;
  // Target tensor-parallel size: the word embeddings / decoder bias are padded to 128·tp rows.
  int tp = 1;
};

struct GrowthResult {
  std::vector<LoadedTensor> tensors;  // parameters (+ ADAM_M / ADAM_V when the source had them)
  config::ModelConfig model;          // the target config, vocab_size resolved
  std::vector<std::string> notes;     // the plan, one line each (for logs)
};

// Checks `to` against `from` (see PlanWidthGrowth and GrowDepth for the rules; target
// vocab_size 0 = the source's) and grows. Throws Error with the offending field/tensor.
GrowthResult GrowCheckpoint(const std::vector<LoadedTensor>& tensors,
                            const config::ModelConfig& from, const config::ModelConfig& to,
                            const GrowthOptions& opt);

// Writes a growth result as a checkpoint under `root` (tp = 1 shards of the logical tensors, the
// target's vocab padding, Adam m/v when the result has them) with `cfg` (its model = res.model)
// and `st`. so.vocab.padded_size and so.with_optimizer are filled in; the other SaveOptions
// (keep, vocab path/hash, metadata) are the caller's. Returns the committed directory.
std::string SaveGrowthResult(const std::string& root, const GrowthResult& res,
                             const config::Config& cfg, const TrainState& st, SaveOptions so);

// CRC32C over the names, kinds, shapes and values of `tensors` in order: equal on every rank of a
// distributed growth (the growth is a pure function of the checkpoint and the seed).
uint32_t GrowthResultHash(const GrowthResult& res);

// ---- conversions ----
GrowthTensors GrowthTensorsFromLoaded(const std::vector<LoadedTensor>& tensors);
std::vector<LoadedTensor> LoadedFromGrowthTensors(const GrowthTensors& tensors);
// Every tensor of a tp = 1 store (parameters, and Adam m/v when `with_optimizer`).
std::vector<LoadedTensor> LoadedFromStore(const ParamStore& store, bool with_optimizer);
// Copies logical tensors into a tp = 1 store. Tensors whose leading dim is a padded vocab may
// differ in row count (another tp's padding): the common rows are copied, the store's extra rows
// zeroed, and dropped rows must be zero. Throws Error for a missing tensor or another mismatch.
void LoadedIntoStore(const std::vector<LoadedTensor>& tensors, ParamStore* store,
                     bool with_optimizer);

}  // namespace roformer
