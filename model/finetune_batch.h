// Micro-batch construction shared by `roformer finetune` (model/finetune.cc) and `roformer
// multitask` (model/multitask_finetune.cc). Both must build the same rows and draw the same
// dropout streams for a micro-batch: their data-parallel parity tests compare against one process
// that way, and a task trained alone or in a multi-task run sees identical inputs.
#pragma once

#include <cstdint>
#include <vector>

#include "data/clue/clue_features.h"
#include "kernels/cpu/dropout.h"
#include "model/batch.h"
#include "model/lr_schedule.h"
#include "model/roformer_model.h"
#include "runtime/finetune.pb.h"

namespace roformer {

// Packs the sequences of feats[idx[begin]] .. feats[idx[end - 1]] into `batch`: one row per
// sequence (one per choice for multiple choice), right-padded with `pad` to the longest, attention
// mask 1 on the real tokens. `offsets` gets each feature's first row and, last, the row count.
void PackFeatureRows(const std::vector<Feature>& feats, const std::vector<int64_t>& idx,
                     size_t begin, size_t end, int32_t pad, Batch* batch,
                     std::vector<int32_t>* offsets);

// Runs the encoder over `batch` for one fine-tuning micro-batch: dropout (off when !train) from
// the encoder's streams keyed by (seed, step, micro), and `head` = the head's dropout (layer
// 0xFFFF, op 100 of the same step and micro). When training, `d_seq` points at `d_seq_buf` sized
// for the gradient w.r.t. the sequence output [rows * L, hidden] (grow-only); null otherwise.
struct EncodedMicroBatch {
  const float* seq = nullptr;
  float* d_seq = nullptr;
  DropoutSpec head;
};
EncodedMicroBatch EncodeMicroBatch(RoFormerModel* model, const config::FinetuneConfig& cfg,
                                   const Batch& batch, bool train, uint64_t step, uint32_t micro,
                                   std::vector<float>* d_seq_buf);

// Steps and learning-rate schedule of a fine-tuning run over `examples` training examples:
// ceil(examples / batch) steps per epoch, warmup_proportion of all steps, then lr_decay.
struct FinetuneSteps {
  int64_t per_epoch = 0;
  int64_t total = 0;
  LrSchedule lr;
};
FinetuneSteps PlanFinetuneSteps(const config::FinetuneConfig& cfg, int64_t examples);

// With --init the model config is the checkpoint's (`trained`), except for the options that only
// trade memory for compute and never change the parameters: model.attention_recompute set in
// `cfg` wins. Every other model.* field set in `cfg` is ignored with a warning naming it.
void ApplyRunTimeModelOptions(const config::FinetuneConfig& cfg, config::ModelConfig* trained);

}  // namespace roformer
