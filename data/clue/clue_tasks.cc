#include "data/clue/clue_tasks.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/error.h"
#include "runtime/json.h"

namespace roformer {

namespace {

std::vector<std::string> Range(int lo, int hi, const std::vector<int>& skip = {}) {
  std::vector<std::string> out;
  for (int i = lo; i <= hi; ++i) {
    if (std::find(skip.begin(), skip.end(), i) == skip.end()) out.push_back(std::to_string(i));
  }
  return out;
}

using SplitMap = std::map<std::string, std::vector<std::vector<std::string>>>;

SplitMap PlainSplits() {
  return {{"train", {{"train.json"}}}, {"dev", {{"dev.json"}}}, {"test", {{"test.json"}}}};
}

std::vector<ClueTaskInfo> BuildTasks() {
  std::vector<ClueTaskInfo> t;
  const std::vector<std::string> nli = {"entailment", "neutral", "contradiction"};
  t.push_back({"afqmc",
               {},
               ClueTaskType::kSentencePair,
               ClueFormat::kPair,
               {"0", "1"},
               "afqmc_predict.json",
               "",
               "accuracy",
               PlainSplits()});
  // TNEWS: "100".."116" without 105 and 111 -> ids 0..14 (clue-and-reference.md §1.1/§1.2).
  t.push_back({"tnews",
               {"tnews11"},
               ClueTaskType::kSingleSentence,
               ClueFormat::kSentence,
               Range(100, 116, {105, 111}),
               "tnews11_predict.json",
               "tnewsf_predict.json",
               "accuracy",
               PlainSplits()});
  t.push_back({"iflytek",
               {},
               ClueTaskType::kSingleSentence,
               ClueFormat::kSentence,
               Range(0, 118),
               "iflytek_predict.json",
               "iflytekf_predict.json",
               "accuracy",
               PlainSplits()});
  t.push_back({"cmnli",
               {},
               ClueTaskType::kSentencePair,
               ClueFormat::kPair,
               nli,
               "cmnli_predict.json",
               "",
               "accuracy",
               PlainSplits()});
  SplitMap ocnli = PlainSplits();
  // The leaderboard trains on 50k; take the largest subset a directory has.
  ocnli["train"] = {{"train.50k.json"},
                    {"train.json"},
                    {"train.30k.json"},
                    {"train.10k.json"},
                    {"train.3k.json"}};
  t.push_back({"ocnli",
               {"ocnli_50k"},
               ClueTaskType::kSentencePair,
               ClueFormat::kPair,
               nli,
               "ocnli_50k_predict.json",
               "ocnlif_predict.json",
               "accuracy",
               ocnli});
  t.push_back({"cluewsc2020",
               {"cluewsc", "wsc", "cluewsc11"},
               ClueTaskType::kSingleSentence,
               ClueFormat::kWsc,
               {"true", "false"},
               "cluewsc11_predict.json",
               "cluewscf_predict.json",
               "accuracy",
               PlainSplits()});
  t.push_back({"csl",
               {},
               ClueTaskType::kSentencePair,
               ClueFormat::kCsl,
               {"0", "1"},
               "csl_predict.json",
               "cslf_predict.json",
               "accuracy",
               PlainSplits()});
  t.push_back({"cmrc2018",
               {"cmrc"},
               ClueTaskType::kSpan,
               ClueFormat::kCmrc2018,
               {},
               "cmrc2018_predict.json",
               "",
               "em",
               {{"train", {{"train.json"}, {"cmrc2018_train.json"}}},
                {"dev", {{"dev.json"}, {"cmrc2018_dev.json"}}},
                {"trial", {{"trial.json"}, {"cmrc2018_trial.json"}}},
                {"test", {{"test.json"}, {"cmrc2018_test.json"}}}}});
  t.push_back(
      {"c3",
       {"c311"},
       ClueTaskType::kMultipleChoice,
       ClueFormat::kC3,
       {},
       "c311_predict.json",
       "",
       "accuracy",
       {{"train",
         {{"d-train.json", "m-train.json"},
          {"c3-d-train.json", "c3-m-train.json"},
          {"train.json"}}},
        {"dev", {{"d-dev.json", "m-dev.json"}, {"c3-d-dev.json", "c3-m-dev.json"}, {"dev.json"}}},
        {"test",
         {{"test1.1.json"},
          {"test.json"},
          {"d-test.json", "m-test.json"},
          {"c3-d-test.json", "c3-m-test.json"}}}}});
  t.push_back({"chid",
               {"chid11"},
               ClueTaskType::kMultipleChoice,
               ClueFormat::kChid,
               {},
               "chid11_predict.json",
               "chidf_predict.json",
               "accuracy",
               PlainSplits()});
  return t;
}

std::string Lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) Fail(path, ": read error");
  return ss.str();
}

