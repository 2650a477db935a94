#include "model/finetune_batch.h"

#include <glog/logging.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <algorithm>
#include <cmath>

#include "model/heads/head_params.h"

namespace roformer {

void PackFeatureRows(const std::vector<Feature>& feats, const std::vector<int64_t>& idx,
                     size_t begin, size_t end, int32_t pad, Batch* batch,
                     std::vector<int32_t>* offsets) {
  int rows = 0, L = 1;
  for (size_t i = begin; i < end; ++i) {
    const Feature& f = feats[idx[i]];
    rows += static_cast<int>(f.ids.size());
    for (const auto& seq : f.ids) L = std::max(L, static_cast<int>(seq.size()));
  }
  batch->batch = rows;
  batch->seq_len = L;
  const size_t n = static_cast<size_t>(rows) * L;
  batch->input_ids.assign(n, pad);
  batch->token_type_ids.assign(n, 0);
  batch->attention_mask.assign(n, 0);
  offsets->assign(1, 0);
  int r = 0;
  for (size_t i = begin; i < end; ++i) {
    const Feature& f = feats[idx[i]];
    for (size_t q = 0; q < f.ids.size(); ++q, ++r) {
      const size_t o = static_cast<size_t>(r) * L;
      std::copy(f.ids[q].begin(), f.ids[q].end(), batch->input_ids.begin() + o);
      std::copy(f.types[q].begin(), f.types[q].end(), batch->token_type_ids.begin() + o);
      std::fill_n(batch->attention_mask.begin() + o, f.ids[q].size(), 1);
    }
    offsets->push_back(r);
  }
}

EncodedMicroBatch EncodeMicroBatch(RoFormerModel* model, const config::FinetuneConfig& cfg,
                                   const Batch& batch, bool train, uint64_t step, uint32_t micro,
                                   std::vector<float>* d_seq_buf) {
  const int hidden = model->dims().hidden;
  DropoutContext dc;
  dc.enabled = train;
  dc.seed = cfg.seed();
  dc.step = step;
  dc.micro = micro;
  EncodedMicroBatch e;
  e.seq = model->EncoderForward(batch, dc);
  if (train) {
    e.head = HeadDropoutSpec(cfg.head_dropout(), cfg.seed(),
                             DropoutStreamId(step, micro, 0xFFFFu, 100), hidden);
    const size_t n = static_cast<size_t>(batch.batch) * batch.seq_len * hidden;
    if (d_seq_buf->size() < n) d_seq_buf->resize(n);
    e.d_seq = d_seq_buf->data();
  }
  return e;
}

FinetuneSteps PlanFinetuneSteps(const config::FinetuneConfig& cfg, int64_t examples) {
  FinetuneSteps s;
  s.per_epoch = (examples + cfg.batch() - 1) / cfg.batch();
  s.total = s.per_epoch * cfg.epochs();
  s.lr.peak = cfg.lr();
  s.lr.total_steps = std::max<int64_t>(1, s.total);
  s.lr.warmup_steps = static_cast<int64_t>(std::llround(cfg.warmup_proportion() * s.total));
  s.lr.decay = cfg.lr_decay();
  return s;
}

void ApplyRunTimeModelOptions(const config::FinetuneConfig& cfg, config::ModelConfig* trained) {
  if (!cfg.has_model()) return;
  const config::ModelConfig& want = cfg.model();
  if (want.has_attention_recompute()) trained->set_attention_recompute(want.attention_recompute());
  std::vector<const google::protobuf::FieldDescriptor*> set;
  want.GetReflection()->ListFields(want, &set);
  for (const auto* f : set) {
    if (f->name() == "attention_recompute") continue;
    LOG(WARNING) << "model." << f->name()
                 << " is ignored with --init: the checkpoint's model config is used (only "
                    "model.attention_recompute may change)";
  }
}

}  // namespace roformer
