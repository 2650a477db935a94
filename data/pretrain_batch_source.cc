#include "data/pretrain_batch_source.h"

#include <glog/logging.h>

#include <filesystem>

#include "data/tokenizer/tokenizer.h"
#include "runtime/error.h"

namespace roformer {

PretrainOptions PretrainOptionsFromConfig(const config::Config& cfg) {
  PretrainOptions po;
  po.max_seq_len = cfg.train().seq_len();
  po.mlm_probability = cfg.train().mask_prob();
  po.sop = cfg.train().sop();
  po.seed = cfg.train().seed();
  po.pack_following_documents = cfg.data().pack_documents();
  return po;
}

PretrainBatchSource::PretrainBatchSource(std::shared_ptr<ShardedCorpus> corpus, const Vocab& vocab,
                                         const PretrainOptions& options)
    : corpus_(std::move(corpus)) {
  train_ =
      std::make_unique<PretrainSampleBuilder>(corpus_.get(), vocab, options, SampleSplit::kTrain);
  if (!corpus_->eval_documents().empty()) {
    eval_ =
        std::make_unique<PretrainSampleBuilder>(corpus_.get(), vocab, options, SampleSplit::kEval);
  }
}

void PretrainBatchSource::Fill(int64_t first, int count, bool eval, Batch* out) {
  const PretrainSampleBuilder* b = eval ? eval_.get() : train_.get();
  CHECK(b) << "no held-out documents";
  b->FillBatch(static_cast<uint64_t>(first), count, out);
}

int64_t PretrainBatchSource::eval_samples_available() const {
  return eval_ ? static_cast<int64_t>(eval_->epoch_size()) : 0;
}

std::shared_ptr<ShardedCorpus> OpenOrPrepareCorpus(const std::string& corpus, const Tokenizer& tok,
                                                   const std::string& cache_dir,
                                                   double eval_fraction) {
  namespace fs = std::filesystem;
  if (corpus.empty()) {
    Fail(
        "data.corpus is empty: set it to a text file, a directory of .txt files, or a directory "
        "written by `roformer data prepare` (README command 1 builds a default corpus)");
  }
  if (!fs::exists(corpus)) Fail("data.corpus = ", corpus, ": no such file or directory");
  if (fs::is_directory(corpus) && fs::exists(fs::path(corpus) / "manifest.txt")) {
    auto c = std::make_shared<ShardedCorpus>(ShardedCorpus::Open(corpus));
    c->CheckVocab(tok.vocab());
    return c;
  }
  // Text input: reuse an earlier preparation in the cache when it matches the vocab.
  if (fs::exists(fs::path(cache_dir) / "manifest.txt")) {
    try {
      auto c = std::make_shared<ShardedCorpus>(ShardedCorpus::Open(cache_dir));
      c->CheckVocab(tok.vocab());
      if (c->manifest().eval_fraction == eval_fraction) {
        LOG(INFO) << "using prepared corpus " << cache_dir;
        return c;
      }
    } catch (const Error& e) {
      LOG(WARNING) << "re-preparing " << cache_dir << ": " << e.what();
    }
  }
  CorpusOptions opt;
  opt.eval_fraction = eval_fraction;
  opt.overwrite = true;
  LOG(INFO) << "preparing corpus " << corpus << " -> " << cache_dir;
  CorpusStats st = PrepareCorpus({corpus}, tok, cache_dir, opt);
  LOG(INFO) << "corpus: " << st.documents << " documents (" << st.train_documents << " train, "
            << st.eval_documents << " held out), " << st.sentences << " sentences, " << st.tokens
            << " tokens, " << st.characters << " characters, [UNK] rate " << st.unk_rate();
  auto c = std::make_shared<ShardedCorpus>(ShardedCorpus::Open(cache_dir));
  return c;
}

}  // namespace roformer