// Parses one JSON-lines row, turning the parser's "<origin>:1:<col>: ..." into
// "<path>:<line>: malformed JSON (column <col>): ...".
Json ParseRow(std::string_view text, const std::string& path, int64_t line) {
  try {
    return Json::Parse(text, "\x01");
  } catch (const Error& e) {
    std::string msg = e.what();
    const std::string prefix = "\x01:1:";
    if (msg.rfind(prefix, 0) == 0) {
      msg = msg.substr(prefix.size());
      const size_t colon = msg.find(':');
      const std::string col = msg.substr(0, colon);
      std::string what = colon == std::string::npos ? "" : msg.substr(colon + 1);
      while (!what.empty() && what[0] == ' ') what.erase(0, 1);
      if (what.rfind("invalid JSON: ", 0) == 0) what.erase(0, 14);
      Fail(path, ":", line, ": malformed JSON (column ", col, "): ", what);
    }
    Fail(path, ":", line, ": malformed JSON: ", msg);
  }
}

// Calls fn(row, line_number, row_index) for every non-blank line; split on '\n' only.
template <typename Fn>
void ForEachJsonLine(const std::string& path, Fn&& fn) {
  const std::string data = ReadWholeFile(path);
  int64_t line = 0, row = 0;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t end = data.find('\n', pos);
    if (end == std::string::npos) end = data.size();
    std::string_view text(data.data() + pos, end - pos);
    pos = end + 1;
    ++line;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.find_first_not_of(" \t") == std::string_view::npos) continue;
    Json j = ParseRow(text, path, line);
    if (!j.is_object())
      Fail(path, ":", line, ": expected a JSON object, got ", Json::TypeName(j.type()));
    fn(j, line, row);
    ++row;
  }
}

// Where a value sits, for error messages: "file:line" or "file: data[3].paragraphs[0]".
struct Where {
  std::string s;
};

Where LineWhere(const std::string& path, int64_t line) {
  return {path + ":" + std::to_string(line)};
}

const Json& Field(const Json& obj, const char* key, const Where& w) {
  const Json* v = obj.find(key);
  if (v == nullptr) Fail(w.s, ": missing field '", key, "'");
  return *v;
}

std::string StringField(const Json& obj, const char* key, const Where& w) {
  const Json& v = Field(obj, key, w);
  if (!v.is_string())
    Fail(w.s, ": field '", key, "' must be a string, got ", Json::TypeName(v.type()));
  return v.as_string();
}

int64_t IntField(const Json& obj, const char* key, const Where& w) {
  const Json& v = Field(obj, key, w);
  if (v.is_int()) return v.as_int();
  if (v.is_string()) {
    const std::string& s = v.as_string();
    char* end = nullptr;
    const long long x = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && end == s.c_str() + s.size()) return x;
  }
  Fail(w.s, ": field '", key, "' must be an integer, got ", v.Dump());
}

std::vector<std::string> StringArray(const Json& v, const char* what, const Where& w) {
  if (!v.is_array()) Fail(w.s, ": '", what, "' must be an array, got ", Json::TypeName(v.type()));
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v.at(i).is_string()) Fail(w.s, ": '", what, "'[", i, "] must be a string");
    out.push_back(v.at(i).as_string());
  }
  return out;
}

// The row's id, or its index among the file's rows.
void SetId(Example* ex, const Json& obj, int64_t row, const Where& w) {
  const Json* id = obj.find("id");
  if (id == nullptr || id->is_null()) {
    ex->id = std::to_string(row);
    ex->id_is_int = true;
  } else if (id->is_int()) {
    ex->id = std::to_string(id->as_int());
    ex->id_is_int = true;
  } else if (id->is_string()) {
    ex->id = id->as_string();
  } else {
    Fail(w.s, ": field 'id' must be a string or an integer, got ", id->Dump());
  }
}

