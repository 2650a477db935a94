// Parity with Hugging Face RoFormerForMaskedLM (and our short PyTorch patch of it for RealFormer,
// Pre-LN and the log-n scale): every tests/reference/fixtures/<name>/ made by
// tests/reference/make_hf_fixtures.py is imported through LoadHfModel (the `roformer convert
// --from-hf` code path) and must match, in fp32, the loss and logits to 1e-5 relative, the hidden
// states to 1e-5 relative and every parameter gradient to 1e-4 relative (max|ours - ref| /
// max(max|ref|, 1e-6), per tensor).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "model/hf_interop.h"
#include "model/roformer_model.h"
#include "runtime/error.h"
#include "runtime/safetensors.h"

namespace roformer {
namespace {
namespace fs = std::filesystem;

constexpr double kOutTol = 1e-5;
constexpr double kGradTol = 1e-4;

// ROFORMER_HF_FIXTURES overrides the directory (e.g. fixtures regenerated elsewhere).
fs::path FixtureRoot() {
  if (const char* env = std::getenv("ROFORMER_HF_FIXTURES")) return env;
  return fs::path(ROFORMER_SOURCE_DIR) / "tests/reference/fixtures";
}

std::vector<std::string> FixtureNames() {
  std::vector<std::string> out;
  if (!fs::exists(FixtureRoot())) return out;
  for (const auto& e : fs::directory_iterator(FixtureRoot())) {
    if (e.is_directory() && fs::exists(e.path() / "config.json") &&
        fs::exists(e.path() / "expected.safetensors"))
      out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// max|a-b| / max(max|ref|, 1e-6) over the listed elements.
struct Cmp {
  double max_diff = 0, max_ref = 0;
  double rel() const { return max_diff / std::max(max_ref, 1e-6); }
  void Add(double ours, double ref) {
    double d = std::fabs(ours - ref);
    if (!(d <= max_diff)) max_diff = std::isnan(d) ? INFINITY : d;
    max_ref = std::max(max_ref, std::fabs(ref));
  }
};

struct Worst {
  std::string name;
  double rel = -1;
  void Note(const std::string& n, double r) {
    if (r > rel) {
      rel = r;
      name = n;
    }
  }
};

class HfParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfParityTest, MatchesReference) {
  const std::string name = GetParam();
  const fs::path dir = FixtureRoot() / name;
  HfImportReport report;
  std::unique_ptr<RoFormerModel> model;
  try {
    model = LoadHfModel(dir.string(), /*seed=*/1, &report, /*with_optimizer_state=*/false);
  } catch (const Error& e) {
    FAIL() << "import failed: " << e.what();
  }
  for (const auto& w : report.warnings) ADD_FAILURE() << "import warning: " << w;
  for (const auto& n : report.initialised) EXPECT_EQ(n.rfind("sop.", 0), 0u) << n;

  auto exp = safetensors::Reader::Open((dir / "expected.safetensors").string());
  const auto& ishape = exp.info("input_ids").shape;
  ASSERT_EQ(ishape.size(), 2u);
  const int B = static_cast<int>(ishape[0]), L = static_cast<int>(ishape[1]);
  auto ids = exp.ReadInt("input_ids", {B, L});
  auto tt = exp.ReadInt("token_type_ids", {B, L});
  auto am = exp.ReadInt("attention_mask", {B, L});
  auto labels = exp.ReadInt("labels", {B, L});
  const ModelDims& d = model->dims();
  const int V = d.vocab, H = d.hidden;

  Batch batch;
  batch.batch = B;
  batch.seq_len = L;
  for (int i = 0; i < B * L; ++i) {
    batch.input_ids.push_back(static_cast<int32_t>(ids[i]));
    batch.token_type_ids.push_back(static_cast<int32_t>(tt[i]));
    batch.attention_mask.push_back(static_cast<int32_t>(am[i]));
    if (labels[i] != -100) {
      batch.mlm_positions.push_back(i);
      batch.mlm_labels.push_back(static_cast<int32_t>(labels[i]));
    }
  }

  std::ostringstream log;
  Worst worst_out, worst_grad;

  // ---- loss and gradients ----
  ParamStore& store = model->store();
  store.ZeroGrads();
  LossStats st = model->ForwardBackward(batch, DropoutContext{}, /*backward=*/true, 1.0f);
  const double ref_loss = exp.ReadFloat("loss", {1})[0];
  const double loss_rel = std::fabs(st.loss - ref_loss) / std::max(std::fabs(ref_loss), 1e-6);
  log << name << ": loss ours " << st.loss << " ref " << ref_loss << " rel " << loss_rel << "\n";
  EXPECT_LE(loss_rel, kOutTol) << "loss";
  worst_out.Note("loss", loss_rel);

  int grads_checked = 0;
  for (const auto& t : exp.tensors()) {
    if (t.name.rfind("grad.", 0) != 0) continue;
    const std::string pname = t.name.substr(5);
    if (!store.has(pname)) {
      ADD_FAILURE() << "reference has a gradient for '" << pname
                    << "', the model has no such parameter";
      continue;
    }
    const ParamInfo& pi = store.info(pname);
    std::vector<float> ref = exp.ReadFloat(t.name);
    const float* g = store.grads().data() + pi.offset;
    const size_t n = ref.size();
    ASSERT_LE(static_cast<int64_t>(n), pi.numel) << pname;
    Cmp c;
    for (size_t i = 0; i < n; ++i) c.Add(g[i], ref[i]);
    // Padded vocab rows never receive gradient.
    double pad_max = 0;
    for (int64_t i = static_cast<int64_t>(n); i < pi.numel; ++i)
      pad_max = std::max(pad_max, static_cast<double>(std::fabs(g[i])));
    EXPECT_EQ(pad_max, 0.0) << pname << ": padded vocab rows got gradient";
    log << "  grad " << pname << ": rel " << c.rel() << " (max diff " << c.max_diff << ", max ref "
        << c.max_ref << ")\n";
    EXPECT_LE(c.rel(), kGradTol) << "gradient of " << pname << ": max diff " << c.max_diff
                                 << ", max |ref| " << c.max_ref;
    worst_grad.Note(pname, c.rel());
    ++grads_checked;
  }
  // Every trainable parameter with an HF counterpart has a reference gradient.
  for (const ParamInfo& pi : store.infos()) {
    if (pi.name.rfind("sop.", 0) == 0) continue;
    EXPECT_TRUE(exp.has("grad." + pi.name)) << "no reference gradient for " << pi.name;
  }
  EXPECT_GT(grads_checked, 0);

  // ---- logits and hidden states (Infer: every position; compare non-padded tokens) ----
  std::vector<float> logits, seq_out;
  std::vector<std::vector<float>> hidden;
  model->Infer(batch, &logits, &seq_out, &hidden);
  std::vector<float> ref_logits = exp.ReadFloat("logits", {B, L, V});
  ASSERT_EQ(logits.size(), ref_logits.size());
  Cmp cl;
  for (int r = 0; r < B * L; ++r) {
    if (!am[r]) continue;
    for (int v = 0; v < V; ++v) cl.Add(logits[size_t(r) * V + v], ref_logits[size_t(r) * V + v]);
  }
  log << "  logits: rel " << cl.rel() << " (max diff " << cl.max_diff << ")\n";
  EXPECT_LE(cl.rel(), kOutTol) << "logits: max diff " << cl.max_diff << ", max |ref| "
                               << cl.max_ref;
  worst_out.Note("logits", cl.rel());

  const int layers = d.layers;
  ASSERT_EQ(hidden.size(), static_cast<size_t>(layers + 1));
  for (int i = 0; i <= layers; ++i) {
    std::string hn = "hidden_states_" + std::to_string(i);
    std::vector<float> ref = exp.ReadFloat(hn, {B, L, H});
    ASSERT_EQ(hidden[i].size(), ref.size()) << hn;
    Cmp c;
    for (int r = 0; r < B * L; ++r) {
      if (!am[r]) continue;
      for (int k = 0; k < H; ++k) c.Add(hidden[i][size_t(r) * H + k], ref[size_t(r) * H + k]);
    }
    log << "  " << hn << ": rel " << c.rel() << "\n";
    EXPECT_LE(c.rel(), kOutTol) << hn << ": max diff " << c.max_diff << ", max |ref| " << c.max_ref;
    worst_out.Note(hn, c.rel());
  }
  // sequence_output: the last hidden state, except Pre-LN (after the final LN; stored separately).
  {
    std::vector<float> ref =
        exp.has("sequence_output")
            ? exp.ReadFloat("sequence_output", {B, L, H})
            : exp.ReadFloat("hidden_states_" + std::to_string(layers), {B, L, H});
    ASSERT_EQ(seq_out.size(), ref.size());
    Cmp c;
    for (int r = 0; r < B * L; ++r) {
      if (!am[r]) continue;
      for (int k = 0; k < H; ++k) c.Add(seq_out[size_t(r) * H + k], ref[size_t(r) * H + k]);
    }
    log << "  sequence_output: rel " << c.rel() << "\n";
    EXPECT_LE(c.rel(), kOutTol) << "sequence_output: max diff " << c.max_diff;
    worst_out.Note("sequence_output", c.rel());
  }

  std::cout << log.str() << "  WORST output: " << worst_out.name << " rel " << worst_out.rel
            << "; WORST gradient: " << worst_grad.name << " rel " << worst_grad.rel << "\n";
}

std::string NameOf(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

INSTANTIATE_TEST_SUITE_P(Fixtures, HfParityTest, ::testing::ValuesIn(FixtureNames()), NameOf);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(HfParityTest);

TEST(HfInteropTest, SinusoidalTableMatchesFixture) {
  auto names = FixtureNames();
  if (names.empty()) GTEST_SKIP() << "no fixtures under " << FixtureRoot();
  auto r = safetensors::Reader::Open((FixtureRoot() / names[0] / "model.safetensors").string());
  const auto& shape = r.info("roformer.encoder.embed_positions.weight").shape;
  auto theirs = r.ReadFloat("roformer.encoder.embed_positions.weight");
  auto ours = HfSinusoidalTable(static_cast<int>(shape[0]), static_cast<int>(shape[1]));
  float m = 0;
  for (size_t i = 0; i < ours.size(); ++i) m = std::max(m, std::fabs(ours[i] - theirs[i]));
  EXPECT_LE(m, 1e-6f);
}

TEST(HfInteropTest, BadConfigsAreErrors) {
  auto parse = [](const char* s) { return ModelConfigFromHf(Json::Parse(s), "c.json"); };
  const char* base =
      R"({"vocab_size":100,"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,
          "intermediate_size":128})";
  EXPECT_NO_THROW(parse(base));
  EXPECT_THROW(parse(R"({"hidden_size":64})"), Error);
  EXPECT_THROW(parse(R"({"vocab_size":100,"hidden_size":64,"num_hidden_layers":2,
                         "num_attention_heads":4,"intermediate_size":128,"hidden_act":"relu"})"),
               Error);
  EXPECT_THROW(parse(R"({"vocab_size":100,"hidden_size":64,"num_hidden_layers":2,
                         "num_attention_heads":4,"intermediate_size":128,"rotary_value":true})"),
               Error);
  EXPECT_THROW(parse(R"({"vocab_size":100,"hidden_size":64,"num_hidden_layers":2,
                         "num_attention_heads":5,"intermediate_size":128})"),
               Error);
  EXPECT_THROW(parse(R"({"vocab_size":"x","hidden_size":64,"num_hidden_layers":2,
                         "num_attention_heads":4,"intermediate_size":128})"),
               Error);
  EXPECT_THROW(parse(R"({"vocab_size":100,"hidden_size":64,"num_hidden_layers":2,
                         "num_attention_heads":4,"intermediate_size":128,"attention_scale":"x"})"),
               Error);
  // Round trip through the exported config.
  config::ModelConfig m = parse(base);
  m.set_realformer(true);
  m.set_attention_scale("log_n");
  config::ModelConfig back = ModelConfigFromHf(HfConfigFromModel(m), "export");
  EXPECT_EQ(back.SerializeAsString(), m.SerializeAsString());
}

