// WordPiece vocabulary builder (`roformer vocab build`).
//
// Algorithm (deterministic; every tie is broken by byte-wise lexicographic order):
//  1. Every line of the corpus (lines end at '\n' only) goes through the BERT BasicTokenizer
//     (same normalization as Tokenizer, lower-cased unless disabled); word counts are collected.
//  2. Special tokens first. With size >= kChineseLayoutMinSize the Google Chinese BERT layout:
//     [PAD]=0, [unused1..99]=1..99, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103; otherwise just
//     [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4).
//  3. Every character seen, by descending frequency, then the "##" twin of each of them in the same
//     order (as far as the size allows; characters come first).
//  4. Multi-character pieces by count-based merging (BPE-style, WordPiece "##" notation): each word
//     of at most 100 characters (longer ones are [UNK] for the tokenizer) is a symbol sequence
//     "c1" "##c2" "##c3"...; the most frequent adjacent pair (weighted by word count; ties -> the
//     lexicographically smallest merged token) is merged everywhere, its merged token ("ab",
//     "##ab") is appended if new, and this repeats until the vocab has `size` tokens or no pair
//     occurs at least `min_pair_count` times.
// Pair counts are maintained incrementally (only the words containing the merged pair are
// re-counted) with a lazily invalidated max-heap, so a merge costs time proportional to the number
// of words it touches.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace roformer {

struct VocabBuildOptions {
  int size = 21128;
  bool do_lower_case = true;
  int64_t min_pair_count = 2;
};

inline constexpr int kChineseLayoutMinSize = 1000;

class VocabBuilder {
 public:
  explicit VocabBuilder(VocabBuildOptions options);
  // Adds one line of text (or several, separated by '\n').
  void AddText(std::string_view text);
  // Adds a file, or every regular file under a directory (recursively, in sorted path order).
  // Throws Error naming the path when it cannot be read.
  void AddPath(const std::string& path);
  // Returns the vocab (id order).
  std::vector<std::string> Build() const;
  // Writes Build() one token per line ('\n'); throws Error naming the file on failure.
  static void Write(const std::vector<std::string>& tokens, const std::string& path);

  int64_t num_lines() const { return lines_; }
  size_t num_distinct_words() const { return words_.size(); }

 private:
  VocabBuildOptions opt_;
  int64_t lines_ = 0;
  std::unordered_map<std::string, int64_t> words_;
};

}  // namespace roformer
