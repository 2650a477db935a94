#include "model/hf_interop.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/safetensors.h"

namespace roformer {
namespace fs = std::filesystem;

namespace {

constexpr char kWordEmb[] = "roformer.embeddings.word_embeddings.weight";
constexpr char kMlmBias[] = "cls.predictions.bias";
constexpr char kDecoderW[] = "cls.predictions.decoder.weight";
constexpr char kDecoderB[] = "cls.predictions.decoder.bias";
constexpr char kTable[] = "roformer.encoder.embed_positions.weight";

bool StartsWith(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// HF tensors by name across one or several safetensors files.
class HfTensors {
 public:
  explicit HfTensors(const std::string& dir) {
    fs::path single = fs::path(dir) / "model.safetensors";
    fs::path index = fs::path(dir) / "model.safetensors.index.json";
    if (fs::exists(single)) {
      Add(single.string());
    } else if (fs::exists(index)) {
      Json j = Json::ParseFile(index.string());
      if (!j.is_object() || !j.contains("weight_map") || !j.at("weight_map").is_object())
        Fail(index.string(), ": no \"weight_map\" object");
      std::set<std::string> files;
      for (const auto& [name, file] : j.at("weight_map").as_object()) {
        if (!file.is_string()) Fail(index.string(), ": weight_map[\"", name, "\"] is not a string");
        files.insert(file.as_string());
      }
      for (const auto& f : files) Add((fs::path(dir) / f).string());
    } else if (fs::exists(fs::path(dir) / "pytorch_model.bin")) {
      Fail(dir,
           ": only pytorch_model.bin found; re-save it as safetensors first "
           "(RoFormerForMaskedLM.from_pretrained(dir).save_pretrained(out, "
           "safe_serialization=True))");
    } else {
      Fail(dir, ": no model.safetensors (or model.safetensors.index.json)");
    }
    // Checkpoints saved from the bare RoFormerModel have no "roformer." prefix.
    bool prefixed = false;
    for (const auto& [name, loc] : where_) prefixed |= StartsWith(name, "roformer.");
    if (!prefixed) {
      std::map<std::string, std::pair<size_t, std::string>> renamed;
      for (const auto& [name, loc] : where_) {
        bool head = StartsWith(name, "cls.");
        renamed[head ? name : "roformer." + name] = {loc.first, name};
      }
      where_ = std::move(renamed);
    }
  }

  bool has(const std::string& name) const { return where_.count(name) > 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : where_) out.push_back(kv.first);
    return out;
  }
  const safetensors::TensorInfo& info(const std::string& name) const {
    const auto& [i, orig] = where_.at(name);
    return readers_[i].info(orig);
  }
  std::vector<float> Read(const std::string& name) const {
    const auto& [i, orig] = where_.at(name);
    return readers_[i].ReadFloat(orig);
  }
  std::string origin(const std::string& name) const {
    return readers_[where_.at(name).first].origin();
  }

 private:
  void Add(const std::string& path) {
    readers_.push_back(safetensors::Reader::Open(path));
    for (const auto& t : readers_.back().tensors()) {
      if (where_.count(t.name)) Fail(path, ": tensor '", t.name, "' also appears in another shard");
      where_[t.name] = {readers_.size() - 1, t.name};
    }
  }
  std::vector<safetensors::Reader> readers_;
  std::map<std::string, std::pair<size_t, std::string>> where_;  // name -> (reader, name in file)
};

float MaxAbsDiff(const std::vector<float>& a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace

config::ModelConfig ModelConfigFromHf(const Json& hf, const std::string& origin,
                                      std::vector<std::string>* warnings) {
  if (!hf.is_object()) Fail(origin, ": config is not a JSON object");
  auto ctx = [&](const char* key) { return origin + ": key \"" + key + "\""; };
  auto req_int = [&](const char* key) -> int {
    const Json* v = hf.find(key);
    if (!v) Fail(origin, ": missing required key \"", key, "\"");
    if (!v->is_int() || v->as_int() <= 0 || v->as_int() > (1 << 30))
      Fail(ctx(key), ": expected a positive integer, got ", v->Dump());
    return static_cast<int>(v->as_int());
  };
  auto opt_int = [&](const char* key, int def) -> int {
    try {
      int64_t v = hf.get(key, static_cast<int64_t>(def));
      if (v < 0 || v > (1 << 30)) Fail("out of range: ", v);
      return static_cast<int>(v);
    } catch (const Error& e) {
      Fail(ctx(key), ": ", e.what());
    }
  };
  auto opt_num = [&](const char* key, double def) -> double {
    try {
      return hf.get(key, def);
    } catch (const Error& e) {
      Fail(ctx(key), ": ", e.what());
    }
  };
  auto opt_bool = [&](const char* key, bool def) -> bool {
    try {
      return hf.get(key, def);
    } catch (const Error& e) {
      Fail(ctx(key), ": ", e.what());
    }
  };
  auto opt_str = [&](const char* key, const char* def) -> std::string {
    try {
      return hf.get(key, def);
    } catch (const Error& e) {
      Fail(ctx(key), ": ", e.what());
    }
  };
  auto warn = [&](const std::string& w) {
    if (warnings) warnings->push_back(w);
  };

  std::string model_type = opt_str("model_type", "roformer");
  if (model_type != "roformer")
    Fail(ctx("model_type"), ": \"", model_type, "\" is not a RoFormer checkpoint");
  std::string act = opt_str("hidden_act", "gelu");
  if (act != "gelu")
    Fail(ctx("hidden_act"), ": \"", act,
         "\" unsupported (the model implements exact-erf \"gelu\")");
  if (opt_bool("rotary_value", false)) Fail(ctx("rotary_value"), ": true is unsupported");
  if (opt_bool("is_decoder", false)) Fail(ctx("is_decoder"), ": decoder RoFormer is unsupported");
  if (opt_bool("add_cross_attention", false))
    Fail(ctx("add_cross_attention"), ": cross-attention is unsupported");
  if (opt_int("pad_token_id", 0) != 0)
    warn(origin + ": pad_token_id " + std::to_string(opt_int("pad_token_id", 0)) +
         " != 0; this model treats id 0 as [PAD] (padding_idx)");
  if (!opt_bool("tie_word_embeddings", true))
    warn(origin +
         ": tie_word_embeddings is false; this model always ties the MLM decoder to "
         "the word embeddings");

  config::ModelConfig m;
  m.set_vocab_size(req_int("vocab_size"));
  m.set_hidden_size(req_int("hidden_size"));
  int e = opt_int("embedding_size", 0);
  m.set_embedding_size(e == m.hidden_size() ? 0 : e);
  m.set_num_hidden_layers(req_int("num_hidden_layers"));
  m.set_num_attention_heads(req_int("num_attention_heads"));
  m.set_intermediate_size(req_int("intermediate_size"));
  m.set_hidden_dropout_prob(static_cast<float>(opt_num("hidden_dropout_prob", 0.1)));
  m.set_attention_probs_dropout_prob(
      static_cast<float>(opt_num("attention_probs_dropout_prob", 0.1)));
  m.set_max_position_embeddings(opt_int("max_position_embeddings", 1536));
  m.set_type_vocab_size(opt_int("type_vocab_size", 2));
  m.set_layer_norm_eps(static_cast<float>(opt_num("layer_norm_eps", 1e-12)));
  m.set_initializer_range(static_cast<float>(opt_num("initializer_range", 0.02)));
  m.set_realformer(opt_bool("realformer", false));
  m.set_realformer_running_mean(opt_bool("realformer_running_mean", false));
  m.set_pre_ln(opt_bool("pre_ln", false));
  m.set_attention_scale(opt_str("attention_scale", "sqrt_d"));
  ConfigForModel(m, origin);  // range checks (Error names the field)
  return m;
}

Json HfConfigFromModel(const config::ModelConfig& m) {
  int e = m.embedding_size() > 0 ? m.embedding_size() : m.hidden_size();
  Json j = Json::Object();
  j.set("architectures", Json::Array({"RoFormerForMaskedLM"}));
  j.set("model_type", "roformer");
  j.set("vocab_size", m.vocab_size());
  j.set("embedding_size", e);
  j.set("hidden_size", m.hidden_size());
  j.set("num_hidden_layers", m.num_hidden_layers());
  j.set("num_attention_heads", m.num_attention_heads());
  j.set("intermediate_size", m.intermediate_size());
  j.set("hidden_act", "gelu");
  j.set("hidden_dropout_prob", static_cast<double>(m.hidden_dropout_prob()));
  j.set("attention_probs_dropout_prob", static_cast<double>(m.attention_probs_dropout_prob()));
  j.set("max_position_embeddings", m.max_position_embeddings());
  j.set("type_vocab_size", m.type_vocab_size());
  j.set("initializer_range", static_cast<double>(m.initializer_range()));
  j.set("layer_norm_eps", static_cast<double>(m.layer_norm_eps()));
  j.set("pad_token_id", 0);
  j.set("rotary_value", false);
  j.set("is_decoder", false);
  j.set("tie_word_embeddings", true);
  j.set("use_cache", true);
  j.set("dtype", "float32");
  j.set("realformer", m.realformer());
  j.set("realformer_running_mean", m.realformer_running_mean());
  j.set("pre_ln", m.pre_ln());
  j.set("attention_scale", m.attention_scale());
  if (m.realformer() || m.pre_ln() || m.attention_scale() != "sqrt_d") {
    // transformers loads the weights of these variants but computes plain Post-LN RoFormer.
    j.set("roformer_note",
          "RealFormer / Pre-LN / log-n variant: HF RoFormerForMaskedLM loads these weights but "
          "cannot run the variant (it ignores realformer, pre_ln and attention_scale); use "
          "`roformer infer` or a model that implements them");
  }
  return j;
}

config::Config ConfigForModel(const config::ModelConfig& model, const std::string& origin) {
  config::Config c;
  *c.mutable_model() = model;
  if (model.max_position_embeddings() < c.train().seq_len())
    c.mutable_train()->set_seq_len(std::max(8, model.max_position_embeddings()));
  ValidateConfig(c, origin);
  return c;
}

std::vector<float> HfSinusoidalTable(int max_pos, int d) {
  // position_enc[p, j] = p / 10000^(2*(j//2)/d) in float64; sin of the even columns fills the
  // first half, cos of the odd columns the second (HF create_weight, d even).
  std::vector<float> w(static_cast<size_t>(max_pos) * d);
  const int half = d / 2;
  for (int p = 0; p < max_pos; ++p) {
    for (int i = 0; i < half; ++i) {
      double angle = p / std::pow(10000.0, 2.0 * i / d);
      w[static_cast<size_t>(p) * d + i] = static_cast<float>(std::sin(angle));
      w[static_cast<size_t>(p) * d + half + i] = static_cast<float>(std::cos(angle));
    }
  }
  return w;
}

std::unique_ptr<RoFormerModel> LoadHfModel(const std::string& dir, uint64_t seed,
                                           HfImportReport* report, bool with_optimizer_state) {
  HfImportReport local;
  HfImportReport& rep = report ? *report : local;
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(cfg_path)) Fail(dir, ": no config.json (not a Hugging Face model directory)");
  config::ModelConfig cfg = ModelConfigFromHf(Json::ParseFile(cfg_path), cfg_path, &rep.warnings);
  HfTensors hf(dir);

  auto model = std::make_unique<RoFormerModel>(cfg, TpRegion(), with_optimizer_state);
  model->InitWeights(seed);
  ParamStore& store = model->store();
  const ModelDims& dims = model->dims();
  std::set<std::string> used;

  auto copy_into = [&](const std::string& ours, const std::string& theirs) {
    const ParamInfo& pi = store.info(ours);
    const auto& ti = hf.info(theirs);
    std::vector<int64_t> want = pi.global_shape;
    const bool vocab_rows = ours == kWordEmb || ours == kMlmBias;
    if (vocab_rows) want[0] = dims.vocab;
    if (ti.shape != want)
      Fail(hf.origin(theirs), ": tensor '", theirs, "' has shape ",
           safetensors::ShapeString(ti.shape), ", the model (config.json) expects ",
           safetensors::ShapeString(want));
    std::vector<float> v = hf.Read(theirs);
    float* dst = store.param(ours);
    std::fill(dst, dst + pi.numel, 0.0f);  // padded vocab rows stay zero
    std::copy(v.begin(), v.end(), dst);
    for (float x : v) {
      if (!std::isfinite(x))
        Fail(hf.origin(theirs), ": tensor '", theirs, "' has non-finite values");
    }
    used.insert(theirs);
  };

  for (const ParamInfo& pi : store.infos()) {
    const std::string& name = pi.name;
    if (hf.has(name)) {
      copy_into(name, name);
      rep.loaded.push_back(name);
    } else if (name == kMlmBias && hf.has(kDecoderB)) {
      copy_into(name, kDecoderB);
      rep.loaded.push_back(name + " (from " + kDecoderB + ")");
    } else if (StartsWith(name, "sop.") || StartsWith(name, "cls.")) {
      rep.initialised.push_back(name);
    } else {
      Fail(dir, ": tensor '", name,
           "' needed by this model (config.json) is not in the checkpoint");
    }
  }
  bool head_missing = false;
  for (const auto& n : rep.initialised) head_missing |= StartsWith(n, "cls.");
  if (head_missing)
    rep.warnings.push_back(dir + ": the checkpoint has no (complete) MLM head; it was initialised");

  for (const std::string& name : hf.names()) {
    if (used.count(name)) continue;
    if (name == kTable) {
      const int d = dims.head_dim;
      std::vector<int64_t> want = {cfg.max_position_embeddings(), d};
      if (hf.info(name).shape != want)
        Fail(hf.origin(name), ": tensor '", name, "' has shape ",
             safetensors::ShapeString(hf.info(name).shape), ", expected ",
             safetensors::ShapeString(want));
      std::vector<float> theirs = hf.Read(name);
      std::vector<float> ours = HfSinusoidalTable(cfg.max_position_embeddings(), d);
      float diff = MaxAbsDiff(ours, theirs.data(), ours.size());
      if (!(diff <= 1e-6f))
        Fail(hf.origin(name), ": tensor '", name, "' differs from the RoPE sinusoidal table by ",
             diff, " (max abs); the checkpoint uses another position convention");
      std::ostringstream os;
      os << name << " (matches the RoPE table, max abs diff " << diff << ")";
      rep.ignored.push_back(os.str());
    } else if (name == kDecoderW) {
      std::vector<int64_t> want = {dims.vocab, dims.embedding};
      if (hf.info(name).shape != want)
        Fail(hf.origin(name), ": tensor '", name, "' has shape ",
             safetensors::ShapeString(hf.info(name).shape), ", expected ",
             safetensors::ShapeString(want));
      float diff = MaxAbsDiff(hf.Read(name), store.param(kWordEmb),
                              static_cast<size_t>(dims.vocab) * dims.embedding);
      if (diff != 0.0f)
        rep.warnings.push_back(std::string(kDecoderW) + " differs from " + kWordEmb +
                               " (max abs diff " + std::to_string(diff) +
                               "); this model ties them and uses the word embeddings");
      rep.ignored.push_back(name + " (tied to " + kWordEmb + ")");
    } else if (name == kDecoderB) {
      std::vector<int64_t> want = {dims.vocab};
      if (hf.info(name).shape != want)
        Fail(hf.origin(name), ": tensor '", name, "' has shape ",
             safetensors::ShapeString(hf.info(name).shape), ", expected ",
             safetensors::ShapeString(want));
      float diff =
          MaxAbsDiff(hf.Read(name), store.param(kMlmBias), static_cast<size_t>(dims.vocab));
      if (diff != 0.0f)
        rep.warnings.push_back(std::string(kDecoderB) + " differs from " + kMlmBias +
                               " (max abs diff " + std::to_string(diff) + "); using " + kMlmBias);
      rep.ignored.push_back(name + " (alias of " + kMlmBias + ")");
    } else {
      Fail(hf.origin(name), ": tensor '", name,
           "' is not used by this model (unsupported head or variant; config.json may not match)");
    }
  }
  return model;
}

void ExportHfModel(const RoFormerModel& model, const std::string& dir,
                   std::vector<std::string>* dropped) {
  const ModelDims& dims = model.dims();
  if (dims.tp != 1) Fail("ExportHfModel: the model must be built with tp = 1 (got ", dims.tp, ")");
  const ParamStore& store = model.store();
  safetensors::Writer w;
  for (const ParamInfo& pi : store.infos()) {
    if (StartsWith(pi.name, "sop.")) {
      if (dropped) dropped->push_back(pi.name);
      continue;
    }
    std::vector<int64_t> shape = pi.global_shape;
    int64_t numel = pi.numel;
    if (pi.name == kWordEmb || pi.name == kMlmBias) {
      numel = numel / shape[0] * dims.vocab;
      shape[0] = dims.vocab;
    }
    w.AddFloat(pi.name, shape, std::span<const float>(store.param(pi.name), numel));
  }
  const auto& cfg = model.config();
  std::vector<float> table = HfSinusoidalTable(cfg.max_position_embeddings(), dims.head_dim);
  w.AddFloat(kTable, {cfg.max_position_embeddings(), dims.head_dim}, table);
  w.SetMetadata("format", "pt");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) Fail(dir, ": cannot create directory: ", ec.message());
  w.WriteFile((fs::path(dir) / "model.safetensors").string());
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  std::ofstream out(cfg_path, std::ios::trunc);
  if (!out) Fail(cfg_path, ": cannot open for writing");
  out << HfConfigFromModel(cfg).Dump(2) << "\n";
  if (!out) Fail(cfg_path, ": write failed");
}

}  // namespace roformer
