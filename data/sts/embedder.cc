#include "data/sts/embedder.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <span>

#include "data/sts/sts_data.h"
#include "kernels/cpu/activations.h"
#include "kernels/cpu/linear.h"
#include "model/hf_interop.h"
#include "runtime/checkpoint.h"
#include "runtime/comm.h"
#include "runtime/error.h"

namespace roformer::sts {
namespace {

constexpr const char* kPoolerW = "sop.pooler.dense.weight";
constexpr const char* kPoolerB = "sop.pooler.dense.bias";

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Pooling ParsePooling(std::string_view name) {
  if (name == "cls") return Pooling::kCls;
  if (name == "pooler") return Pooling::kPooler;
  if (name == "last-avg") return Pooling::kLastAvg;
  if (name == "first-last-avg") return Pooling::kFirstLastAvg;
  Fail("unknown pooling '", name, "' (one of: cls, pooler, last-avg, first-last-avg)");
}

const char* PoolingName(Pooling p) {
  switch (p) {
    case Pooling::kCls:
      return "cls";
    case Pooling::kPooler:
      return "pooler";
    case Pooling::kLastAvg:
      return "last-avg";
    case Pooling::kFirstLastAvg:
      return "first-last-avg";
  }
  return "?";
}

void PoolBatch(Pooling p, const float* first, const float* last, const int32_t* mask, int B, int L,
               int H, const float* pooler_w, const float* pooler_b, float* out) {
  if (p == Pooling::kCls || p == Pooling::kPooler) {
    for (int b = 0; b < B; ++b) {
      std::memcpy(out + int64_t(b) * H, last + int64_t(b) * L * H, sizeof(float) * H);
    }
    if (p == Pooling::kPooler) {
      CHECK(pooler_w && pooler_b);
      std::vector<float> pre(size_t(B) * H);
      LinearForward(out, pooler_w, pooler_b, pre.data(), B, H, H);
      TanhForward(pre.data(), out, int64_t(B) * H);
    }
    return;
  }
  CHECK(p == Pooling::kLastAvg || first) << "first-last-avg needs the first layer's output";
  const bool both = p == Pooling::kFirstLastAvg;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b) {
    // Sum in double: the mean's rounding must not depend on where the padding starts.
    std::vector<double> acc(H, 0.0);
    int64_t n = 0;
    for (int t = 0; t < L; ++t) {
      const int64_t r = int64_t(b) * L + t;
      if (!mask[r]) continue;
      ++n;
      const float* x = last + r * H;
      if (both) {
        const float* f = first + r * H;
        for (int h = 0; h < H; ++h) acc[h] += 0.5 * (double(f[h]) + double(x[h]));
      } else {
        for (int h = 0; h < H; ++h) acc[h] += x[h];
      }
    }
    CHECK_GT(n, 0) << "row " << b << " has no real token";
    float* o = out + int64_t(b) * H;
    for (int h = 0; h < H; ++h) o[h] = static_cast<float>(acc[h] / double(n));
  }
}

Embedder::Embedder(RoFormerModel* model, const Tokenizer* tokenizer, const EmbedderOptions& opt)
    : model_(model), tok_(tokenizer), opt_(opt) {
  CHECK(model_ && tok_);
  if (opt.max_len < 2) Fail("--max-len must be >= 2 ([CLS] and [SEP]); got ", opt.max_len);
  if (opt.batch < 1) Fail("--batch must be >= 1; got ", opt.batch);
  const int max_pos = model_->dims().max_positions;
  max_len_ = std::min(opt.max_len, max_pos);
  if (max_len_ < opt.max_len) {
    LOG(WARNING) << "max_len " << opt.max_len << " > the model's max_position_embeddings "
                 << max_pos << ": using " << max_len_;
  }
  if (opt.pooling == Pooling::kPooler &&
      (!model_->store().has(kPoolerW) || !model_->store().has(kPoolerB))) {
    Fail("pooling 'pooler' needs ", kPoolerW, " and ", kPoolerB, " in the model");
  }
  if (opt.pooling == Pooling::kFirstLastAvg && model_->dims().layers < 1) {
    Fail("pooling 'first-last-avg' needs at least one transformer layer");
  }
  cls_id_ = tok_->vocab().cls_id();
  sep_id_ = tok_->vocab().sep_id();
  pad_id_ = tok_->vocab().pad_id();
  if (tok_->vocab().size() > model_->dims().vocab) {
    Fail("the vocab has ", tok_->vocab().size(), " entries but the model only ",
         model_->dims().vocab);
  }
}

int Embedder::dim() const { return model_->dims().hidden; }

std::vector<int32_t> Embedder::Encode(std::string_view text, bool* truncated) const {
  std::vector<int32_t> pieces = tok_->Encode(text);
  const size_t keep = static_cast<size_t>(max_len_ - 2);
  if (truncated) *truncated = pieces.size() > keep;
  if (pieces.size() > keep) pieces.resize(keep);
  std::vector<int32_t> ids;
  ids.reserve(pieces.size() + 2);
  ids.push_back(cls_id_);
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  ids.push_back(sep_id_);
  return ids;
}

void Embedder::EmbedIds(const std::vector<std::vector<int32_t>>& seqs, float* out) {
  const int64_t n = static_cast<int64_t>(seqs.size());
  const int H = dim();
  for (int64_t i = 0; i < n; ++i) {
    if (seqs[i].empty()) Fail("sequence ", i, " is empty");
  }
  // Longest first: the model's buffers grow to their final size on the first batch.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return seqs[a].size() > seqs[b].size(); });
  const float* pw = opt_.pooling == Pooling::kPooler ? model_->store().param(kPoolerW) : nullptr;
  const float* pb = opt_.pooling == Pooling::kPooler ? model_->store().param(kPoolerB) : nullptr;
  Batch batch;
  std::vector<float> pooled;
  for (int64_t b0 = 0; b0 < n; b0 += opt_.batch) {
    const int B = static_cast<int>(std::min<int64_t>(opt_.batch, n - b0));
    const int L = static_cast<int>(seqs[order[b0]].size());
    batch.batch = B;
    batch.seq_len = L;
    batch.input_ids.assign(size_t(B) * L, pad_id_);
    batch.token_type_ids.assign(size_t(B) * L, 0);
    batch.attention_mask.assign(size_t(B) * L, 0);
    for (int b = 0; b < B; ++b) {
      const auto& s = seqs[order[b0 + b]];
      std::copy(s.begin(), s.end(), batch.input_ids.begin() + size_t(b) * L);
      std::fill_n(batch.attention_mask.begin() + size_t(b) * L, s.size(), 1);
      stats_.tokens += static_cast<int64_t>(s.size());
    }
    auto t0 = std::chrono::steady_clock::now();
    const float* first = nullptr;
    const float* last = nullptr;
    if (opt_.pooling == Pooling::kFirstLastAvg) {
      // Infer copies every hidden state; only [1] is needed, but the copy is a small fraction of a
      // layer's FLOPs and keeps us on the public API.
      // One pass gives every hidden state; with pre_ln the last one is before the final LayerNorm,
      // so "last" is then the sequence output.
      const bool pre_ln = model_->config().pre_ln();
      model_->Infer(batch, nullptr, pre_ln ? &seq_ : nullptr, &hidden_);
      first = hidden_[1].data();
      last = pre_ln ? seq_.data() : hidden_.back().data();
    } else {
      last = model_->EncoderForward(batch, DropoutContext{});
    }
    stats_.forward_s += Since(t0);
    t0 = std::chrono::steady_clock::now();
    pooled.resize(size_t(B) * H);
    PoolBatch(opt_.pooling, first, last, batch.attention_mask.data(), B, L, H, pw, pb,
              pooled.data());
    for (int b = 0; b < B; ++b) {
      std::memcpy(out + order[b0 + b] * H, pooled.data() + size_t(b) * H, sizeof(float) * H);
    }
    stats_.pool_s += Since(t0);
    stats_.padded += int64_t(B) * L;
    ++stats_.batches;
  }
  stats_.sentences += n;
}

std::vector<float> Embedder::Embed(const std::vector<std::string>& sentences) {
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::vector<int32_t>> seqs(sentences.size());
  int64_t truncated = 0;
#pragma omp parallel for schedule(dynamic, 64) reduction(+ : truncated)
  for (int64_t i = 0; i < static_cast<int64_t>(sentences.size()); ++i) {
    bool t = false;
    seqs[i] = Encode(sentences[i], &t);
    truncated += t ? 1 : 0;
  }
  stats_.truncated += truncated;
  stats_.tokenize_s += Since(t0);
  std::vector<float> out(sentences.size() * size_t(dim()));
  EmbedIds(seqs, out.data());
  return out;
}

std::vector<float> EmbedDistributed(Embedder& embedder, const std::vector<std::string>& sentences,
                                    Communicator* dp) {
  if (!dp || dp->size() == 1) return embedder.Embed(sentences);
  const int64_t n = static_cast<int64_t>(sentences.size());
  const int P = dp->size(), r = dp->rank(), H = embedder.dim();
  const int64_t s = (n + P - 1) / P;
  const int64_t lo = std::min(n, r * s), hi = std::min(n, (r + 1) * s);
  std::vector<std::string> mine(sentences.begin() + lo, sentences.begin() + hi);
  std::vector<float> local(size_t(s) * H, 0.0f);  // equal blocks for AllGather; tail rows unused
  if (!mine.empty()) {
    std::vector<float> e = embedder.Embed(mine);
    std::copy(e.begin(), e.end(), local.begin());
  }
  std::vector<float> all(size_t(s) * H * P);
  dp->AllGather(std::span<const float>(local), std::span<float>(all));
  all.resize(size_t(n) * H);  // rank blocks are contiguous slices in order
  return all;
}

Encoder LoadEncoder(const std::string& ckpt, const std::string& vocab, bool do_lower_case) {
  LoadedCheckpoint ck = LoadCheckpoint(ckpt, /*with_optimizer=*/false);
  if (!ck.manifest.has_model()) Fail(ck.dir, ": checkpoint manifest has no model config");
  config::ModelConfig mc = ck.manifest.model();
  ConfigForModel(mc, ck.dir + "/manifest.pb");  // validates
  Encoder enc;
  enc.ckpt_dir = ck.dir;
  enc.step = ck.state.step;
  enc.vocab_path = vocab.empty() ? ck.manifest.vocab().path() : vocab;
  if (enc.vocab_path.empty()) Fail(ck.dir, " records no vocab path; give --vocab FILE");
  if (vocab.empty() && !std::filesystem::exists(enc.vocab_path)) {
    Fail(ck.dir, " records vocab '", enc.vocab_path,
         "', which does not exist from here; give --vocab FILE");
  }
  Vocab v = Vocab::Load(enc.vocab_path);
  if (v.size() != mc.vocab_size()) {
    Fail(enc.vocab_path, " has ", v.size(), " entries but ", ck.dir,
         " was trained with vocab_size ", mc.vocab_size());
  }
  const std::string& hash = ck.manifest.vocab().tokens_hash();
  if (!hash.empty() && VocabTokensHash(v.tokens()) != hash) {
    Fail(enc.vocab_path, " is not the vocab ", ck.dir, " was trained with (tokens hash ",
         VocabTokensHash(v.tokens()), " != ", hash, ")");
  }
  enc.model = std::make_unique<RoFormerModel>(mc, TpRegion(), /*with_optimizer_state=*/false);
  RestoreInto(ck, &enc.model->store(), /*with_optimizer=*/false);
  enc.tokenizer = std::make_unique<Tokenizer>(std::move(v), do_lower_case);
  return enc;
}

std::vector<std::string> ReadSentences(const std::string& path) {
  std::vector<std::string> out;
  if (EndsWith(path, ".tsv")) {
    for (auto& p : ReadStsFile(path)) {
      out.push_back(std::move(p.text1));
      out.push_back(std::move(p.text2));
    }
    return out;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, ": cannot open");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    out.push_back(line);
  }
  if (in.bad()) Fail(path, ": read error");
  if (out.empty()) Fail(path, ": no sentences");
  return out;
}

}  // namespace roformer::sts
