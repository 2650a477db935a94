// Sentence embeddings from a pretrained encoder, the input side of BERT-whitening (seeds.md §3;
// bojone/BERT-whitening chn/utils.py `get_encoder`).
//
// A sentence becomes [CLS] wordpieces [SEP] (truncated to max_len tokens, segment ids 0), and is
// pooled from one dropout-free encoder pass:
//   cls             last layer at position 0 (the post's P1)
//   pooler          tanh(W_p h_cls + b_p) with the SOP head's pooler (sop.pooler.dense.*). NOTE:
//                   the post's P2 is bert4keras `with_pool='linear'`, i.e. the NSP pooler *without*
//                   tanh; we keep the tanh because that is the function our SOP head trained.
//   last-avg        mean of the last layer over the real tokens (incl. [CLS]/[SEP], as the
//                   reference's GlobalAveragePooling1D with the padding mask)  (P3)
//   first-last-avg  mean over real tokens of (first + last) / 2, where "first" is the output of the
//                   FIRST TRANSFORMER LAYER, hidden_states[1] of Infer(), not the embedding output
//                   hidden_states[0]: the reference takes `Transformer-0-FeedForward-Norm`, the
//                   first layer's output (the post notes BERT-flow's "last2avg" is this) (P4).
// "last" is the encoder's sequence output, so with pre_ln it is after the final LayerNorm.
//
// Speed: sentences are sorted by token length (stable) and cut into batches, each padded only to
// its own longest sentence, then results are written back in input order. Padding never leaks into
// an embedding: attention masks padded keys and the averages count only attention_mask = 1 rows,
// so a sentence embeds the same alone or in any batch (tested to 1e-5). Threads: the model's
// OpenMP/BLAS threads. Under mpirun, EmbedDistributed gives each DP rank a contiguous slice and
// all-gathers the rows.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer/tokenizer.h"
#include "model/roformer_model.h"

namespace roformer {
class Communicator;
}

namespace roformer::sts {

enum class Pooling { kCls, kPooler, kLastAvg, kFirstLastAvg };

// "cls", "pooler", "last-avg", "first-last-avg" (Error listing them otherwise).
Pooling ParsePooling(std::string_view name);
const char* PoolingName(Pooling p);

// Pools one padded batch. first: hidden_states[1] [B*L, H] (only read by kFirstLastAvg, may be
// null otherwise); last: sequence output [B*L, H]; mask [B*L] (1 = real token; every row needs at
// least one); pooler_w [H, H] (HF layout, out x in) and pooler_b [H] only read by kPooler.
// out: [B, H].
void PoolBatch(Pooling p, const float* first, const float* last, const int32_t* mask, int B, int L,
               int H, const float* pooler_w, const float* pooler_b, float* out);

struct EmbedderOptions {
  Pooling pooling = Pooling::kFirstLastAvg;
  int max_len = 64;  // tokens incl. [CLS] and [SEP]; clamped to max_position_embeddings
  int batch = 64;    // sentences per forward pass
};

struct EmbedStats {
  int64_t sentences = 0;
  int64_t tokens = 0;     // real tokens fed (incl. [CLS]/[SEP])
  int64_t padded = 0;     // B * L summed over batches
  int64_t truncated = 0;  // sentences cut to max_len
  int64_t batches = 0;
  double tokenize_s = 0, forward_s = 0, pool_s = 0;
};

class Embedder {
 public:
  // Non-owning; model and tokenizer must outlive the embedder. Error when the pooling needs
  // tensors the model lacks, or max_len < 2 / batch < 1.
  Embedder(RoFormerModel* model, const Tokenizer* tokenizer, const EmbedderOptions& opt);

  int dim() const;
  int max_len() const { return max_len_; }
  const EmbedderOptions& options() const { return opt_; }
  // [CLS] wordpieces [SEP], wordpieces truncated so the whole is at most max_len().
  std::vector<int32_t> Encode(std::string_view text, bool* truncated = nullptr) const;

  // Embeds already-encoded sequences (each non-empty, at most max_position_embeddings long) into
  // out [n, dim], in input order.
  void EmbedIds(const std::vector<std::vector<int32_t>>& seqs, float* out);
  // Tokenizes and embeds; [n, dim] row-major.
  std::vector<float> Embed(const std::vector<std::string>& sentences);

  // Statistics accumulated over every call.
  const EmbedStats& stats() const { return stats_; }
  void ResetStats() { stats_ = EmbedStats{}; }

 private:
  RoFormerModel* model_;
  const Tokenizer* tok_;
  EmbedderOptions opt_;
  int max_len_ = 0;
  int cls_id_ = 0, sep_id_ = 0, pad_id_ = 0;
  EmbedStats stats_;
  std::vector<std::vector<float>> hidden_;  // scratch for first-last-avg
  std::vector<float> seq_;
};

// Every rank of `dp` calls it with the same sentences: rank r embeds rows [r*s, min(n,(r+1)*s)),
// s = ceil(n / size), and the slices are all-gathered, so every rank returns all n rows in order.
// dp == nullptr or size 1: plain Embed.
std::vector<float> EmbedDistributed(Embedder& embedder, const std::vector<std::string>& sentences,
                                    Communicator* dp);

// A tp = 1 encoder restored from a checkpoint root or step directory (no optimizer state) plus its
// tokenizer. vocab "" takes the path the checkpoint recorded; the vocab must have the checkpoint's
// vocab_size entries and, when the checkpoint recorded a tokens hash, the same tokens (Error
// naming both otherwise).
struct Encoder {
  std::unique_ptr<RoFormerModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string ckpt_dir;    // the step directory read
  std::string vocab_path;  // the vocab used
  int64_t step = 0;
};
Encoder LoadEncoder(const std::string& ckpt, const std::string& vocab, bool do_lower_case = true);

// Sentences of a file: an STS file (name ending ".tsv": text1 then text2 of every pair, in order,
// via ReadStsFile) or plain text (one sentence per non-blank line, CR stripped). Error naming the
// file when unreadable or without sentences.
std::vector<std::string> ReadSentences(const std::string& path);

}  // namespace roformer::sts
