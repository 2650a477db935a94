// `roformer infer`: MLM logits and encoder outputs for token ids from a jsonl file (dropout off).
#include <algorithm>
#include <fstream>
#include <iostream>

#include "launch/command.h"
#include "launch/hf_interop.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/json.h"
#include "runtime/safetensors.h"

namespace roformer {
namespace {

struct Row {
  std::vector<int32_t> ids, types, mask;
};

std::vector<int32_t> IntArray(const Json& j, const char* key, const std::string& where, int64_t lo,
                              int64_t hi) {
  const Json* v = j.find(key);
  if (!v || !v->is_array()) Fail(where, ": \"", key, "\" must be an array of integers");
  std::vector<int32_t> out;
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& e = v->at(i);
    if (!e.is_int()) Fail(where, ": ", key, "[", i, "] is not an integer: ", e.Dump());
    int64_t x = e.as_int();
    if (x < lo || x >= hi)
      Fail(where, ": ", key, "[", i, "] = ", x, " is out of range [", lo, ", ", hi, ")");
    out.push_back(static_cast<int32_t>(x));
  }
  return out;
}

std::vector<Row> ReadJsonl(const std::string& path, const ModelDims& d, int max_len) {
  std::ifstream in(path);
  if (!in) Fail(path, ": cannot open");
  std::vector<Row> rows;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(lineno);
    Json j = Json::Parse(line, where);
    if (!j.is_object()) Fail(where, ": expected a JSON object");
    Row r;
    r.ids = IntArray(j, "input_ids", where, 0, d.vocab);
    const size_t n = r.ids.size();
    if (n == 0) Fail(where, ": input_ids is empty");
    if (static_cast<int>(n) > max_len)
      Fail(where, ": ", n, " tokens exceed max_position_embeddings ", max_len);
    r.types = j.contains("token_type_ids") && !j.at("token_type_ids").is_null()
                  ? IntArray(j, "token_type_ids", where, 0, d.type_vocab)
                  : std::vector<int32_t>(n, 0);
    r.mask = j.contains("attention_mask") && !j.at("attention_mask").is_null()
                 ? IntArray(j, "attention_mask", where, 0, 2)
                 : std::vector<int32_t>(n, 1);
    if (r.types.size() != n || r.mask.size() != n)
      Fail(where, ": token_type_ids/attention_mask length differs from input_ids (", n, ")");
    if (std::find(r.mask.begin(), r.mask.end(), 1) == r.mask.end())
      Fail(where, ": attention_mask has no 1 (nothing to attend to)");
    rows.push_back(std::move(r));
  }
  if (in.bad()) Fail(path, ": read error");
  if (rows.empty()) Fail(path, ": no input lines");
  return rows;
}

int RunInfer(int argc, char** argv) {
  Flags flags(argc, argv, {"ckpt", "input", "out", "micro-batch"});
  const std::string ckpt = flags.Require("ckpt"), input = flags.Require("input"),
                    out = flags.Require("out");
  const int micro = static_cast<int>(flags.GetInt("micro-batch", 16));
  if (micro <= 0) Fail("--micro-batch must be > 0");
  auto model = LoadModelCheckpoint(ckpt);
  const ModelDims& d = model->dims();
  std::vector<Row> rows = ReadJsonl(input, d, model->config().max_position_embeddings());
  const int N = static_cast<int>(rows.size());
  int L = 0;
  for (const auto& r : rows) L = std::max(L, static_cast<int>(r.ids.size()));
  const int V = d.vocab, H = d.hidden;

  std::vector<float> all_logits(size_t(N) * L * V), all_seq(size_t(N) * L * H);
  std::vector<int64_t> all_mask(size_t(N) * L, 0);
  std::vector<float> logits, seq;
  for (int b0 = 0; b0 < N; b0 += micro) {
    const int B = std::min(micro, N - b0);
    Batch batch;  // right-padded to the longest line of the whole input, so the outputs stack
    batch.batch = B;
    batch.seq_len = L;
    batch.input_ids.assign(size_t(B) * L, 0);
    batch.token_type_ids.assign(size_t(B) * L, 0);
    batch.attention_mask.assign(size_t(B) * L, 0);
    for (int b = 0; b < B; ++b) {
      const Row& r = rows[b0 + b];
      for (size_t t = 0; t < r.ids.size(); ++t) {
        batch.input_ids[size_t(b) * L + t] = r.ids[t];
        batch.token_type_ids[size_t(b) * L + t] = r.types[t];
        batch.attention_mask[size_t(b) * L + t] = r.mask[t];
        all_mask[size_t(b0 + b) * L + t] = r.mask[t];
      }
    }
    model->Infer(batch, &logits, &seq);
    std::copy(logits.begin(), logits.end(), all_logits.begin() + size_t(b0) * L * V);
    std::copy(seq.begin(), seq.end(), all_seq.begin() + size_t(b0) * L * H);
  }
  safetensors::Writer w;
  w.AddFloat("mlm_logits", {N, L, V}, all_logits);
  w.AddFloat("sequence_output", {N, L, H}, all_seq);
  w.AddInt64("attention_mask", {N, L}, all_mask);
  w.SetMetadata("ckpt", ckpt);
  w.SetMetadata("input", input);
  w.WriteFile(out);
  std::cout << "wrote " << out << ": mlm_logits [" << N << ", " << L << ", " << V
            << "], sequence_output [" << N << ", " << L << ", " << H << "]\n";
  return 0;
}

RegisterCommand reg(
    "infer", "MLM logits and encoder outputs for token ids (jsonl in, safetensors out)",
    "roformer infer --ckpt CKPT --input IDS.jsonl --out OUT.safetensors [--micro-batch 16]\n"
    "Each input line: {\"input_ids\": [...], \"token_type_ids\": [...], \"attention_mask\": "
    "[...]}\n"
    "(the last two optional: zeros / ones). Lines are right-padded with id 0 to the longest line.\n"
    "Writes mlm_logits [N, L, vocab] f32 (every position), sequence_output [N, L, hidden] f32 and\n"
    "attention_mask [N, L] i64 (the padding used). Dropout is off.",
    &RunInfer);

}  // namespace
}  // namespace roformer
