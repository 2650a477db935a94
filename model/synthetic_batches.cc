#include "model/synthetic_batches.h"

#include <algorithm>

namespace roformer {
namespace {

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

void SyntheticBatchSource::Fill(int64_t first, int count, bool eval, Batch* out) {
  const int L = seq_len_;
  out->batch = count;
  out->seq_len = L;
  out->input_ids.assign(static_cast<size_t>(count) * L, 0);
  out->token_type_ids.assign(out->input_ids.size(), 0);
  out->attention_mask.assign(out->input_ids.size(), 0);
  out->mlm_positions.clear();
  out->mlm_labels.clear();
  out->sop_labels.assign(sop_ ? count : 0, 0);
  out->sample_index.resize(count);
  // Ids 0..105 hold the Chinese-BERT specials and [unusedN]; draw real tokens above them.
  const int lo = std::min(106, vocab_ - 1);
  for (int b = 0; b < count; ++b) {
    uint64_t s = SplitMix(seed_ ^ (eval ? 0xe7a1ull << 40 : 0) ^ static_cast<uint64_t>(first + b));
    out->sample_index[b] = first + b;
    // Lengths between L/2 and L so padding is exercised.
    const int len = L / 2 + static_cast<int>(SplitMix(s) % (L / 2 + 1));
    const int split = 1 + len / 2;
    for (int t = 0; t < len; ++t) {
      const size_t i = static_cast<size_t>(b) * L + t;
      s = SplitMix(s);
      int id = lo + static_cast<int>(s % static_cast<uint64_t>(vocab_ - lo));
      out->input_ids[i] = id;
      out->attention_mask[i] = 1;
      out->token_type_ids[i] = t >= split ? 1 : 0;
      if (t > 0 && (s >> 32) % 100 < 15) {
        out->mlm_positions.push_back(static_cast<int32_t>(i));
        out->mlm_labels.push_back(id);
        out->input_ids[i] = std::min(103, vocab_ - 1);  // [MASK] in the Chinese BERT vocab
      }
    }
    if (sop_) out->sop_labels[b] = static_cast<int32_t>(SplitMix(s) & 1);
  }
}

}  // namespace roformer