// The label string of a row: absent/null -> nullopt (unlabelled); strings, integers and booleans
// are accepted (FewCLUE writes TNEWS/IFLYTEK labels as ints).
bool LabelString(const Json& obj, const char* key, const Where& w, std::string* out) {
  const Json* v = obj.find(key);
  if (v == nullptr || v->is_null()) return false;
  if (v->is_string()) {
    *out = v->as_string();
  } else if (v->is_int()) {
    *out = std::to_string(v->as_int());
  } else if (v->is_bool()) {
    *out = v->as_bool() ? "true" : "false";
  } else {
    Fail(w.s, ": field '", key, "' must be a string or an integer, got ", v->Dump());
  }
  return true;
}

std::string JoinLabels(const ClueTaskInfo& task) {
  std::string s;
  const size_t n = std::min<size_t>(task.labels.size(), 20);
  for (size_t i = 0; i < n; ++i) s += (i ? ", " : "") + task.labels[i];
  if (task.labels.size() > n) s += ", ... (" + std::to_string(task.labels.size()) + " labels)";
  return s;
}

// Sets ex->label. Returns false when the row must be dropped (NLI "-").
bool SetLabel(Example* ex, const ClueTaskInfo& task, const Json& obj, const Where& w,
              ClueReadStats* st) {
  std::string label;
  if (!LabelString(obj, "label", w, &label)) {
    ex->label = -1;
    return true;
  }
  const bool nli = task.name == "ocnli" || task.name == "cmnli";
  if (nli && label == "-") {
    ++st->dropped;
    st->dropped_ids.push_back(ex->id);
    return false;
  }
  const int idx = ClueLabelIndex(task, label);
  if (idx < 0) {
    Fail(w.s, ": label '", label, "' is not a ", task.name,
         " label (expected one of: ", JoinLabels(task), ")");
  }
  ex->label = idx;
  return true;
}

void Finish(ClueDataset* ds) {
  ds->stats.examples = static_cast<int64_t>(ds->examples.size());
  ds->stats.unlabelled = 0;
  for (const Example& e : ds->examples) ds->stats.unlabelled += e.label < 0 ? 1 : 0;
}

ClueDataset Begin(const ClueTaskInfo& task, const std::string& path) {
  ClueDataset ds;
  ds.task = &task;
  ds.paths = {path};
  return ds;
}

// Offset (code points) of byte offset `b` in s; s[0:b] is assumed to end on a char boundary.
int64_t CharsBefore(std::string_view s, size_t b) { return Utf8Length(s.substr(0, b)); }

}  // namespace

const char* ClueTaskTypeName(ClueTaskType t) {
  switch (t) {
    case ClueTaskType::kSingleSentence:
      return "single_sentence";
    case ClueTaskType::kSentencePair:
      return "sentence_pair";
    case ClueTaskType::kSpan:
      return "span";
    case ClueTaskType::kMultipleChoice:
      return "multiple_choice";
  }
  return "?";
}

const std::vector<ClueTaskInfo>& ClueTasks() {
  static const std::vector<ClueTaskInfo> tasks = BuildTasks();
  return tasks;
}

const ClueTaskInfo* FindClueTask(std::string_view name) {
  const std::string n = Lower(name);
  for (const ClueTaskInfo& t : ClueTasks()) {
    if (t.name == n) return &t;
    for (const std::string& a : t.aliases) {
      if (a == n) return &t;
    }
  }
  return nullptr;
}

const ClueTaskInfo& GetClueTask(std::string_view name) {
  const ClueTaskInfo* t = FindClueTask(name);
  if (t == nullptr) {
    std::string known;
    for (const ClueTaskInfo& k : ClueTasks()) known += (known.empty() ? "" : ", ") + k.name;
    Fail("unknown CLUE task '", name, "' (known: ", known, ")");
  }
  return *t;
}

int ClueLabelIndex(const ClueTaskInfo& task, std::string_view label) {
  for (size_t i = 0; i < task.labels.size(); ++i) {
    if (task.labels[i] == label) return static_cast<int>(i);
  }
  return -1;
}

