// Model-only checkpoints for `roformer convert` / `roformer infer`: a thin adapter over
// runtime/checkpoint.h (the step-0 checkpoint of a model with no optimizer state). The HF <-> ours
// mapping itself lives in model/hf_interop.h so tests and other commands can reuse it.
#pragma once

#include <memory>
#include <string>

#include "model/roformer_model.h"

namespace roformer {

// Writes `model` (parameters only, step 0) as a checkpoint under root `dir`: dir/step_00000000/ +
// dir/latest. Any checkpoint reader (`roformer ckpt verify`, pretraining --init) accepts it.
void SaveModelCheckpoint(const RoFormerModel& model, const std::string& dir);

// Loads a checkpoint root or step directory into a new tp = 1 model (no optimizer state).
std::unique_ptr<RoFormerModel> LoadModelCheckpoint(const std::string& dir);

}  // namespace roformer
