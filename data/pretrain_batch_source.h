// The trainer's BatchSource over a prepared corpus: training batches from the train documents,
// held-out batches from the eval documents, both pure functions of the sample index.
#pragma once

#include <memory>
#include <string>

#include "data/corpus_shards.h"
#include "data/pretrain_samples.h"
#include "model/trainer.h"

namespace roformer {

// The sample options a pretraining config implies (train.seq_len, train.mask_prob, train.sop,
// train.seed, data.pack_documents); callers that evaluate at another length or seed override them.
PretrainOptions PretrainOptionsFromConfig(const config::Config& cfg);

class PretrainBatchSource : public BatchSource {
 public:
  // Keeps `corpus` alive. The held-out stream is empty when the corpus has no eval documents.
  PretrainBatchSource(std::shared_ptr<ShardedCorpus> corpus, const Vocab& vocab,
                      const PretrainOptions& options);
  void Fill(int64_t first, int count, bool eval, Batch* out) override;
  int64_t eval_samples_available() const override;
  uint64_t train_epoch_size() const { return train_->epoch_size(); }

 private:
  std::shared_ptr<ShardedCorpus> corpus_;
  std::unique_ptr<PretrainSampleBuilder> train_, eval_;
};

// Resolves data.corpus for training: a directory written by `roformer data prepare` is used as is;
// text (a file or a directory of *.txt) is prepared once into `cache_dir` (reused when its manifest
// matches the vocab). Returns the opened corpus.
std::shared_ptr<ShardedCorpus> OpenOrPrepareCorpus(const std::string& corpus, const Tokenizer& tok,
                                                   const std::string& cache_dir,
                                                   double eval_fraction);

}  // namespace roformer