std::vector<std::string> ReadClueLabelsFile(const std::string& path) {
  std::vector<std::string> labels;
  ForEachJsonLine(path, [&](const Json& row, int64_t line, int64_t) {
    std::string l;
    if (!LabelString(row, "label", LineWhere(path, line), &l)) {
      Fail(path, ":", line, ": missing field 'label'");
    }
    labels.push_back(l);
  });
  return labels;
}

int64_t Utf8Length(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

int64_t Utf8ByteOffset(std::string_view s, int64_t char_index) {
  if (char_index < 0) return -1;
  int64_t chars = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (chars == char_index) return static_cast<int64_t>(i);
      ++chars;
    }
  }
  return chars == char_index ? static_cast<int64_t>(s.size()) : -1;
}

// One example per JSON line (the classification formats): line number and id are set here,
// `fill(row, where, &example)` reads the task's fields, and the label decides whether it is kept.
template <typename Fill>
ClueDataset ReadExampleLines(const ClueTaskInfo& task, const std::string& path, Fill fill) {
  ClueDataset ds = Begin(task, path);
  ForEachJsonLine(path, [&](const Json& row, int64_t line, int64_t idx) {
    const Where w = LineWhere(path, line);
    ++ds.stats.rows;
    Example ex;
    ex.line = line;
    SetId(&ex, row, idx, w);
    fill(row, w, &ex);
    if (SetLabel(&ex, task, row, w, &ds.stats)) ds.examples.push_back(std::move(ex));
  });
  Finish(&ds);
  return ds;
}

ClueDataset ReadSentenceFile(const ClueTaskInfo& task, const std::string& path) {
  return ReadExampleLines(task, path, [](const Json& row, const Where& w, Example* ex) {
    ex->text_a = StringField(row, "sentence", w);
  });
}

ClueDataset ReadPairFile(const ClueTaskInfo& task, const std::string& path) {
  return ReadExampleLines(task, path, [](const Json& row, const Where& w, Example* ex) {
    ex->text_a = StringField(row, "sentence1", w);
    ex->text_b = StringField(row, "sentence2", w);
    ex->has_text_b = true;
  });
}

ClueDataset ReadWscFile(const ClueTaskInfo& task, const std::string& path) {
  return ReadExampleLines(task, path, [](const Json& row, const Where& w, Example* ex) {
    ex->text_a = StringField(row, "text", w);
    if (const Json* i = row.find("idx"); i != nullptr && i->is_int()) ex->wsc_idx = i->as_int();
    const Json& target = Field(row, "target", w);
    if (!target.is_object()) Fail(w.s, ": field 'target' must be an object");
    ex->span1_text = StringField(target, "span1_text", w);
    ex->span2_text = StringField(target, "span2_text", w);
    ex->span1_index = IntField(target, "span1_index", w);
    ex->span2_index = IntField(target, "span2_index", w);
    // span*_index are code-point offsets; clue.py asserts text[idx:idx+len(span)] == span.
    for (int s = 0; s < 2; ++s) {
      const int64_t ci = s == 0 ? ex->span1_index : ex->span2_index;
      const std::string& span = s == 0 ? ex->span1_text : ex->span2_text;
      const int64_t b = Utf8ByteOffset(ex->text_a, ci);
      if (b < 0 || ex->text_a.compare(static_cast<size_t>(b), span.size(), span) != 0) {
        Fail(w.s, ": target.span", s + 1, "_index ", ci, " does not point at span", s + 1,
             "_text '", span, "' in text");
      }
    }
  });
}

ClueDataset ReadCslFile(const ClueTaskInfo& task, const std::string& path) {
  return ReadExampleLines(task, path, [](const Json& row, const Where& w, Example* ex) {
    ex->keywords = StringArray(Field(row, "keyword", w), "keyword", w);
    ex->abstract = StringField(row, "abst", w);
    // bert4keras CLUE baseline (seeds.md §5.2): text1 = '；'.join(keyword), text2 = abst.
    for (size_t i = 0; i < ex->keywords.size(); ++i) {
      ex->text_a += (i ? "；" : "") + ex->keywords[i];
    }
    ex->text_b = ex->abstract;
    ex->has_text_b = true;
  });
}

