// CLUE metrics: accuracy, and CMRC2018 EM/F1 following the official evaluation script
// (ymcui/cmrc2018 squad-style-data/cmrc2018_evaluate.py, "v5 - special"), transcribed from its
// rules (clue-and-reference.md §1.1):
//   - text is lower-cased and stripped first;
//   - mixed segmentation: every CJK char in [U+4E00, U+9FA5] and every char of the punctuation
//     list is its own token; the runs of other characters in between go through nltk's
//     word_tokenize (approximated here, see CmrcWordTokenize);
//   - with punctuation removal (used by F1) punctuation chars are dropped *without* ending the
//     current run, so "abc-def" is one token "abcdef";
//   - F1 = max over reference answers of the F1 of the longest common *contiguous* token run
//     (the script's find_lcs is a longest common substring, not subsequence);
//   - EM = 1 when some reference equals the prediction after lower/strip/punctuation removal;
//   - corpus EM/F1 = 100 * mean over questions (a question without prediction counts 0 there).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace roformer {

// Fraction of positions where pred == gold, over positions with gold >= 0 (unlabelled rows are
// skipped). 0 when there is none. Sizes must match (Error otherwise).
double Accuracy(const std::vector<int>& pred, const std::vector<int>& gold);

// The script's punctuation list (code points). Note the list contains the two-character string
// "……", which can never equal a single character, so U+2026 '…' is *not* removed; we keep that.
bool IsCmrcPunctuation(char32_t c);
// Python 2 unicode.lower().strip() as used by the script. Lower-casing covers ASCII, Latin-1,
// Latin Extended-A pairs, Greek, Cyrillic and full-width Latin (Python's full Unicode table is not
// reproduced; other scripts are unchanged - unspecified for Chinese answers in practice).
std::u32string CmrcNormalize(std::string_view utf8);
// Approximation of nltk.word_tokenize on a non-CJK run (nltk is not available to us):
//   split on whitespace; each of ?!;@#$%&()[]{}<>" is its own token; ',' and ':' are split off
//   unless followed by a digit (Treebank keeps "1,000"); "..." is one token; a final '.' of the run
//   is split off (Treebank splits the sentence-final period only). Not reproduced: punkt sentence
//   splitting, quote rewriting (" -> `` ''), contractions (n't, 's). These only matter for
//   answers with English sentences inside, and then only on F1.
std::vector<std::u32string> CmrcWordTokenize(const std::u32string& run);
// mixed_segmentation(in_str, rm_punc): tokens as UTF-8 strings.
std::vector<std::string> CmrcMixedSegmentation(std::string_view text, bool remove_punctuation);
// remove_punctuation(in_str): lower/strip, then punctuation chars removed (whitespace kept).
std::string CmrcRemovePunctuation(std::string_view text);

// Per-question scores in [0, 1]. With no reference answers both are 0 (the script would fail).
double CmrcF1(const std::vector<std::string>& answers, std::string_view prediction);
double CmrcExactMatch(const std::vector<std::string>& answers, std::string_view prediction);

struct CmrcScore {
  double em = 0;  // percent
  double f1 = 0;  // percent
  int64_t count = 0;
};
// answers[i] are the references of question i, predictions[i] its predicted text.
CmrcScore CmrcEvaluate(const std::vector<std::vector<std::string>>& answers,
                       const std::vector<std::string>& predictions);

}  // namespace roformer
