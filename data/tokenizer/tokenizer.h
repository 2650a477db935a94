// BERT tokenization (google-research/bert tokenization.py + HF BertTokenizer differences, see
// clue-and-reference.md §4.1): BasicTokenizer (clean text, CJK split, NFC, lower-case + strip
// accents, punctuation split) followed by WordpieceTokenizer (greedy longest match, "##", [UNK],
// max 100 chars per word). Offsets are in Unicode code points of the input text.
#pragma once

#include <cstdint>
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
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int> ids_;
  std::string path_;
};

struct Token {
  std::string text;  // the wordpiece, e.g. "##ing"
  int id = 0;
  int begin = 0;     // code-point offsets [begin, end) into the original input
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
  Vocab vocab_;
  bool do_lower_case_;
};

}  // namespace roformer
