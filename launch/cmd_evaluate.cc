// `roformer evaluate` (score a CLUE submission file against a labelled data file) and
// `roformer clue check` (read a task directory and print counts and label distributions).
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "data/clue/clue_metrics.h"
#include "data/clue/clue_submission.h"
#include "data/clue/clue_tasks.h"
#include "launch/command.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/json.h"

namespace roformer {
namespace {

// "a, b, c and 7 more"
std::string ListSome(const std::vector<std::string>& ids, size_t max = 10) {
  std::string s;
  for (size_t i = 0; i < ids.size() && i < max; ++i) s += (i ? ", " : "") + ids[i];
  if (ids.size() > max) s += " and " + std::to_string(ids.size() - max) + " more";
  return s;
}

int RunEvaluate(int argc, char** argv) {
  namespace fs = std::filesystem;
  Flags flags(argc, argv, {"task", "gold", "pred", "split"});
  if (!flags.positional().empty()) Fail("unexpected argument '", flags.positional()[0], "'");
  const ClueTaskInfo& task = GetClueTask(flags.Require("task"));
  std::string gold_path = flags.Require("gold");
  const std::string pred_path = flags.Require("pred");
  // A directory is read like `roformer finetune` reads it (ReadClueSplit): a split may span
  // several files (C3 dev = d-dev + m-dev, with ids numbered across both), so scoring a split's
  // predictions needs the same concatenation in the same order.
  std::error_code ec;
  ClueDataset gold;
  if (fs::is_directory(gold_path, ec)) {
    const std::string split = flags.Has("split") ? flags.Get("split") : "dev";
    gold = ReadClueSplit(task, gold_path, split);
    std::string files;
    for (const std::string& f : gold.paths)
      files += (files.empty() ? "" : " + ") + fs::path(f).filename().string();
    gold_path += " (" + split + ": " + files + ")";
  } else {
    if (flags.Has("split"))
      Fail("evaluate: --split ", flags.Get("split"), " needs --gold DIR (a task directory); ",
           gold_path, " is not a directory");
    gold = ReadClueFile(task, gold_path);
  }
  const ClueSubmission sub = ReadClueSubmission(task, pred_path);

  std::map<std::string, const SubmissionEntry*> pred;
  for (const SubmissionEntry& e : sub.entries) pred[e.id] = &e;
  std::set<std::string> gold_ids,
      dropped(gold.stats.dropped_ids.begin(), gold.stats.dropped_ids.end());
  std::vector<std::string> missing, unlabelled, duplicate, extra;
  for (const Example& ex : gold.examples) {
    if (!gold_ids.insert(ex.id).second) duplicate.push_back(ex.id);
    if (ex.label < 0) unlabelled.push_back(ex.id);
    if (!pred.count(ex.id)) missing.push_back(ex.id);
  }
  // Predictions for rows the reader dropped (OCNLI/CMNLI "-") are ignored, not errors.
  for (const SubmissionEntry& e : sub.entries) {
    if (!gold_ids.count(e.id) && !dropped.count(e.id)) extra.push_back(e.id);
  }
  if (!duplicate.empty()) {
    Fail(gold_path, ": duplicate ids in the gold file (", ListSome(duplicate), ")");
  }
  if (!unlabelled.empty()) {
    Fail(gold_path, ": ", unlabelled.size(), " gold example(s) have no label/answers (ids ",
         ListSome(unlabelled), "); an unlabelled test file cannot be scored");
  }
  if (!missing.empty()) {
    Fail(pred_path, ": no prediction for ", missing.size(), " gold id(s): ", ListSome(missing));
  }
  if (!extra.empty()) {
    Fail(pred_path, ": ", extra.size(), " predicted id(s) not in ", gold_path, ": ",
         ListSome(extra));
  }

  Json out = Json::Object();
  out.set("task", task.name);
  if (task.format == ClueFormat::kCmrc2018) {
    std::vector<std::vector<std::string>> refs;
    std::vector<std::string> texts;
    for (const Example& ex : gold.examples) {
      std::vector<std::string> r;
      for (const CmrcAnswer& a : ex.answers) r.push_back(a.text);
      refs.push_back(std::move(r));
      texts.push_back(pred[ex.id]->text);
    }
    const CmrcScore s = CmrcEvaluate(refs, texts);
    out.set("em", s.em).set("f1", s.f1).set("count", s.count);
  } else {
    int64_t right = 0;
    for (const Example& ex : gold.examples) right += pred[ex.id]->label == ex.label ? 1 : 0;
    const int64_t n = static_cast<int64_t>(gold.examples.size());
    // Percent, like EM/F1 and the CLUE tables.
    out.set("accuracy", n ? 100.0 * static_cast<double>(right) / static_cast<double>(n) : 0.0)
        .set("correct", right)
        .set("count", n);
    if (gold.stats.dropped > 0) out.set("dropped", gold.stats.dropped);
  }
  std::cout << out.Dump() << "\n";
  return 0;
}

std::string Distribution(const ClueTaskInfo& task, const ClueDataset& ds) {
  std::ostringstream os;
  if (task.format == ClueFormat::kCmrc2018) {
    os << "paragraphs " << ds.stats.documents << ", questions " << ds.stats.rows << ", answers "
       << ds.stats.answers << ", repaired answer offsets " << ds.stats.repaired_offsets
       << ", answers not found in context " << ds.stats.unlocatable_answers;
    return os.str();
  }
  std::map<int, int64_t> counts;
  std::map<size_t, int64_t> nchoices;
  for (const Example& e : ds.examples) {
    ++counts[e.label];
    if (task.type == ClueTaskType::kMultipleChoice) ++nchoices[e.choices.size()];
  }
  os << "labels:";
  if (task.type == ClueTaskType::kMultipleChoice) {
    for (const auto& [l, n] : counts)
      os << " " << (l < 0 ? std::string("(none)") : "choice " + std::to_string(l)) << "=" << n;
    os << "; choices per example:";
    for (const auto& [k, n] : nchoices) os << " " << k << "x" << n;
  } else {
    for (const auto& [l, n] : counts) {
      os << " " << (l < 0 ? std::string("(none)") : task.labels[static_cast<size_t>(l)]) << "="
         << n;
    }
  }
  return os.str();
}

int RunClueCheck(int argc, char** argv) {
  namespace fs = std::filesystem;
  Flags flags(argc, argv, {"task", "data"});
  if (!flags.positional().empty()) Fail("unexpected argument '", flags.positional()[0], "'");
  const ClueTaskInfo& task = GetClueTask(flags.Require("task"));
  const std::string dir = flags.Require("data");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) Fail(dir, ": not a directory");
  std::cout << "task " << task.name << " (" << ClueTaskTypeName(task.type) << ", metric "
            << task.metric << ", submission " << task.submission_file << ")\n";
  if (!task.labels.empty()) {
    std::cout << "labels (" << task.labels.size() << "):";
    for (const std::string& l : task.labels) std::cout << " " << l;
    std::cout << "\n";
    const fs::path lf = fs::path(dir) / "labels.json";
    if (fs::is_regular_file(lf, ec)) {
      const std::vector<std::string> file_labels = ReadClueLabelsFile(lf.string());
      if (file_labels != task.labels) {
        Fail(lf.string(), ": labels differ from the built-in ", task.name,
             " label list (order matters: label indices are positions in that list)");
      }
      std::cout << "labels.json: matches the built-in list\n";
    }
  }
  int files = 0;
  std::set<std::string> seen;
  for (const char* split : {"train", "dev", "trial", "test"}) {
    auto it = task.split_files.find(split);
    if (it == task.split_files.end()) continue;
    const std::vector<std::string> chosen = ResolveSplitFiles(task, dir, split);
    for (const auto& alt : it->second) {
      for (const std::string& name : alt) {
        const fs::path p = fs::path(dir) / name;
        if (!fs::is_regular_file(p, ec) || !seen.insert(p.string()).second) continue;
        const ClueDataset ds = ReadClueFile(task, p.string());
        ++files;
        const bool is_default = std::find(chosen.begin(), chosen.end(), p.string()) != chosen.end();
        std::cout << split << (is_default ? "  " : "* ") << name << ": " << ds.stats.rows
                  << " rows, " << ds.stats.examples << " examples";
        if (ds.stats.dropped) std::cout << ", " << ds.stats.dropped << " dropped (label \"-\")";
        if (ds.stats.unlabelled) std::cout << ", " << ds.stats.unlabelled << " unlabelled";
        if (task.format == ClueFormat::kC3) std::cout << ", " << ds.stats.documents << " documents";
        std::cout << "\n    " << Distribution(task, ds) << "\n";
      }
    }
  }
  if (files == 0) Fail(dir, ": no ", task.name, " data files found");
  std::cout << "(* = present but not the default file of its split)\n";
  return 0;
}

RegisterCommand reg_evaluate(
    "evaluate", "score a CLUE submission file against a labelled data file",
    "roformer evaluate --task NAME --gold FILE|DIR [--split S] --pred FILE\n"
    "  --task  afqmc tnews iflytek cmnli ocnli cluewsc2020 csl cmrc2018 c3 chid\n"
    "  --gold  a labelled data file of the task (e.g. dev.json), or the task's directory: then\n"
    "          --split (default dev) is read as `roformer finetune` reads it (C3 dev = d-dev +\n"
    "          m-dev, ids numbered across both, as in finetune's dev_c311_predict.json)\n"
    "  --pred  a submission-format file (see data/clue/clue_submission.h)\n"
    "Prints one JSON object: {\"task\",\"accuracy\" (percent),\"correct\",\"count\"} or, for\n"
    "cmrc2018, {\"task\",\"em\",\"f1\",\"count\"} (percent, official script rules). Missing or\n"
    "unknown ids are errors; predictions for OCNLI/CMNLI rows labelled \"-\" are ignored.",
    &RunEvaluate);

RegisterCommand reg_clue_check(
    "clue check", "read a CLUE task directory and print counts and label distributions",
    "roformer clue check --task NAME --data DIR\n"
    "Reads every train/dev/trial/test file of the task found in DIR (all OCNLI train subsets,\n"
    "C3 d- and m- files, ...) with the same readers fine-tuning uses, and prints row/example\n"
    "counts, dropped rows, label distributions and, for CMRC2018, repaired answer offsets.\n"
    "A labels.json next to TNEWS/IFLYTEK data is checked against the built-in label order.",
    &RunClueCheck);

}  // namespace
}  // namespace roformer
