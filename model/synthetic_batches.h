// Synthetic pretraining batches (uniform random tokens, 15% masked, random SOP labels) for
// benchmarks and tests that need no corpus. A pure function of (seed, sample index).
#pragma once

#include "model/trainer.h"

namespace roformer {

class SyntheticBatchSource : public BatchSource {
 public:
  SyntheticBatchSource(int vocab_size, int seq_len, uint64_t seed, bool sop = true)
      : vocab_(vocab_size), seq_len_(seq_len), seed_(seed), sop_(sop) {}
  void Fill(int64_t first, int count, bool eval, Batch* out) override;
  int64_t eval_samples_available() const override { return 1 << 20; }

 private:
  int vocab_, seq_len_;
  uint64_t seed_;
  bool sop_;
};

}  // namespace roformer