ClueDataset ReadC3File(const ClueTaskInfo& task, const std::string& path, int64_t first_index) {
  ClueDataset ds = Begin(task, path);
  const Json doc = Json::ParseFile(path);
  if (!doc.is_array()) Fail(path, ": expected a JSON array of [passage, questions, id] documents");
  int64_t qindex = first_index;
  for (size_t d = 0; d < doc.size(); ++d) {
    const Where w{path + ": document " + std::to_string(d)};
    const Json& item = doc.at(d);
    if (!item.is_array() || item.size() < 2) {
      Fail(w.s, ": expected [passage lines, questions, doc-id]");
    }
    ++ds.stats.documents;
    const std::vector<std::string> lines = StringArray(item.at(size_t{0}), "passage", w);
    std::string doc_id;
    if (item.size() > 2) {
      if (item.at(size_t{2}).is_string()) {
        doc_id = item.at(size_t{2}).as_string();
      } else if (item.at(size_t{2}).is_int()) {
        doc_id = std::to_string(item.at(size_t{2}).as_int());
      }
    }
    const Json& qs = item.at(size_t{1});
    if (!qs.is_array()) Fail(w.s, ": questions must be an array");
    for (size_t q = 0; q < qs.size(); ++q) {
      const Where qw{w.s + " question " + std::to_string(q)};
      const Json& qo = qs.at(q);
      if (!qo.is_object()) Fail(qw.s, ": expected an object");
      ++ds.stats.rows;
      Example ex;
      ex.line = ds.stats.rows;
      if (qo.contains("id")) {
        SetId(&ex, qo, qindex, qw);
      } else {
        ex.id = std::to_string(qindex);
        ex.id_is_int = true;
      }
      ++qindex;
      ex.passage_lines = lines;
      for (size_t i = 0; i < lines.size(); ++i) ex.passage += (i ? "||" : "") + lines[i];
      ex.doc_id = doc_id;
      ex.question = StringField(qo, "question", qw);
      ex.choices = StringArray(Field(qo, "choice", qw), "choice", qw);
      if (ex.choices.empty()) Fail(qw.s, ": 'choice' is empty");
      std::string answer;
      if (LabelString(qo, "answer", qw, &answer)) {
        for (size_t c = 0; c < ex.choices.size(); ++c) {
          if (ex.choices[c] == answer) {
            ex.label = static_cast<int>(c);
            break;
          }
        }
        if (ex.label < 0) Fail(qw.s, ": answer '", answer, "' is not one of its choices");
      }
      ds.examples.push_back(std::move(ex));
    }
  }
  Finish(&ds);
  return ds;
}

