// Corpus -> token shards: `roformer data prepare` tokenizes UTF-8 text once and writes binary token
// shards that the pretraining sampler (data/pretrain_samples.h) reads through mmap.
//
// Layout of a prepared corpus directory (all little-endian, written atomically: every file as
// NAME.tmp + fsync + rename inside OUT.tmp, then OUT.tmp renamed to OUT):
//   manifest.txt      "key value" lines: format, vocab identity (path, size, FNV-64 of the tokens),
//                     counts, eval split, and "file NAME BYTES CRC32C" for every other file.
//   index.bin         header {magic "RFCIDX01", u64 documents, sentences, tokens, shards} then
//                     u64 shard_doc_begin[shards+1], doc_sentence_begin[documents+1],
//                     sentence_token_begin[sentences+1] (global token offsets).
//   shard-NNNNN.bin   the token ids, uint16 when the vocab has <= 65535 tokens else uint32; a
//                     document never spans two shards.
// The output is a pure function of (input bytes in sorted-file order, vocab, options): preparing
// twice gives byte-identical files, whatever the thread count.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace roformer {

class Tokenizer;
class Vocab;

struct CorpusOptions {
  // true: every non-empty line is a document. false: documents are separated by blank lines and
  // every newline inside a document is also a sentence boundary.
  bool doc_per_line = true;
  // Fraction of documents held out for evaluation, chosen by a salted hash of the document index
  // (IsEvalDocument), so the split does not depend on the input order of other documents' text.
  double eval_fraction = 0.0;
  // A new shard starts before a document that would push the current one past this many tokens.
  uint64_t max_shard_tokens = uint64_t{1} << 28;
  // Replace an existing output directory (otherwise an existing OUT is an error).
  bool overwrite = false;
  // Tokenization threads (OpenMP); 0 = the OpenMP default. Output does not depend on it.
  int threads = 0;
};

struct CorpusStats {
  uint64_t input_files = 0;
  uint64_t input_bytes = 0;
  uint64_t documents = 0;          // documents with at least one token (written)
  uint64_t dropped_documents = 0;  // non-empty text that produced no token
  uint64_t empty_lines = 0;        // blank lines skipped (separators in blank-line mode included)
  uint64_t sentences = 0;
  uint64_t tokens = 0;
  uint64_t characters = 0;  // Unicode code points of the document text (valid UTF-8)
  uint64_t invalid_utf8_bytes = 0;
  uint64_t unk_tokens = 0;
  uint64_t max_document_tokens = 0;
  uint64_t eval_documents = 0;
  uint64_t train_documents = 0;
  uint64_t shards = 0;
  double seconds = 0;

  double unk_rate() const { return tokens ? static_cast<double>(unk_tokens) / tokens : 0.0; }
  double mb_per_second() const { return seconds > 0 ? input_bytes / 1e6 / seconds : 0.0; }
};

// Vocab identity stored in the manifest: FNV-1a 64 over "token\n" for every token in id order.
uint64_t VocabFingerprint(const Vocab& vocab);

// The input files: a regular file as is; a directory's *.txt files (not recursive), sorted by name.
// Throws Error naming the input when it is missing or a directory holds no *.txt.
std::vector<std::string> ListCorpusFiles(const std::vector<std::string>& inputs);

// Appends the sentences of `doc` (byte ranges, without the separating newline) to `out`. A sentence
// ends after 。！？!?；… plus any closing quotes/brackets that follow them (”’」』）)"), and, when
// newline_is_boundary, at every '\n'. Pieces holding only whitespace are dropped. Linear time.
void SplitSentences(std::string_view doc, bool newline_is_boundary,
                    std::vector<std::string_view>* out);

// Held-out split: true for a fraction `eval_fraction` of document indices (SplitMix64 of the index
// with a fixed salt, compared with the fraction). Pure function; the same on every rank.
bool IsEvalDocument(uint64_t doc, double eval_fraction);