// Export -> import reproduces the parameters exactly.
TEST(HfInteropTest, ExportImportRoundTrip) {
  auto names = FixtureNames();
  if (names.empty()) GTEST_SKIP() << "no fixtures";
  for (const auto& name : names) {
    auto a = LoadHfModel((FixtureRoot() / name).string(), 3);
    fs::path out = fs::temp_directory_path() / ("roformer_hf_export_" + name);
    std::vector<std::string> dropped;
    ExportHfModel(*a, out.string(), &dropped);
    auto b = LoadHfModel(out.string(), 3);
    EXPECT_EQ(a->store().params(), b->store().params()) << name;
    // HF -> ours -> HF: every tensor of the exported file is byte-identical to the original's
    // (same dtype, shape and bytes); the original may hold extra aliases (the tied decoder).
    auto orig = safetensors::Reader::Open((FixtureRoot() / name / "model.safetensors").string());
    auto back = safetensors::Reader::Open((out / "model.safetensors").string());
    int compared = 0;
    for (const auto& t : back.tensors()) {
      ASSERT_TRUE(orig.has(t.name)) << name << ": exported extra tensor " << t.name;
      EXPECT_EQ(orig.info(t.name).shape, t.shape) << name << " " << t.name;
      auto x = orig.raw(t.name), y = back.raw(t.name);
      ASSERT_EQ(x.size(), y.size()) << name << " " << t.name;
      EXPECT_TRUE(std::equal(x.begin(), x.end(), y.begin())) << name << " " << t.name;
      ++compared;
    }
    EXPECT_GT(compared, 10) << name;
    for (const auto& n : dropped) EXPECT_EQ(n.rfind("sop.", 0), 0u);
    fs::remove_all(out);
  }
}

}  // namespace
}  // namespace roformer
