// BERT/ALBERT-style pretraining samples (MLM + sentence-order prediction) from a prepared corpus.
//
// Every sample is a pure function of (options.seed, split, global sample index, corpus, options):
// no state is carried from one sample to the next (Megatron's per-sample seeded masking, anchors
// §1.10). Resuming needs only the number of consumed samples, and DP rank r of R builds rows
// [r*B/R, (r+1)*B/R) of global batch k as FillBatch(k*B + r*B/R, B/R) without talking to anyone.
//
// Index -> sample:
//  1. The training documents are cut into "chunks" of max_seq_len-3 tokens (a document of n tokens
//     has max(1, ceil(n/target)) chunks), so long documents are seen in proportion to their length.
//     An epoch is one pass over all chunks: index -> (epoch, position); position -> chunk through a
//     keyed Feistel permutation with cycle walking (key = seed, split, epoch), never a stored
//     shuffle.
//  2. From the chunk's first sentence, whole sentences are packed until the target length is
//     reached (optionally continuing into the next documents, pack_following_documents) (Google's
//     create_pretraining_data: target = max_seq_len-3, or with probability short_seq_prob a uniform
//     length in [2, target]). The pieces are split at a random sentence boundary into A and B; a
//     single piece is split at a random token boundary.
//  3. SOP (ALBERT): with probability 1/2 A and B are swapped (sop_label 1).
//  4. The pair is truncated to target tokens, one token at a time from the longer segment, from
//     the front or the back at random. [CLS] A [SEP] B [SEP], token types 0...0 1...1,
//     right-padded.
//  5. MLM: round(n * mlm_probability) (at least 1, at most max_predictions when > 0) of the n
//     non-special positions are chosen; 80% become [MASK], 10% a random non-special vocab id,
//     10% stay. [CLS]/[SEP]/[PAD]/[MASK]/[UNK] positions are never chosen. With whole_word_mask,
//     "##" continuation pieces are chosen together with the piece that starts their word.
// All randomness comes from Philox4x32-10 keyed by (seed, split) with the sample index as stream.
#pragma once

#include <cstdint>
#include <vector>

#include "data/corpus_shards.h"
#include "model/batch.h"

namespace roformer {

class Vocab;

struct PretrainOptions {
  int max_seq_len = 128;  // L, including [CLS] and the two [SEP]
  double mlm_probability = 0.15;
  int max_predictions = 0;  // cap on masked positions per sequence; 0 = none
  double short_seq_prob = 0.1;
  bool sop = true;               // false: never swap, sop_label always 0
  bool whole_word_mask = false;  // mask "##" pieces with the head of their word
  // When a document ends before the target length, continue with the sentences of the next
  // documents of the split (corpus order), like RoBERTa's FULL-SENTENCES. Off by default (Google's
  // create_pretraining_data packs within one document); worth turning on for corpora of
  // one-paragraph "documents" (the default corpus fills ~44% of L=128 and ~13% of L=512 without).
  bool pack_following_documents = false;
  uint64_t seed = 12345;
};

enum class SampleSplit { kTrain, kEval };

struct PretrainSample {
  uint64_t index = 0;
  uint32_t document = 0;                // corpus document index the sample came from
  std::vector<int32_t> input_ids;       // [L]
  std::vector<int32_t> token_type_ids;  // [L]
  std::vector<int32_t> attention_mask;  // [L]
  std::vector<int32_t> mlm_positions;   // positions in the sequence, ascending
  std::vector<int32_t> mlm_labels;      // original ids at those positions
  int32_t sop_label = 0;                // 1 = A and B were swapped
  int num_tokens = 0;                   // real (non-pad) positions
};

class PretrainSampleBuilder {
 public:
  // `corpus` must outlive the builder. Throws Error when the corpus was built with another vocab,
  // the split has no document, or the options are out of range.
  PretrainSampleBuilder(const ShardedCorpus* corpus, const Vocab& vocab, PretrainOptions options,
                        SampleSplit split = SampleSplit::kTrain);

  PretrainSample MakeSample(uint64_t index) const;
  // Rows b = 0..count-1 hold samples first_index + b; mlm_positions are flat b*L + t. Reuses the
  // batch's vectors (no reallocation once they have grown to size).
  void FillBatch(uint64_t first_index, int count, Batch* batch) const;

  // Samples per epoch (the number of chunks of the split's documents).
  uint64_t epoch_size() const { return chunk_begin_.back(); }
  const PretrainOptions& options() const { return options_; }

 private:
  // Writes row `row` (L entries at ids/types/mask) and appends MLM targets with position offset
  // row*L. Returns the document index.
  uint32_t Build(uint64_t index, int32_t* ids, int32_t* types, int32_t* mask,
                 std::vector<int32_t>* mlm_positions, std::vector<int32_t>* mlm_labels,
                 int32_t position_offset, int32_t* sop_label, int* num_tokens) const;
  uint64_t Permute(uint64_t x, uint64_t epoch) const;

  const ShardedCorpus* corpus_;
  PretrainOptions options_;
  SampleSplit split_;
  uint64_t key_;
  std::vector<uint32_t> docs_;         // the split's documents
  std::vector<uint64_t> chunk_begin_;  // prefix sums of chunks per document (docs_.size()+1)
  int cls_, sep_, mask_, pad_, unk_;
  std::vector<int32_t> random_ids_;    // replacement ids for the 10% "random token" case
  std::vector<uint8_t> special_;       // per vocab id: never selected for MLM
  std::vector<uint8_t> continuation_;  // per vocab id: "##" piece (whole-word masking)
  int perm_bits_ = 0;                  // Feistel domain 2^perm_bits_ >= epoch_size
};

}  // namespace roformer
