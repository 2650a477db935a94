#include "data/clue/clue_submission.h"

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "runtime/error.h"
#include "runtime/json.h"

namespace roformer {

namespace {

Json IdJson(const std::string& id, bool is_int) {
  if (is_int) {
    try {
      size_t used = 0;
      const long long v = std::stoll(id, &used);
      if (used == id.size()) return Json(v);
    } catch (const std::exception&) {
    }
  }
  return Json(id);
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) Fail(path, ": cannot open for writing");
  out << text;
  out.flush();
  if (!out) Fail(path, ": write error");
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool IsClueChid(const std::vector<Example>& examples) {
  if (examples.empty()) return false;
  for (const Example& e : examples) {
    if (e.id.rfind("#idiom", 0) != 0 || e.id == "#idiom#") return false;
  }
  return true;
}

// Which JSON-lines key holds the prediction.
const char* LineKey(const ClueTaskInfo& task) {
  return task.format == ClueFormat::kChid ? "answer" : "label";
}

bool IsObjectFormatFile(const ClueTaskInfo& task, const std::string& text, Json* parsed) {
  if (task.format == ClueFormat::kCmrc2018) return true;
  if (task.format != ClueFormat::kChid) return false;
  // A CLUE-format ChID file is one object keyed by "#idiom...#"; a one-line FewCLUE file is also
  // one object, so look at the keys.
  try {
    *parsed = Json::Parse(text, "submission");
  } catch (const Error&) {
    return false;
  }
  if (!parsed->is_object() || parsed->size() == 0) return false;
  return parsed->as_object().front().first.rfind("#idiom", 0) == 0;
}

std::string Describe(const Json& v) {
  std::string s = v.Dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

}  // namespace

void WriteClueSubmission(const ClueTaskInfo& task, const std::vector<Example>& examples,
                         const std::vector<int>& predictions, const std::string& path) {
  if (task.format == ClueFormat::kCmrc2018) {
    Fail("cmrc2018 submissions hold answer texts; use WriteCmrc2018Submission");
  }
  if (examples.size() != predictions.size()) {
    Fail(path, ": ", predictions.size(), " predictions for ", examples.size(), " examples");
  }
  const bool choice = task.type == ClueTaskType::kMultipleChoice;
  for (size_t i = 0; i < examples.size(); ++i) {
    const int p = predictions[i];
    const size_t n = choice ? examples[i].choices.size() : task.labels.size();
    if (p < 0 || static_cast<size_t>(p) >= n) {
      Fail(path, ": prediction ", p, " for id ", examples[i].id, " is outside [0, ", n, ")");
    }
  }
  std::string out;
  if (task.format == ClueFormat::kChid && IsClueChid(examples)) {
    Json obj = Json::Object();
    for (size_t i = 0; i < examples.size(); ++i) obj.set(examples[i].id, predictions[i]);
    out = obj.Dump(2) + "\n";
  } else {
    for (size_t i = 0; i < examples.size(); ++i) {
      Json line = Json::Object();
      line.set("id", IdJson(examples[i].id, examples[i].id_is_int));
      if (choice) {
        line.set(LineKey(task), predictions[i]);
      } else {
        line.set("label", task.labels[static_cast<size_t>(predictions[i])]);
        if (task.name == "tnews") line.set("label_desc", "");
      }
      out += line.Dump() + "\n";
    }
  }
  WriteText(path, out);
}

void WriteCmrc2018Submission(const std::vector<Example>& examples,
                             const std::vector<std::string>& answers, const std::string& path) {
  if (examples.size() != answers.size()) {
    Fail(path, ": ", answers.size(), " answers for ", examples.size(), " questions");
  }
  Json obj = Json::Object();
  std::set<std::string> seen;
  for (size_t i = 0; i < examples.size(); ++i) {
    const std::string& qid = examples[i].qid.empty() ? examples[i].id : examples[i].qid;
    if (!seen.insert(qid).second) Fail(path, ": duplicate question id ", qid);
    obj.set(qid, answers[i]);
  }
  WriteText(path, obj.Dump(2) + "\n");
}

ClueSubmission ReadClueSubmission(const ClueTaskInfo& task, const std::string& path) {
  const std::string text = ReadText(path);
  ClueSubmission sub;
  std::set<std::string> seen;
  Json parsed;
  if (IsObjectFormatFile(task, text, &parsed)) {
    sub.object_format = true;
    if (parsed.is_null()) parsed = Json::Parse(text, path);
    if (!parsed.is_object()) {
      Fail(path, ": a ", task.name, " submission must be one JSON object {id: ",
           task.format == ClueFormat::kCmrc2018 ? "answer text" : "candidate index", "}");
    }
    for (const auto& [key, v] : parsed.as_object()) {
      SubmissionEntry e;
      e.id = key;
      if (task.format == ClueFormat::kCmrc2018) {
        if (!v.is_string())
          Fail(path, ": answer of '", key, "' must be a string, got ", Describe(v));
        e.text = v.as_string();
      } else {
        if (key.rfind("#idiom", 0) != 0)
          Fail(path, ": key '", key, "' is not a '#idiom...#' blank");
        if (!v.is_int() || v.as_int() < 0) {
          Fail(path, ": answer of '", key, "' must be a non-negative integer, got ", Describe(v));
        }
        e.label = static_cast<int>(v.as_int());
      }
      sub.entries.push_back(std::move(e));
    }
    return sub;
  }
  const bool choice = task.type == ClueTaskType::kMultipleChoice;
  const char* key = LineKey(task);
  int64_t line = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view l(text.data() + pos, end - pos);
    pos = end + 1;
    ++line;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (l.find_first_not_of(" \t") == std::string_view::npos) continue;
    const std::string where = path + ":" + std::to_string(line);
    Json row;
    try {
      row = Json::Parse(l, where);
    } catch (const Error& e) {
      Fail(where, ": malformed JSON line (", e.what(), ")");
    }
    if (!row.is_object()) Fail(where, ": expected a JSON object");
    SubmissionEntry e;
    e.line = line;
    const Json* id = row.find("id");
    if (id == nullptr) Fail(where, ": missing field 'id'");
    if (id->is_int()) {
      e.id = std::to_string(id->as_int());
      e.id_is_int = true;
    } else if (id->is_string()) {
      e.id = id->as_string();
    } else {
      Fail(where, ": field 'id' must be an integer or a string, got ", Describe(*id));
    }
    if (!seen.insert(e.id).second) Fail(where, ": duplicate id ", e.id);
    const Json* v = row.find(key);
    if (v == nullptr) Fail(where, ": missing field '", key, "'");
    if (choice) {
      if (!v->is_int() || v->as_int() < 0) {
        Fail(where, ": field '", key, "' must be a non-negative choice index, got ", Describe(*v));
      }
      e.label = static_cast<int>(v->as_int());
    } else {
      if (!v->is_string()) {
        Fail(where, ": field 'label' must be a label string (e.g. \"", task.labels.front(),
             "\"), got ", Describe(*v));
      }
      e.label = ClueLabelIndex(task, v->as_string());
      if (e.label < 0) {
        Fail(where, ": label '", v->as_string(), "' is not a ", task.name, " label");
      }
    }
    sub.entries.push_back(std::move(e));
  }
  return sub;
}

int64_t ValidateSubmission(const ClueTaskInfo& task, const std::string& path,
                           const std::vector<Example>* expected) {
  const ClueSubmission sub = ReadClueSubmission(task, path);
  if (expected != nullptr) {
    const std::vector<Example>& ex = *expected;
    if (sub.entries.size() != ex.size()) {
      Fail(path, ": ", sub.entries.size(), " entries for ", ex.size(), " test examples");
    }
    if (sub.object_format) {
      std::set<std::string> want;
      for (const Example& e : ex) want.insert(task.format == ClueFormat::kCmrc2018 ? e.qid : e.id);
      for (const SubmissionEntry& s : sub.entries) {
        if (!want.count(s.id)) Fail(path, ": id '", s.id, "' is not in the test set");
      }
    } else {
      for (size_t i = 0; i < ex.size(); ++i) {
        if (sub.entries[i].id != ex[i].id) {
          Fail(path, ":", sub.entries[i].line, ": id ", sub.entries[i].id, " where test row ", i,
               " has id ", ex[i].id, " (entries must follow the test file order)");
        }
      }
    }
    if (task.type == ClueTaskType::kMultipleChoice) {
      std::map<std::string, size_t> nchoices;
      for (const Example& e : ex) nchoices[e.id] = e.choices.size();
      for (const SubmissionEntry& s : sub.entries) {
        if (static_cast<size_t>(s.label) >= nchoices[s.id]) {
          Fail(path, ": id ", s.id, ": choice ", s.label, " but the example has ", nchoices[s.id],
               " choices");
        }
      }
    }
  }
  return static_cast<int64_t>(sub.entries.size());
}

}  // namespace roformer