ClueDataset ReadChidFile(const ClueTaskInfo& task, const std::string& path,
                         const std::string& answer_path) {
  ClueDataset ds = Begin(task, path);
  Json answers;
  if (!answer_path.empty()) {
    answers = Json::ParseFile(answer_path);
    if (!answers.is_object()) Fail(answer_path, ": expected a JSON object {\"#idiom...#\": index}");
    ds.paths.push_back(answer_path);
  }
  ForEachJsonLine(path, [&](const Json& row, int64_t line, int64_t idx) {
    const Where w = LineWhere(path, line);
    const std::vector<std::string> cands =
        StringArray(Field(row, "candidates", w), "candidates", w);
    if (cands.empty()) Fail(w.s, ": 'candidates' is empty");
    const Json& content = Field(row, "content", w);
    if (content.is_string()) {
      // FewCLUE: exactly one "#idiom#" blank, int answer.
      ++ds.stats.rows;
      Example ex;
      ex.line = line;
      SetId(&ex, row, idx, w);
      ex.content = content.as_string();
      ex.text_a = ex.content;
      ex.choices = cands;
      ex.blank_marker = "#idiom#";
      const size_t b = ex.content.find(ex.blank_marker);
      if (b == std::string::npos) Fail(w.s, ": content has no '#idiom#' blank");
      if (ex.content.find(ex.blank_marker, b + 1) != std::string::npos) {
        Fail(w.s, ": content has more than one '#idiom#' blank");
      }
      ex.blank_byte = static_cast<int64_t>(b);
      ex.blank_char = CharsBefore(ex.content, b);
      if (const Json* a = row.find("answer"); a != nullptr && !a->is_null()) {
        const int64_t ans = IntField(row, "answer", w);
        if (ans < 0 || ans >= static_cast<int64_t>(cands.size())) {
          Fail(w.s, ": answer ", ans, " is outside the ", cands.size(), " candidates");
        }
        ex.label = static_cast<int>(ans);
      }
      ds.examples.push_back(std::move(ex));
      return;
    }
    // CLUE: content is a list of passages with numbered blanks "#idiom000123#".
    const std::vector<std::string> passages = StringArray(content, "content", w);
    for (const std::string& p : passages) {
      ++ds.stats.documents;
      size_t pos = 0;
      while ((pos = p.find("#idiom", pos)) != std::string::npos) {
        size_t end = pos + 6;
        while (end < p.size() && std::isdigit(static_cast<unsigned char>(p[end]))) ++end;
        if (end == pos + 6 || end >= p.size() || p[end] != '#') {
          pos += 6;
          continue;
        }
        ++ds.stats.rows;
        Example ex;
        ex.line = line;
        ex.blank_marker = p.substr(pos, end + 1 - pos);
        ex.id = ex.blank_marker;
        ex.content = p;
        ex.text_a = p;
        ex.choices = cands;
        ex.blank_byte = static_cast<int64_t>(pos);
        ex.blank_char = CharsBefore(p, pos);
        if (!answer_path.empty()) {
          const Json* a = answers.find(ex.blank_marker);
          if (a == nullptr)
            Fail(answer_path, ": no answer for blank ", ex.blank_marker, " (", w.s, ")");
          if (!a->is_int() || a->as_int() < 0 ||
              a->as_int() >= static_cast<int64_t>(cands.size())) {
            Fail(answer_path, ": answer of ", ex.blank_marker, " must be a candidate index in [0, ",
                 cands.size(), "), got ", a->Dump());
          }
          ex.label = static_cast<int>(a->as_int());
        }
        ds.examples.push_back(std::move(ex));
        pos = end + 1;
      }
    }
  });
  Finish(&ds);
  return ds;
}

