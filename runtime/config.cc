#include "runtime/config.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "runtime/error.h"

namespace roformer {
namespace {

namespace pb = google::protobuf;

class CollectErrors : public pb::io::ErrorCollector {
 public:
  explicit CollectErrors(std::string file) : file_(std::move(file)) {}
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    // protobuf counts lines and columns from 0.
    if (!first_.empty()) return;
    std::ostringstream os;
    os << file_ << ":" << line + 1 << ":" << column + 1 << ": " << message;
    first_ = os.str();
  }
  void AddWarning(int, pb::io::ColumnNumber, const std::string&) override {}
  const std::string& first() const { return first_; }

 private:
  std::string file_;
  std::string first_;
};

}  // namespace

void FillDefaults(pb::Message* m, bool recursive) {
  const pb::Descriptor* d = m->GetDescriptor();
  const pb::Reflection* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    if (f->is_repeated()) continue;
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (recursive) FillDefaults(r->MutableMessage(m, f), true);
      continue;
    }
    if (r->HasField(*m, f)) continue;
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32:
        r->SetInt32(m, f, f->default_value_int32());
        break;
      case pb::FieldDescriptor::CPPTYPE_INT64:
        r->SetInt64(m, f, f->default_value_int64());
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        r->SetUInt32(m, f, f->default_value_uint32());
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        r->SetUInt64(m, f, f->default_value_uint64());
        break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        r->SetFloat(m, f, f->default_value_float());
        break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
        r->SetDouble(m, f, f->default_value_double());
        break;
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        r->SetBool(m, f, f->default_value_bool());
        break;
      case pb::FieldDescriptor::CPPTYPE_STRING:
        r->SetString(m, f, f->default_value_string());
        break;
      case pb::FieldDescriptor::CPPTYPE_ENUM:
        r->SetEnum(m, f, f->default_value_enum());
        break;
      default:
        break;
    }
  }
}

void ParseTextProtoFile(const std::string& path, pb::Message* msg) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, ": cannot open config file");
  std::stringstream ss;
  ss << in.rdbuf();
  CollectErrors errors(path);
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(ss.str(), msg)) {
    Fail(errors.first().empty() ? path + ": cannot parse config" : errors.first());
  }
}

config::Config LoadConfigFile(const std::string& path) {
  config::Config cfg;
  ParseTextProtoFile(path, &cfg);
  return cfg;
}

void ApplyOverride(config::Config* cfg, const std::string& assignment) {
  ApplyOverrideTo(cfg, assignment);
}

void ApplyOverrideTo(pb::Message* msg, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    Fail("--set ", assignment, ": expected path.to.field=value");
  }
  std::string path = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  pb::Message* m = msg;
  const pb::FieldDescriptor* field = nullptr;
  std::stringstream ps(path);
  std::string part, walked;
  std::vector<std::string> parts;
  while (std::getline(ps, part, '.')) parts.push_back(part);
  for (size_t i = 0; i < parts.size(); ++i) {
    field = m->GetDescriptor()->FindFieldByName(parts[i]);
    walked += (i ? "." : "") + parts[i];
    if (!field) {
      std::string known;
      const pb::Descriptor* d = m->GetDescriptor();
      for (int k = 0; k < d->field_count(); ++k) known += (k ? ", " : "") + d->field(k)->name();
      Fail("--set ", assignment, ": unknown field '", walked, "' (known here: ", known, ")");
    }
    if (i + 1 < parts.size()) {
      if (field->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        Fail("--set ", assignment, ": '", walked, "' is not a message");
      }
      m = m->GetReflection()->MutableMessage(m, field);
    }
  }
  if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
    Fail("--set ", assignment, ": '", path, "' is a message; set one of its fields");
  }
  std::string text = value;
  if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING &&
      (text.empty() || text.front() != '"')) {
    std::string esc;
    for (char c : value) {
      if (c == '"' || c == '\\') esc += '\\';
      esc += c;
    }
    text = "\"" + esc + "\"";
  }
  if (field->is_repeated()) m->GetReflection()->ClearField(m, field);
  CollectErrors errors("--set " + assignment);
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFieldValueFromString(text, field, m)) {
    Fail("--set ", assignment, ": '", value, "' is not a valid ", field->type_name(), " for field ",
         path);
  }
}

