#include "model/finetune_batch.h"

#include <algorithm>

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

MicroBatchDropout FinetuneDropout(const config::FinetuneConfig& cfg, bool train, uint64_t step,
                                  uint32_t micro, int hidden) {
  MicroBatchDropout d;
  d.encoder.enabled = train;
  d.encoder.seed = cfg.seed();
  d.encoder.step = step;
  d.encoder.micro = micro;
  if (train)
    d.head = HeadDropoutSpec(cfg.head_dropout(), cfg.seed(),
                             DropoutStreamId(step, micro, 0xFFFFu, 100), hidden);
  return d;
}

}  // namespace roformer