ClueDataset ReadCmrc2018File(const ClueTaskInfo& task, const std::string& path) {
  ClueDataset ds = Begin(task, path);
  const Json doc = Json::ParseFile(path);
  if (!doc.is_object()) Fail(path, ": expected a SQuAD-style JSON object with 'data'");
  const Where top{path};
  const Json& data = Field(doc, "data", top);
  if (!data.is_array()) Fail(path, ": 'data' must be an array");
  for (size_t a = 0; a < data.size(); ++a) {
    const Where aw{path + ": data[" + std::to_string(a) + "]"};
    const Json& art = data.at(a);
    if (!art.is_object()) Fail(aw.s, ": expected an object");
    const std::string title = art.get("title", "");
    const Json& paras = Field(art, "paragraphs", aw);
    if (!paras.is_array()) Fail(aw.s, ": 'paragraphs' must be an array");
    for (size_t p = 0; p < paras.size(); ++p) {
      const Where pw{aw.s + ".paragraphs[" + std::to_string(p) + "]"};
      const Json& para = paras.at(p);
      if (!para.is_object()) Fail(pw.s, ": expected an object");
      ++ds.stats.documents;
      const std::string context = StringField(para, "context", pw);
      const Json& qas = Field(para, "qas", pw);
      if (!qas.is_array()) Fail(pw.s, ": 'qas' must be an array");
      for (size_t q = 0; q < qas.size(); ++q) {
        const Where qw{pw.s + ".qas[" + std::to_string(q) + "]"};
        const Json& qa = qas.at(q);
        if (!qa.is_object()) Fail(qw.s, ": expected an object");
        ++ds.stats.rows;
        Example ex;
        ex.line = ds.stats.rows;
        ex.qid = StringField(qa, "id", qw);
        ex.id = ex.qid;
        ex.question = StringField(qa, "question", qw);
        ex.context = context;
        ex.title = title;
        if (const Json* ans = qa.find("answers"); ans != nullptr && !ans->is_null()) {
          if (!ans->is_array()) Fail(qw.s, ": 'answers' must be an array");
          for (size_t k = 0; k < ans->size(); ++k) {
            const Where kw{qw.s + ".answers[" + std::to_string(k) + "]"};
            const Json& ao = ans->at(k);
            if (!ao.is_object()) Fail(kw.s, ": expected an object");
            CmrcAnswer ca;
            ca.text = StringField(ao, "text", kw);
            ca.answer_start = ao.contains("answer_start") ? IntField(ao, "answer_start", kw) : -1;
            ++ds.stats.answers;
            const int64_t b = Utf8ByteOffset(context, ca.answer_start);
            if (!ca.text.empty() && b >= 0 &&
                context.compare(static_cast<size_t>(b), ca.text.size(), ca.text) == 0) {
              ca.start_char = ca.answer_start;
              ca.start_byte = b;
            } else if (!ca.text.empty()) {
              // The source has wrong offsets (MANIFEST: trial 5 off by one, dev 7 shifted, 193 at
              // -1); move the start to the occurrence of the text nearest the given offset.
              int64_t best_char = -1, best_byte = -1;
              size_t hit = context.find(ca.text);
              size_t counted_to = 0;
              int64_t chars = 0;
              while (hit != std::string::npos) {
                chars += Utf8Length(std::string_view(context).substr(counted_to, hit - counted_to));
                counted_to = hit;
                if (best_char < 0 ||
                    std::llabs(chars - ca.answer_start) < std::llabs(best_char - ca.answer_start)) {
                  best_char = chars;
                  best_byte = static_cast<int64_t>(hit);
                }
                hit = context.find(ca.text, hit + 1);
              }
              if (best_char >= 0) {
                ca.start_char = best_char;
                ca.start_byte = best_byte;
                ca.repaired = true;
                ++ds.stats.repaired_offsets;
              } else {
                ++ds.stats.unlocatable_answers;
              }
            } else {
              ++ds.stats.unlocatable_answers;
            }
            ex.answers.push_back(std::move(ca));
          }
        }
        // Gold answers define "labelled" for span tasks: label 0 = has reference answers.
        ex.label = ex.answers.empty() ? -1 : 0;
        ds.examples.push_back(std::move(ex));
      }
    }
  }
  Finish(&ds);
  return ds;
}

ClueDataset ReadClueFile(const ClueTaskInfo& task, const std::string& path) {
  switch (task.format) {
    case ClueFormat::kSentence:
      return ReadSentenceFile(task, path);
    case ClueFormat::kPair:
      return ReadPairFile(task, path);
    case ClueFormat::kWsc:
      return ReadWscFile(task, path);
    case ClueFormat::kCsl:
      return ReadCslFile(task, path);
    case ClueFormat::kC3:
      return ReadC3File(task, path);
    case ClueFormat::kChid: {
      namespace fs = std::filesystem;
      const fs::path p(path);
      const fs::path ans = p.parent_path() / (p.stem().string() + "_answer.json");
      std::error_code ec;
      return ReadChidFile(task, path, fs::exists(ans, ec) ? ans.string() : "");
    }
    case ClueFormat::kCmrc2018:
      return ReadCmrc2018File(task, path);
  }
  Fail("unhandled CLUE format");
}

namespace {

bool IsFile(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}

// Table alternative of a named split: the first whose files (some of them) exist.
std::vector<std::string> ResolveFromTable(const ClueTaskInfo& task, const std::string& dir,
                                          const std::string& split) {
  namespace fs = std::filesystem;
  auto it = task.split_files.find(split);
  if (it == task.split_files.end()) return {};
  for (const std::vector<std::string>& alt : it->second) {
    std::vector<std::string> found;
    for (const std::string& f : alt) {
      const fs::path p = fs::path(dir) / f;
      if (IsFile(p)) found.push_back(p.string());
    }
    if (!found.empty()) return found;
  }
  return {};
}

bool EndsWithJson(const std::string& name) {
  return name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0;
}

// *.json files of a directory that are not splits: label lists (TNEWS/IFLYTEK labels.json,
// FewCLUE label_index2en2zh.json) and ChID's "<split>_answer.json" dictionaries, which
// ReadClueFile picks up next to their split.
bool IsAuxiliaryJson(const std::string& stem) {
  return stem.find("label") != std::string::npos ||
         (stem.size() > 7 && stem.compare(stem.size() - 7, 7, "_answer") == 0);
}

}  // namespace