void ApplyOverrides(config::Config* cfg, const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) ApplyOverride(cfg, a);
}

void ValidateConfig(const config::Config& cfg, const std::string& origin) {
  auto bad = [&](const std::string& field, const auto& value, const std::string& why) {
    Fail(origin, ": field ", field, " = ", value, ": ", why);
  };
  const auto& m = cfg.model();
  if (m.vocab_size() < 0) bad("model.vocab_size", m.vocab_size(), "must be >= 0");
  if (m.hidden_size() <= 0) bad("model.hidden_size", m.hidden_size(), "must be > 0");
  if (m.embedding_size() < 0) bad("model.embedding_size", m.embedding_size(), "must be >= 0");
  if (m.num_hidden_layers() <= 0)
    bad("model.num_hidden_layers", m.num_hidden_layers(), "must be > 0");
  if (m.num_attention_heads() <= 0) {
    bad("model.num_attention_heads", m.num_attention_heads(), "must be > 0");
  }
  if (m.hidden_size() % m.num_attention_heads() != 0) {
    bad("model.hidden_size", m.hidden_size(), "must be divisible by model.num_attention_heads");
  }
  if ((m.hidden_size() / m.num_attention_heads()) % 2 != 0) {
    bad("model.hidden_size", m.hidden_size(), "head size must be even for RoPE pairs");
  }
  if (m.intermediate_size() <= 0)
    bad("model.intermediate_size", m.intermediate_size(), "must be > 0");
  auto prob = [&](const std::string& f, float p) {
    if (!(p >= 0.0f && p < 1.0f)) bad(f, p, "must be in [0, 1)");
  };
  prob("model.hidden_dropout_prob", m.hidden_dropout_prob());
  prob("model.attention_probs_dropout_prob", m.attention_probs_dropout_prob());
  if (m.attention_scale() != "sqrt_d" && m.attention_scale() != "log_n") {
    bad("model.attention_scale", "\"" + m.attention_scale() + "\"",
        "must be \"sqrt_d\" or \"log_n\"");
  }
  if (m.realformer_running_mean() && !m.realformer()) {
    bad("model.realformer_running_mean", "true", "needs model.realformer: true");
  }
  if (m.max_position_embeddings() <= 0) {
    bad("model.max_position_embeddings", m.max_position_embeddings(), "must be > 0");
  }
  if (m.type_vocab_size() <= 0) bad("model.type_vocab_size", m.type_vocab_size(), "must be > 0");
  if (!(m.layer_norm_eps() > 0)) bad("model.layer_norm_eps", m.layer_norm_eps(), "must be > 0");
  if (!(m.initializer_range() > 0))
    bad("model.initializer_range", m.initializer_range(), "must be > 0");

  const auto& t = cfg.train();
  if (t.steps() < 0) bad("train.steps", t.steps(), "must be >= 0");
  if (t.micro_batch() <= 0) bad("train.micro_batch", t.micro_batch(), "must be > 0");
  if (t.global_batch() <= 0) bad("train.global_batch", t.global_batch(), "must be > 0");
  if (t.global_batch() % t.micro_batch() != 0) {
    bad("train.global_batch", t.global_batch(), "must be a multiple of train.micro_batch");
  }
  if (t.seq_len() < 8) bad("train.seq_len", t.seq_len(), "must be >= 8");
  if (t.seq_len() > m.max_position_embeddings()) {
    bad("train.seq_len", t.seq_len(), "exceeds model.max_position_embeddings");
  }
  if (!(t.lr() > 0 && std::isfinite(t.lr()))) bad("train.lr", t.lr(), "must be > 0");
  if (t.warmup_steps() < 0) bad("train.warmup_steps", t.warmup_steps(), "must be >= 0");
  if (t.lr_decay() != "linear" && t.lr_decay() != "cosine" && t.lr_decay() != "constant") {
    bad("train.lr_decay", "\"" + t.lr_decay() + "\"",
        "must be \"linear\", \"cosine\" or \"constant\"");
  }
  if (!(t.min_lr_ratio() >= 0 && t.min_lr_ratio() <= 1)) {
    bad("train.min_lr_ratio", t.min_lr_ratio(), "must be in [0, 1]");
  }
  if (!(t.weight_decay() >= 0)) bad("train.weight_decay", t.weight_decay(), "must be >= 0");
  if (!(t.adam_beta1() >= 0 && t.adam_beta1() < 1))
    bad("train.adam_beta1", t.adam_beta1(), "must be in [0, 1)");
  if (!(t.adam_beta2() >= 0 && t.adam_beta2() < 1))
    bad("train.adam_beta2", t.adam_beta2(), "must be in [0, 1)");
  if (!(t.adam_eps() > 0)) bad("train.adam_eps", t.adam_eps(), "must be > 0");
  if (!(t.grad_clip() >= 0)) bad("train.grad_clip", t.grad_clip(), "must be >= 0");
  if (t.log_every() <= 0) bad("train.log_every", t.log_every(), "must be > 0");
  if (t.eval_every() < 0) bad("train.eval_every", t.eval_every(), "must be >= 0");
  if (t.eval_samples() < 0) bad("train.eval_samples", t.eval_samples(), "must be >= 0");
  if (t.max_consecutive_skips() <= 0) {
    bad("train.max_consecutive_skips", t.max_consecutive_skips(), "must be > 0");
  }
  if (t.device() != "cpu" && t.device() != "cuda") {
    bad("train.device", "\"" + t.device() + "\"", "must be \"cpu\" or \"cuda\"");
  }
  if (t.device() != "cpu" && cfg.optimizer().zero_stage() != 0) {
    bad("optimizer.zero_stage", cfg.optimizer().zero_stage(),
        "must be 0 with train.device = \"" + t.device() +
            "\" (every GPU keeps the full Adam state)");
  }
  if (t.device() != "cpu" && cfg.multitask().weighting() == "gradnorm") {
    bad("multitask.weighting", "\"gradnorm\"",
        "is not supported with train.device = \"" + t.device() + "\" yet (every other scheme is)");
  }
  if (!(t.mask_prob() > 0 && t.mask_prob() < 1))
    bad("train.mask_prob", t.mask_prob(), "must be in (0, 1)");

  const auto& d = cfg.data();
  if (!(d.eval_fraction() >= 0 && d.eval_fraction() < 1)) {
    bad("data.eval_fraction", d.eval_fraction(), "must be in [0, 1)");
  }
  const auto& p = cfg.parallel();
  if (p.tp() <= 0) bad("parallel.tp", p.tp(), "must be > 0");
  if (p.dp() <= 0) bad("parallel.dp", p.dp(), "must be > 0");
  if (p.dp_bucket_mb() <= 0) bad("parallel.dp_bucket_mb", p.dp_bucket_mb(), "must be > 0");
  if (!(p.watchdog_timeout_s() >= 0)) {
    bad("parallel.watchdog_timeout_s", p.watchdog_timeout_s(), "must be >= 0");
  }
  if (cfg.optimizer().zero_stage() != 0 && cfg.optimizer().zero_stage() != 1) {
    bad("optimizer.zero_stage", cfg.optimizer().zero_stage(), "must be 0 or 1");
  }
  if (cfg.checkpoint().every() < 0)
    bad("checkpoint.every", cfg.checkpoint().every(), "must be >= 0");
  if (cfg.checkpoint().keep() <= 0) bad("checkpoint.keep", cfg.checkpoint().keep(), "must be > 0");
}

config::Config ResolveConfig(const std::string& path, const std::vector<std::string>& overrides) {
  config::Config cfg;
  if (!path.empty()) cfg = LoadConfigFile(path);
  ApplyOverrides(&cfg, overrides);
  FillDefaults(&cfg);
  ValidateConfig(cfg, path.empty() ? std::string("config (defaults + --set)") : path);
  return cfg;
}

std::string ConfigToText(const config::Config& cfg) {
  std::string out;
  pb::TextFormat::PrintToString(cfg, &out);
  return out;
}

}  // namespace roformer
