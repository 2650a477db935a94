// CLUE submission files: writers, a reader (for `roformer evaluate`) and a validator.
//
// Formats (CLUE submission notes, 2021-09-04; clue-and-reference.md §1.1; FewCLUE scripts):
//   - classification (afqmc, tnews, iflytek, cmnli, ocnli, cluewsc2020, csl): JSON-lines, one
//     {"id": <id>, "label": "<label string>"} per test row, in test-file order. TNEWS lines also
//     carry "label_desc": "" (CLUE run_classifier.py does this). Labels are strings: the scorer
//     compares the "label" value with the gold string, so 1 and "1" differ.
//   - c3: JSON-lines {"id": <id>, "label": <choice index>}.
//   - chid: CLUE format (ids "#idiom000123#") is one JSON object {"#idiom000123#": <index>, ...};
//     FewCLUE single-blank format is JSON-lines {"id": <id>, "answer": <index>}
//     (chidf_predict.json).
//   - cmrc2018: one JSON object {"<qid>": "<answer text>", ...}.
// Ids are written as JSON integers when the Example's id was an integer (or a line index), else as
// strings.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/clue/clue_tasks.h"

namespace roformer {

// Writes predictions (label index for classification, choice index for c3/chid) for `examples`,
// one per example in order. Error for cmrc2018 (use WriteCmrc2018Submission), a size mismatch or
// an out-of-range prediction.
void WriteClueSubmission(const ClueTaskInfo& task, const std::vector<Example>& examples,
                         const std::vector<int>& predictions, const std::string& path);
// answers[i] is the predicted text of examples[i] (keyed by examples[i].qid).
void WriteCmrc2018Submission(const std::vector<Example>& examples,
                             const std::vector<std::string>& answers, const std::string& path);

struct SubmissionEntry {
  std::string id;
  bool id_is_int = false;
  int label = -1;    // label index (classification: index of the label string) or choice index
  std::string text;  // cmrc2018 answer text
  int64_t line = 0;  // 1-based line (JSON-lines formats); 0 for object formats
};

struct ClueSubmission {
  bool object_format = false;  // cmrc2018 / CLUE-format chid
  std::vector<SubmissionEntry> entries;
};

// Parses and checks a submission file against the task's format: every entry well-formed, ids
// unique, classification labels are strings from the task's label set, choice indices are
// non-negative integers. Error "file:line: ..." on the first problem.
ClueSubmission ReadClueSubmission(const ClueTaskInfo& task, const std::string& path);

// ReadClueSubmission plus, when `expected` is given (the test examples the file answers), the
// checks CLUE's scorer relies on: one entry per example, ids equal to the examples' ids, in the
// same order for JSON-lines formats, and choice indices within each example's choices. Returns the
// number of entries; Error naming the first problem.
int64_t ValidateSubmission(const ClueTaskInfo& task, const std::string& path,
                           const std::vector<Example>* expected = nullptr);

}  // namespace roformer