std::vector<std::string> ResolveSplitFiles(const ClueTaskInfo& task, const std::string& dir,
                                           const std::string& split) {
  namespace fs = std::filesystem;
  if (task.split_files.count(split)) return ResolveFromTable(task, dir, split);
  // A file stem: only a plain name inside `dir`, so a split can never reach outside it.
  if (split.empty() || split == "." || split == ".." ||
      split.find_first_of("/\\") != std::string::npos) {
    return {};
  }
  const fs::path p = fs::path(dir) / (EndsWithJson(split) ? split : split + ".json");
  if (!IsFile(p)) return {};
  return {p.string()};
}

std::string DescribeAvailableSplits(const ClueTaskInfo& task, const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> named, stems;
  for (const auto& [name, alts] : task.split_files) {
    const std::vector<std::string> files = ResolveFromTable(task, dir, name);
    if (files.empty()) continue;
    std::string list;
    for (const std::string& f : files)
      list += (list.empty() ? "" : " + ") + fs::path(f).filename().string();
    named.push_back(name + " (" + list + ")");
  }
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.extension() != ".json" || !IsFile(p)) continue;
    const std::string stem = p.stem().string();
    if (IsAuxiliaryJson(stem) || task.split_files.count(stem)) continue;
    stems.push_back(stem);
  }
  std::sort(named.begin(), named.end());
  std::sort(stems.begin(), stems.end());
  std::string out;
  for (const auto* v : {&named, &stems})
    for (const std::string& s : *v) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "none" : out;
}

ClueDataset ReadClueSplit(const ClueTaskInfo& task, const std::string& dir,
                          const std::string& split) {
  const std::vector<std::string> files = ResolveSplitFiles(task, dir, split);
  if (files.empty()) {
    std::string tried;
    auto it = task.split_files.find(split);
    if (it != task.split_files.end()) {
      for (const auto& alt : it->second) {
        for (const auto& f : alt) tried += (tried.empty() ? "" : ", ") + f;
      }
    } else {
      tried = EndsWithJson(split) ? split : split + ".json";
    }
    Fail(dir, ": no ", task.name, " split '", split, "' (tried ", tried,
         "); available splits: ", DescribeAvailableSplits(task, dir));
  }
  ClueDataset all;
  all.task = &task;
  for (const std::string& f : files) {
    ClueDataset ds = task.format == ClueFormat::kC3
                         ? ReadC3File(task, f, static_cast<int64_t>(all.examples.size()))
                         : ReadClueFile(task, f);
    all.paths.insert(all.paths.end(), ds.paths.begin(), ds.paths.end());
    for (Example& e : ds.examples) all.examples.push_back(std::move(e));
    ClueReadStats& a = all.stats;
    const ClueReadStats& s = ds.stats;
    a.rows += s.rows;
    a.dropped += s.dropped;
    a.dropped_ids.insert(a.dropped_ids.end(), s.dropped_ids.begin(), s.dropped_ids.end());
    a.documents += s.documents;
    a.answers += s.answers;
    a.repaired_offsets += s.repaired_offsets;
    a.unlocatable_answers += s.unlocatable_answers;
  }
  Finish(&all);
  return all;
}

std::string WscMarkedText(const Example& ex) {
  // Insert from the later span first so the earlier offsets stay valid.
  struct Ins {
    int64_t at;
    std::string open, close;
    size_t len;
  };
  std::vector<Ins> ins = {{ex.span1_index, "_", "_", ex.span1_text.size()},
                          {ex.span2_index, "[", "]", ex.span2_text.size()}};
  std::sort(ins.begin(), ins.end(), [](const Ins& a, const Ins& b) { return a.at > b.at; });
  std::string out = ex.text_a;
  for (const Ins& i : ins) {
    const int64_t b = Utf8ByteOffset(out, i.at);
    if (b < 0) return ex.text_a;
    out.insert(static_cast<size_t>(b) + i.len, i.close);
    out.insert(static_cast<size_t>(b), i.open);
  }
  return out;
}

}  // namespace roformer
