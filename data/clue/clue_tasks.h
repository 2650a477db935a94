// CLUE task registry and data readers (the data side of fine-tuning).
//
// Every reader produces the same `Example` struct; which fields are filled depends on the task
// (see the field comments). Formats follow shared/research/clue-and-reference.md §1 and
// shared/data/MANIFEST.md §2:
//   - classification files are JSON-lines, split on '\n' only (IFLYTEK text contains U+2028 inside
//     strings), a trailing '\r' is dropped (CLUE originals are sometimes CRLF), blank lines are
//     skipped, a missing final newline is fine;
//   - labels may be JSON strings ("108") or integers (108, FewCLUE style);
//   - OCNLI/CMNLI rows labelled "-" (no annotator majority) are dropped and counted;
//   - test files without labels give label -1;
//   - ids: the row's "id" field when present (AFQMC/OCNLI test, TNEWS, CSL, ...), else the 0-based
//     index of the row among the file's non-blank lines (what CLUE's run_classifier writes as the
//     submission id). WSC's "idx" is not unique and is kept separately in `wsc_idx`.
//   - C3 and CMRC2018 are single JSON documents; ChID is JSON-lines, FewCLUE single-blank format
//     (`content` string with one "#idiom#", int `answer`) or CLUE format (`content` list with
//     "#idiom000123#" blanks, answers in a separate {"#idiom000123#": idx} file).
// Any defect a user can cause throws roformer::Error naming "file:line: ..." (JSON-lines) or
// "file: ..." plus the JSON path (whole documents).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace roformer {

enum class ClueTaskType {
  kSingleSentence,  // text_a only (TNEWS, IFLYTEK, WSC with span fields)
  kSentencePair,    // text_a + text_b (AFQMC, CMNLI, OCNLI, CSL)
  kSpan,            // extractive span (CMRC2018)
  kMultipleChoice,  // one correct choice among candidates (C3, ChID)
};
const char* ClueTaskTypeName(ClueTaskType t);

// Which reader a task's files go through.
enum class ClueFormat { kSentence, kPair, kWsc, kCsl, kC3, kChid, kCmrc2018 };

struct ClueTaskInfo {
  std::string name;                  // canonical name ("cluewsc2020", "cmrc2018", ...)
  std::vector<std::string> aliases;  // also accepted by FindClueTask ("cluewsc", "wsc")
  ClueTaskType type;
  ClueFormat format;
  // Label strings in the official order; the label index of an Example indexes this list.
  // Empty for span / multiple-choice tasks (there the label is a choice index).
  std::vector<std::string> labels;
  // CLUE 1.1 submission file name, per CLUE's submission notes (2021-09-04 update): tasks whose
  // test set was renewed carry the version, "<task>11_predict.json" (tnews11, cluewsc11, c311,
  // chid11); OCNLI is "ocnli_50k_predict.json" (the leaderboard trains on 50k); the rest are
  // "<task>_predict.json". For FewCLUE-format ChID data the FewCLUE name is
  // `fewclue_submission_file` ("chidf_predict.json").
  std::string submission_file;
  std::string fewclue_submission_file;  // empty when not applicable
  std::string metric;  // "accuracy" or "em" (CMRC2018: EM is the leaderboard metric)
  // File names tried per split by ResolveSplitFiles, in priority order. For "train" of OCNLI the
  // largest available subset is taken; for C3 a split is the d- plus the m- file. Split names not
  // in this table are file stems of the directory (ResolveSplitFiles).
  std::map<std::string, std::vector<std::vector<std::string>>> split_files;
};

// All tasks in a fixed order: afqmc, tnews, iflytek, cmnli, ocnli, cluewsc2020, csl, cmrc2018,
// c3, chid.
const std::vector<ClueTaskInfo>& ClueTasks();
// Canonical name or alias (case-insensitive); nullptr when unknown.
const ClueTaskInfo* FindClueTask(std::string_view name);
// Like FindClueTask but throws Error listing the known names.
const ClueTaskInfo& GetClueTask(std::string_view name);
// Index of `label` in task.labels, -1 when absent.
int ClueLabelIndex(const ClueTaskInfo& task, std::string_view label);

// Reads a CLUE labels.json (JSON-lines {"label": "...", ...}) and returns the labels in file
// order. Used to cross-check the built-in TNEWS/IFLYTEK lists against a data directory.
std::vector<std::string> ReadClueLabelsFile(const std::string& path);

struct CmrcAnswer {
  std::string text;
  int64_t answer_start = -1;  // as given in the file (code points; may be wrong or -1)
  int64_t start_char = -1;    // code-point offset into context after repair; -1 = not locatable
  int64_t start_byte = -1;    // the same offset in UTF-8 bytes; -1 = not locatable
  bool repaired = false;      // start_char differs from answer_start
};

struct Example {
  std::string id;          // see the file comment; a string even when the file had an integer
  bool id_is_int = false;  // the id came from a JSON integer or a line index (written back as int)
  int64_t line = 0;        // 1-based line of a JSON-lines file; ordinal (1-based) for documents
  std::string text_a;      // sentence / sentence1 / WSC text / CSL keywords joined by "；"
  std::string text_b;      // sentence2 / CSL abstract
  bool has_text_b = false;
  int label = -1;  // index into task labels (classification) or choice index; -1 = none

