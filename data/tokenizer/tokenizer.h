// BERT tokenization (google-research/bert tokenization.py + HF BertTokenizer differences, see
// clue-and-reference.md §4.1): BasicTokenizer (clean text, CJK split, NFC, lower-case + strip
// accents, punctuation split) followed by WordpieceTokenizer (greedy longest match, "##", [UNK],
// max 100 chars per word). Offsets are in Unicode code points of the input text (after dropping
// invalid UTF-8 bytes): every normalized code point keeps the span of the original code point it
// came from (as in HF's fast tokenizer; NFC composites span all their parts, stripped accents and
// deleted characters nothing), a wordpiece spans [min, max) over its code points, and an [UNK]
// spans its whole word. Semantics = HF slow BertTokenizer, incl. its differences from Google
// (NFC; all C* categories deleted, not only Cc/Cf); literal "[CLS]"-style strings in the text are
// NOT treated as special tokens (Google's behaviour). Details: tokenizer.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace roformer {

class Vocab {
 public:
  // Loads vocab.txt: one token per line (split on '\n' only; U+2028 is a token), id = line number.
  // Throws Error naming the file when missing, empty or with duplicate tokens.
  static Vocab Load(const std::string& path);
  static Vocab FromTokens(std::vector<std::string> tokens);

  int size() const { return static_cast<int>(tokens_.size()); }
  // -1 when absent.
  int Find(std::string_view token) const;
  const std::string& token(int id) const { return tokens_.at(id); }
  const std::vector<std::string>& tokens() const { return tokens_; }
  const std::string& path() const { return path_; }

  // Special ids (throw Error when the vocab lacks them).
  int unk_id() const;
  int cls_id() const;
  int sep_id() const;
  int mask_id() const;
  int pad_id() const;

 private:
  void BuildIndex();  // throws Error on empty vocab / duplicate tokens

  std::vector<std::string> tokens_;
  // Open-addressing hash index over tokens_ (ids, -1 = empty slot): lookups by string_view with no
  // allocation, as WordPiece does one per candidate piece. Empty lines are kept as ids, not
  // indexed.
  std::vector<int32_t> index_;
  uint64_t index_mask_ = 0;
  size_t max_token_bytes_ = 0;
  std::string path_;
  friend class Tokenizer;
};

struct Token {
  std::string text;  // the wordpiece, e.g. "##ing"
  int id = 0;
  int begin = 0;  // code-point offsets [begin, end) into the original input
  int end = 0;
};

class Tokenizer {
 public:
  Tokenizer(Vocab vocab, bool do_lower_case = true);
  // Invalid UTF-8 bytes are dropped (counted in invalid_bytes if non-null), as Python's
  // decode(errors="ignore") does.
  std::vector<Token> Tokenize(std::string_view utf8, int64_t* invalid_bytes = nullptr) const;
  std::vector<int32_t> Encode(std::string_view utf8, int64_t* invalid_bytes = nullptr) const;
  const Vocab& vocab() const { return vocab_; }

 private:
  template <typename Sink>
  void Run(std::string_view utf8, int64_t* invalid_bytes, Sink&& sink) const;

  Vocab vocab_;
  bool do_lower_case_;
  int unk_id_ = 0;
  std::vector<int32_t> cjk_ids_;  // ids of U+3400..U+9FFF (the hot CJK fast path)
};

// BasicTokenizer only (clean, CJK split, NFC / lower + strip accents, punctuation split): calls
// fn(word) with each basic token in UTF-8. Used by the vocab builder.
void BasicTokenize(std::string_view utf8, bool do_lower_case,
                   const std::function<void(std::string_view word)>& fn,
                   int64_t* invalid_bytes = nullptr);

}  // namespace roformer