// Tokenizes `inputs` (files or directories, see ListCorpusFiles) and writes a prepared corpus to
// out_dir. Throws Error naming the input when it yields no token, and naming out_dir when it exists
// (without options.overwrite) or cannot be written. Invalid UTF-8 is dropped and counted.
CorpusStats PrepareCorpus(const std::vector<std::string>& inputs, const Tokenizer& tokenizer,
                          const std::string& out_dir, const CorpusOptions& options = {});

struct CorpusManifest {
  std::string vocab_path;
  uint64_t vocab_size = 0;
  uint64_t vocab_fingerprint = 0;
  int token_bytes = 2;
  bool doc_per_line = true;
  double eval_fraction = 0;
  uint64_t documents = 0, sentences = 0, tokens = 0, characters = 0;
  uint64_t invalid_utf8_bytes = 0, unk_tokens = 0, eval_documents = 0, shards = 0;
  struct File {
    std::string name;
    uint64_t bytes = 0;
    uint32_t crc32c = 0;
  };
  std::vector<File> files;
};

// Read-only view of a prepared corpus (mmap). Cheap to share between threads: all accessors are
// const and touch no mutable state.
class ShardedCorpus {
 public:
  // Verifies sizes and (when verify_checksums) the CRC32C of every file; a missing, truncated or
  // corrupted file throws Error naming it.
  static ShardedCorpus Open(const std::string& dir, bool verify_checksums = true);

  ShardedCorpus(ShardedCorpus&&) noexcept;
  ShardedCorpus& operator=(ShardedCorpus&&) noexcept;
  ~ShardedCorpus();

  const std::string& dir() const { return dir_; }
  const CorpusManifest& manifest() const { return manifest_; }
  // Throws Error when `vocab` differs (size or fingerprint) from the one the corpus was built with.
  void CheckVocab(const Vocab& vocab) const;

  uint64_t num_documents() const { return manifest_.documents; }
  uint64_t num_sentences() const { return manifest_.sentences; }
  uint64_t num_tokens() const { return manifest_.tokens; }

  // Sentences of document d are [doc_sentence_begin(d), doc_sentence_begin(d+1)).
  uint64_t doc_sentence_begin(uint64_t d) const { return doc_sent_[d]; }
  // Tokens of sentence s are global positions [sentence_token_begin(s), sentence_token_begin(s+1)).
  uint64_t sentence_token_begin(uint64_t s) const { return sent_tok_[s]; }
  uint64_t doc_token_begin(uint64_t d) const { return sent_tok_[doc_sent_[d]]; }
  uint64_t doc_token_end(uint64_t d) const { return sent_tok_[doc_sent_[d + 1]]; }
  // First sentence of document d whose token range contains global position `pos`
  // (doc_token_begin(d) <= pos < doc_token_end(d)).
  uint64_t SentenceAt(uint64_t d, uint64_t pos) const;

  int32_t token(uint64_t pos) const;
  // Copies global positions [begin, end) (within one document) to out.
  void CopyTokens(uint64_t begin, uint64_t end, int32_t* out) const;

  bool IsEval(uint64_t doc) const { return IsEvalDocument(doc, manifest_.eval_fraction); }
  const std::vector<uint32_t>& train_documents() const { return train_docs_; }
  const std::vector<uint32_t>& eval_documents() const { return eval_docs_; }

 private:
  ShardedCorpus() = default;
  struct Mapping;
  const void* ShardData(uint64_t pos, uint64_t* shard_begin) const;

  std::string dir_;
  CorpusManifest manifest_;
  std::vector<std::unique_ptr<Mapping>> maps_;  // [0] = index, then shards
  const uint64_t* shard_doc_ = nullptr;
  const uint64_t* doc_sent_ = nullptr;
  const uint64_t* sent_tok_ = nullptr;
  std::vector<uint64_t> shard_tok_begin_;  // shards+1 global offsets
  std::vector<const void*> shard_data_;
  std::vector<uint32_t> train_docs_, eval_docs_;
};

}  // namespace roformer