  // CLUEWSC2020. Indices are code-point offsets into text_a (the file's span*_index).
  std::string span1_text, span2_text;
  int64_t span1_index = -1, span2_index = -1;
  int64_t wsc_idx = -1;  // the file's "idx" (not unique)

  // CSL
  std::vector<std::string> keywords;
  std::string abstract;

  // C3. passage = passage_lines joined by "||" (bert4keras CLUE baseline, seeds.md §5.2).
  std::vector<std::string> passage_lines;
  std::string passage;
  std::string question;              // also CMRC2018
  std::vector<std::string> choices;  // C3 choices; ChID candidates
  std::string doc_id;                // C3 document id

  // ChID. content holds the passage with the target blank still written as `blank_marker`
  // ("#idiom#" in FewCLUE format, "#idiom000123#" in CLUE format; other blanks of a CLUE passage
  // also keep their own markers). blank_char/blank_byte locate the target marker in content.
  std::string content;
  std::string blank_marker;
  int64_t blank_char = -1, blank_byte = -1;

  // CMRC2018
  std::string context, qid, title;
  std::vector<CmrcAnswer> answers;
};

struct ClueReadStats {
  int64_t rows = 0;      // JSON-lines rows / C3 questions / CMRC2018 questions / ChID blanks
  int64_t examples = 0;  // examples kept
  int64_t dropped = 0;   // OCNLI/CMNLI rows labelled "-"
  std::vector<std::string> dropped_ids;
  int64_t unlabelled = 0;        // examples with label -1
  int64_t documents = 0;         // C3 documents, CMRC2018 paragraphs, ChID passages (CLUE format)
  int64_t answers = 0;           // CMRC2018 reference answers
  int64_t repaired_offsets = 0;  // CMRC2018 answers whose answer_start was wrong but the text
                                 // occurs in the context (start moved to the nearest hit)
  int64_t unlocatable_answers = 0;  // CMRC2018 answers whose text does not occur in the context
};

struct ClueDataset {
  const ClueTaskInfo* task = nullptr;
  std::vector<std::string> paths;
  std::vector<Example> examples;
  ClueReadStats stats;
};

// One reader per format. `path` names the file in errors.
ClueDataset ReadSentenceFile(const ClueTaskInfo& task, const std::string& path);  // TNEWS/IFLYTEK
ClueDataset ReadPairFile(const ClueTaskInfo& task, const std::string& path);  // AFQMC/CMNLI/OCNLI
ClueDataset ReadWscFile(const ClueTaskInfo& task, const std::string& path);
ClueDataset ReadCslFile(const ClueTaskInfo& task, const std::string& path);
// C3: `first_index` is the implicit id of the first question when questions carry no "id" (so a
// d- and an m- file read together get distinct ids).
ClueDataset ReadC3File(const ClueTaskInfo& task, const std::string& path, int64_t first_index = 0);
// ChID: `answer_path` is the CLUE-format answer dictionary (empty: none / FewCLUE format).
ClueDataset ReadChidFile(const ClueTaskInfo& task, const std::string& path,
                         const std::string& answer_path = "");
ClueDataset ReadCmrc2018File(const ClueTaskInfo& task, const std::string& path);

// Dispatches on task.format. For ChID, a sibling "<stem>_answer.json" is used when it exists and
// the file is in CLUE format.
ClueDataset ReadClueFile(const ClueTaskInfo& task, const std::string& path);
// Files of `split` that exist under `dir`; empty when none. A split name is either
//   - a name of task.split_files ("train", "dev", "test", CMRC2018 "trial"): the table's first
//     alternative with a file present (OCNLI "train" = the largest subset there, C3 = d- + m-), or
//   - any other file stem of `dir`: "train.3k" -> train.3k.json, "c3-d-train" -> c3-d-train.json
//     (a name that already ends in ".json" names the file itself). This is how a particular subset
//     is chosen (OCNLI train.3k vs train.10k). Names with a path separator never match.
std::vector<std::string> ResolveSplitFiles(const ClueTaskInfo& task, const std::string& dir,
                                           const std::string& split);
// The split names usable in `dir`, for error messages: table names that resolve, shown with their
// file(s) ("train (train.10k.json)"), then every other *.json stem except label lists and ChID
// answer files ("train.3k"), sorted; "none" when the directory has no split.
std::string DescribeAvailableSplits(const ClueTaskInfo& task, const std::string& dir);
// Reads and concatenates ResolveSplitFiles(...); Error naming the split and listing the available
// ones when no file exists.
ClueDataset ReadClueSplit(const ClueTaskInfo& task, const std::string& dir,
                          const std::string& split);

// Input construction helpers (seeds.md §5.2 / clue.py WscProcessor): the WSC text with span1
// wrapped in "_" and span2 wrapped in "[" "]".
std::string WscMarkedText(const Example& ex);

// UTF-8 helpers (input is valid UTF-8: it came through the JSON parser).
int64_t Utf8Length(std::string_view s);
// Byte offset of code point `char_index` (== s.size() for char_index == length); -1 if out of
// range.
int64_t Utf8ByteOffset(std::string_view s, int64_t char_index);

}  // namespace roformer
