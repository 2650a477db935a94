// Model inputs for CLUE fine-tuning: Example (data/clue/clue_tasks.h) -> token-id sequences, per
// task as the bert4keras CLUE baseline builds them (seeds.md §5.2). Lengths count [CLS]/[SEP].
//   single sentence (TNEWS, IFLYTEK)  [CLS] text_a [SEP], text cut at the end to max_len.
//   CLUEWSC2020                       the same on WscMarkedText(ex): span1 wrapped in "_",
//                                     span2 in "[" "]" (clue.py WscProcessor).
//   pair (AFQMC, CMNLI, OCNLI)        [CLS] text_a [SEP] text_b [SEP]; while too long, the last
//                                     token of the longer text is dropped (ties: text_a), i.e.
//                                     bert4keras truncate_sequences(maxlen, -2, a, b).
//   CSL                               the pair (keywords joined by "；", abstract).
//   C3 (per choice)                   [CLS] passage [SEP] question [SEP] choice [SEP], passage =
//                                     its lines joined by "||"; truncate_sequences(maxlen, -2,
//                                     choice, question, passage): the longest loses its last token
//                                     (ties in that order).
//   ChID (per candidate)              [CLS] candidate [SEP] left [B] right [SEP]: the target blank
//                                     is one marker token B ([unused1], the baseline's; [MASK]
//                                     when the vocab has no [unused1]), every other "#idiom…#"
//                                     blank of the passage is 4 x [MASK], and the text is cut
//                                     around the target blank (each side keeps half the budget,
//                                     a short side's leftover goes to the other).
//   CMRC2018 (per window)             [CLS] question [SEP] context-window [SEP]; the question is
//                                     cut to max_query_len tokens, windows of max_len - |q| - 3
//                                     context tokens start every doc_stride tokens until one
//                                     reaches the end of the context. Training label: the token
//                                     span of the first locatable answer when it lies wholly in
//                                     the window, else (0, 0) = [CLS] (the baseline's labels).
// Segment ids: 0 for the first text, `pair_segment_b` for everything after the first [SEP]
// (the baseline uses 0 throughout).
#pragma once

#include <cstdint>
#include <vector>

#include "data/clue/clue_tasks.h"
#include "data/tokenizer/tokenizer.h"

namespace roformer {

struct FeatureOptions {
  int max_len = 128;
  int pair_segment_b = 0;
  int doc_stride = 128;    // CMRC2018 window step (tokens)
  int max_query_len = 64;  // CMRC2018
};

struct Feature {
  int64_t example = 0;  // index into the examples the features were built from
  // One sequence for classification and span tasks, one per choice for multiple choice.
  std::vector<std::vector<int32_t>> ids, types;
  int label = -1;  // class index / choice index (-1: unlabelled)

  // CMRC2018 window.
  int start = 0, end = 0;  // answer token positions (inclusive) in ids[0]; 0/0 = not in window
  bool has_answer = false;
  // Per position of ids[0]: the context code-point span [char_begin, char_end) of a context token;
  // -1 for [CLS], question and [SEP] positions.
  std::vector<int32_t> char_begin, char_end;
};

struct FeatureStats {
  int64_t examples = 0, features = 0, sequences = 0;
  int64_t truncated = 0;            // examples whose text was cut to fit max_len
  int64_t max_tokens = 0;           // longest sequence built
  int64_t windows_with_answer = 0;  // CMRC2018
  int64_t answers_not_in_any_window = 0;
};

// Builds the features of `examples` for `task` (Error for a configuration that cannot fit: a
// max_len too small for the fixed tokens). CMRC2018 gives one feature per window (possibly several
// per example); every other task exactly one per example, in order.
std::vector<Feature> BuildFeatures(const ClueTaskInfo& task, const std::vector<Example>& examples,
                                   const Tokenizer& tokenizer, const FeatureOptions& opt,
                                   FeatureStats* stats = nullptr);

// The marker token of the target ChID blank in `vocab` ([unused1], else [MASK]).
int ChidBlankTokenId(const Vocab& vocab);

// Effective CMRC2018 window step for a max_len when the configured one is 0: max_len / 4
// (128 at 512, the baseline's stride), at least 1.
int DefaultDocStride(int max_len);

}  // namespace roformer
