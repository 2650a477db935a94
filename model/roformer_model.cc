#include "model/roformer_model.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "kernels/cpu/activations.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/dropout.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/rope.h"
#include "model/param_refs.h"
#include "runtime/error.h"
#include "runtime/fnv1a.h"
#include "runtime/philox.h"

namespace roformer {

namespace {

// Dropout op ids: together with (seed, step, micro, layer) they select the Philox stream.
enum DropOp : uint32_t {
  kDropEmbedding = 0,
  kDropAttnProbs = 1,
  kDropAttnOut = 2,
  kDropFfnOut = 3
};

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::span<float> Span(float* p, int64_t n) { return {p, static_cast<size_t>(n)}; }

void AddInPlace(float* y, const float* x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace

ModelDims MakeModelDims(const config::ModelConfig& cfg, int tp, int tp_rank) {
  ModelDims d;
  d.vocab = cfg.vocab_size();
  d.hidden = cfg.hidden_size();
  d.embedding = cfg.embedding_size() > 0 ? cfg.embedding_size() : cfg.hidden_size();
  d.layers = cfg.num_hidden_layers();
  d.heads = cfg.num_attention_heads();
  d.head_dim = d.heads > 0 ? d.hidden / d.heads : 0;
  d.intermediate = cfg.intermediate_size();
  d.type_vocab = cfg.type_vocab_size();
  d.max_positions = cfg.max_position_embeddings();
  d.tp = tp;
  d.tp_rank = tp_rank;
  d.vocab_padded = static_cast<int>(RoundUp(std::max(d.vocab, 1), 128 * static_cast<int64_t>(tp)));
  return d;
}

void ValidateTpLayout(const ModelDims& d) {
  // Megatron's layout constraints (anchors §10.10), checked before anything is declared: a TP rank
  // must own whole heads (RoPE and the RealFormer score residual are per head and stay local), a
  // whole slice of the FFN, and an equal slice of the padded vocab.
  if (d.tp < 1) Fail("parallel.tp must be >= 1 (got ", d.tp, ")");
  if (d.heads <= 0) Fail("model.num_attention_heads must be > 0 (got ", d.heads, ")");
  if (d.hidden % d.heads != 0) {
    Fail("model.hidden_size = ", d.hidden,
         " is not divisible by model.num_attention_heads = ", d.heads);
  }
  if (d.heads % d.tp != 0) {
    Fail("model.num_attention_heads = ", d.heads, " is not divisible by parallel.tp = ", d.tp,
         ": tensor parallelism gives every TP rank whole attention heads; choose parallel.tp among "
         "the divisors of ",
         d.heads);
  }
  if (d.intermediate % d.tp != 0) {
    Fail("model.intermediate_size = ", d.intermediate, " is not divisible by parallel.tp = ", d.tp,
         ": the FFN is split column-/row-parallel into equal slices");
  }
  if (d.vocab_padded % d.tp != 0) {
    Fail("padded vocab ", d.vocab_padded, " (model.vocab_size ", d.vocab,
         ") is not divisible by parallel.tp = ", d.tp);
  }
}

// Parameter offsets of one encoder layer (resolved from the store once; pointers are rebuilt from
// the flat buffers at every use, so a checkpoint load that replaces the vectors stays valid).
// Saved activations of one layer. Post-LN: attn_in = layer input, ffn_in = LN_a(res1),
// out = LN_f(res2). Pre-LN: attn_in = LN_a(x), ffn_in = LN_f(res1), out = res2.
struct LayerActs {
  float *attn_in, *q, *k, *v, *probs, *ctx, *res1, *ffn_in, *ffn_pre, *ffn_act, *res2, *out;
  float *lna_mean, *lna_rstd, *lnf_mean, *lnf_rstd;
};

struct RoFormerModel::Impl : ParamRefs {
  config::ModelConfig cfg;
  ModelDims d;
  TpRegion tp;
  ParamStore store;
  std::vector<float> rope;  // [max_positions, head_dim]
  // model.precision: bf16 GEMMs for the duration of each forward/backward
  GemmPrecision gemm_precision = GemmPrecision::kFp32;

  // parameter offsets: ParamRefs (model/param_refs.h)
  // Gradient-ready groups (ParamStore indices) in backward order, for SetGradReadyHook.
  std::function<void(const std::vector<size_t>&)> grad_ready;
  std::vector<size_t> ready_heads, ready_final_ln, ready_embeddings;
  std::vector<std::vector<size_t>> ready_layer;
  void GradReady(const std::vector<size_t>& group) {
    if (grad_ready && !group.empty()) grad_ready(group);
  }

  // ---- workspace (sized for the largest (B, L) seen; a step allocates nothing) ----
  int cap_b = 0, cap_l = 0;
  int64_t cap_m = 0;
  std::vector<float> arena, head_arena;
  std::vector<LayerActs> acts;
  float *emb_sum = nullptr, *emb_out = nullptr, *emb_mean = nullptr, *emb_rstd = nullptr;
  float *hidden0 = nullptr, *final_out = nullptr, *final_mean = nullptr, *final_rstd = nullptr;
  float *carry = nullptr, *dcarry = nullptr;
  bool carry_is_top = false;  // carry holds the last layer's cur (a backward has not consumed it)
  float *G = nullptr, *D1 = nullptr, *D2 = nullptr, *dctx = nullptr, *dq = nullptr, *dk = nullptr,
        *dv = nullptr, *dffn = nullptr, *dE = nullptr, *dE2 = nullptr, *d_seq = nullptr;
  float *sop_cls = nullptr, *sop_pre = nullptr, *sop_pool = nullptr, *sop_logits = nullptr,
        *sop_dpool = nullptr, *sop_dcls = nullptr;
  // MLM head rows
  float *h_g = nullptr, *h_t1 = nullptr, *h_t2 = nullptr, *h_t3 = nullptr, *h_mean = nullptr,
        *h_rstd = nullptr, *h_logits = nullptr, *h_dg = nullptr, *h_dt3 = nullptr, *h_dt2 = nullptr;
  int64_t last_m = 0;
  // vocab-parallel cross-entropy: this shard's per-row summaries and every shard's (all-gathered)
  std::vector<double> ce_local, ce_all;
  std::vector<float> tp_partial;  // FinishGradientsTp staging (sized once)

  // state of the last forward
  int B = 0, L = 0;
  std::vector<int32_t> ids, types, mask, cls_index;
  DropoutContext drop;

  float* P(int64_t off) { return store.params().data() + off; }
  float* Gr(int64_t off) { return store.grads().data() + off; }

  int H() const { return d.hidden; }
  int E() const { return d.embedding; }
  int Hl() const { return d.local_heads() * d.head_dim; }
  int Il() const { return d.local_intermediate(); }
  int Vl() const { return d.local_vocab(); }
  int64_t vocab_start() const { return static_cast<int64_t>(d.tp_rank) * Vl(); }
  int valid_local_vocab() const {
    return static_cast<int>(std::clamp<int64_t>(d.vocab - vocab_start(), 0, Vl()));
  }

  float* Hidden(int i) { return i == 0 ? hidden0 : acts[i - 1].out; }
  const float* SequenceOutput() { return cfg.pre_ln() ? final_out : Hidden(d.layers); }

  void Declare();
  void Reserve(int b, int l);
  void ReserveHead(int64_t m);
  void Validate(const Batch& batch) const;
  DropoutSpec Spec(float p, uint32_t layer_id, uint32_t op, int64_t cols_global,
                   int64_t col_offset) const;
  AttentionParams AttnParams(int l) const;
  const float* EncoderForward(const Batch& batch, const DropoutContext& dc);
  void LayerForward(int l);
  void EncoderBackward();
  void LayerBackward(int l);
  // MLM head on `m` rows of the sequence output selected by `positions` (labels null: logits
  // only). With backward, d_seq (zeroed by the caller) receives the head's input gradient.
  CrossEntropyStats MlmHead(const int32_t* positions, const int32_t* labels, int64_t m,
                            bool backward, float grad_scale);
  CrossEntropyStats SopHead(const int32_t* labels, bool backward, float grad_scale);
};

void RoFormerModel::Impl::Declare() {
  const int64_t H = d.hidden, E = d.embedding, I = d.intermediate, V = d.vocab_padded;
  const int r = d.tp_rank, t = d.tp;
  auto decl = [&](const std::string& name, std::vector<int64_t> shape, Placement pl, bool decay) {
    store.Declare(name, std::move(shape), pl, decay, r, t);
  };
  const auto R = Placement::kReplicated, S0 = Placement::kShardDim0, S1 = Placement::kShardDim1;
  store.Declare("roformer.embeddings.word_embeddings.weight", {V, E}, S0, true, r, t, d.vocab);
  decl("roformer.embeddings.token_type_embeddings.weight", {d.type_vocab, E}, R, true);
  decl("roformer.embeddings.LayerNorm.weight", {E}, R, false);
  decl("roformer.embeddings.LayerNorm.bias", {E}, R, false);
  if (E != H) {
    // HF keeps this Linear on RoFormerModel itself, not inside RoFormerEmbeddings.
    decl("roformer.embeddings_project.weight", {H, E}, R, true);
    decl("roformer.embeddings_project.bias", {H}, R, false);
  }
  for (int l = 0; l < d.layers; ++l) {
    const std::string p = "roformer.encoder.layer." + std::to_string(l) + ".";
    for (const char* qkv : {"query", "key", "value"}) {
      decl(p + "attention.self." + qkv + ".weight", {H, H}, S0, true);
      decl(p + "attention.self." + qkv + ".bias", {H}, S0, false);
    }
    decl(p + "attention.output.dense.weight", {H, H}, S1, true);
    decl(p + "attention.output.dense.bias", {H}, R, false);
    decl(p + "attention.output.LayerNorm.weight", {H}, R, false);
    decl(p + "attention.output.LayerNorm.bias", {H}, R, false);
    decl(p + "intermediate.dense.weight", {I, H}, S0, true);
    decl(p + "intermediate.dense.bias", {I}, S0, false);
    decl(p + "output.dense.weight", {H, I}, S1, true);
    decl(p + "output.dense.bias", {H}, R, false);
    decl(p + "output.LayerNorm.weight", {H}, R, false);
    decl(p + "output.LayerNorm.bias", {H}, R, false);
  }
  if (cfg.pre_ln()) {
    decl("roformer.encoder.final_layer_norm.weight", {H}, R, false);
    decl("roformer.encoder.final_layer_norm.bias", {H}, R, false);
  }
  decl("cls.predictions.transform.dense.weight", {E, H}, R, true);
  decl("cls.predictions.transform.dense.bias", {E}, R, false);
  decl("cls.predictions.transform.LayerNorm.weight", {E}, R, false);
  decl("cls.predictions.transform.LayerNorm.bias", {E}, R, false);
  store.Declare("cls.predictions.bias", {V}, S0, false, r, t, d.vocab);
  decl("sop.pooler.dense.weight", {H, H}, R, true);
  decl("sop.pooler.dense.bias", {H}, R, false);
  decl("sop.classifier.weight", {2, H}, R, true);
  decl("sop.classifier.bias", {2}, R, false);

  // Group tensors by when backward finishes their gradients. The word embedding is tied to the
  // decoder, so it is final only after the embedding backward.
  ready_layer.assign(d.layers, {});
  for (size_t i = 0; i < store.infos().size(); ++i) {
    const std::string& n = store.infos()[i].name;
    const std::string lp = "roformer.encoder.layer.";
    if (n.rfind(lp, 0) == 0) {
      ready_layer[std::stoi(n.substr(lp.size()))].push_back(i);
    } else if (n.rfind("cls.", 0) == 0 || n.rfind("sop.", 0) == 0) {
      ready_heads.push_back(i);
    } else if (n.rfind("roformer.encoder.final_layer_norm.", 0) == 0) {
      ready_final_ln.push_back(i);
    } else {
      ready_embeddings.push_back(i);
    }
  }

  ResolveOffsets(store, d.layers, E != H, cfg.pre_ln(), "RoFormerModel");
}

void RoFormerModel::Impl::Reserve(int b, int l) {
  if (b <= cap_b && l <= cap_l) return;
  cap_b = std::max(cap_b, b);
  cap_l = std::max(cap_l, l);
  const int64_t BL = static_cast<int64_t>(cap_b) * cap_l;
  const int64_t SQ = static_cast<int64_t>(cap_b) * d.local_heads() * cap_l * cap_l;
  const int64_t H = d.hidden, E = d.embedding, hl = Hl(), il = Il();
  const bool pre = cfg.pre_ln(), real = cfg.realformer();
  // Two passes over the same layout: measure, then hand out pointers into one arena.
  for (int pass = 0; pass < 2; ++pass) {
    int64_t used = 0;
    float* base = pass == 0 ? nullptr : arena.data();
    auto take = [&](int64_t n) -> float* {
      float* p = base ? base + used : nullptr;
      used += RoundUp(n, 16);  // 64-byte aligned sub-buffers
      return p;
    };
    emb_sum = take(BL * E);
    emb_out = take(BL * E);
    emb_mean = take(BL);
    emb_rstd = take(BL);
    hidden0 = E != H ? take(BL * H) : emb_out;
    acts.assign(d.layers, LayerActs{});
    for (int i = 0; i < d.layers; ++i) {
      LayerActs& a = acts[i];
      a.attn_in = pre ? take(BL * H) : nullptr;
      a.q = take(BL * hl);
      a.k = take(BL * hl);
      a.v = take(BL * hl);
      // model.attention_recompute: the backward recomputes P, so no layer keeps one.
      a.probs = cfg.attention_recompute() ? nullptr : take(SQ);
      a.ctx = take(BL * hl);
      a.res1 = take(BL * H);
      a.ffn_in = take(BL * H);
      a.ffn_pre = take(BL * il);
      a.ffn_act = take(BL * il);
      a.res2 = take(BL * H);
      a.out = pre ? a.res2 : take(BL * H);
      a.lna_mean = take(BL);
      a.lna_rstd = take(BL);
      a.lnf_mean = take(BL);
      a.lnf_rstd = take(BL);
    }
    final_out = pre ? take(BL * H) : nullptr;
    final_mean = take(BL);
    final_rstd = take(BL);
    carry = real ? take(SQ) : nullptr;
    dcarry = real ? take(SQ) : nullptr;
    G = take(BL * H);
    D1 = take(BL * H);
    D2 = take(BL * H);
    dctx = take(BL * hl);
    dq = take(BL * hl);
    dk = take(BL * hl);
    dv = take(BL * hl);
    dffn = take(BL * il);
    dE = take(BL * E);
    dE2 = take(BL * E);
    d_seq = take(BL * H);
    sop_cls = take(cap_b * H);
    sop_pre = take(cap_b * H);
    sop_pool = take(cap_b * H);
    sop_logits = take(cap_b * 2);
    sop_dpool = take(cap_b * H);
    sop_dcls = take(cap_b * H);
    if (pass == 0) arena.assign(used, 0.0f);
  }
  // Post-LN layers read their input from the previous layer's output.
  for (int i = 0; i < d.layers; ++i) {
    if (!pre) acts[i].attn_in = Hidden(i);
  }
  cls_index.reserve(cap_b);
}

void RoFormerModel::Impl::ReserveHead(int64_t m) {
  if (m <= cap_m) return;
  cap_m = std::max<int64_t>(m, cap_m + cap_m / 4);  // headroom: masked counts vary per batch
  const int64_t H = d.hidden, E = d.embedding, V = Vl();
  for (int pass = 0; pass < 2; ++pass) {
    int64_t used = 0;
    float* base = pass == 0 ? nullptr : head_arena.data();
    auto take = [&](int64_t n) -> float* {
      float* p = base ? base + used : nullptr;
      used += RoundUp(n, 16);
      return p;
    };
    h_g = take(cap_m * H);
    h_t1 = take(cap_m * E);
    h_t2 = take(cap_m * E);
    h_t3 = take(cap_m * E);
    h_mean = take(cap_m);
    h_rstd = take(cap_m);
    h_logits = take(cap_m * V);
    h_dg = take(cap_m * H);
    h_dt3 = take(cap_m * E);
    h_dt2 = take(cap_m * E);
    if (pass == 0) head_arena.assign(used, 0.0f);
  }
  ce_local.assign(cap_m * kVocabShardStatsWidth, 0.0);
  ce_all.assign(cap_m * kVocabShardStatsWidth * d.tp, 0.0);
}

void RoFormerModel::Impl::Validate(const Batch& b) const {
  if (b.batch <= 0 || b.seq_len <= 0) Fail("batch: empty batch (", b.batch, " x ", b.seq_len, ")");
  const size_t n = static_cast<size_t>(b.batch) * b.seq_len;
  if (b.input_ids.size() != n || b.token_type_ids.size() != n || b.attention_mask.size() != n) {
    Fail("batch: input_ids/token_type_ids/attention_mask must have batch*seq_len = ", n,
         " entries (got ", b.input_ids.size(), "/", b.token_type_ids.size(), "/",
         b.attention_mask.size(), ")");
  }
  if (b.seq_len > d.max_positions) {
    Fail("batch: seq_len ", b.seq_len, " exceeds model.max_position_embeddings ", d.max_positions);
  }
  for (size_t i = 0; i < n; ++i) {
    if (b.input_ids[i] < 0 || b.input_ids[i] >= d.vocab) {
      Fail("batch: input_ids[", i, "] = ", b.input_ids[i], " outside the vocab [0, ", d.vocab, ")");
    }
    if (b.token_type_ids[i] < 0 || b.token_type_ids[i] >= d.type_vocab) {
      Fail("batch: token_type_ids[", i, "] = ", b.token_type_ids[i], " outside [0, ", d.type_vocab,
           ")");
    }
  }
  if (b.mlm_positions.size() != b.mlm_labels.size()) {
    Fail("batch: ", b.mlm_positions.size(), " mlm_positions but ", b.mlm_labels.size(),
         " mlm_labels");
  }
  for (size_t i = 0; i < b.mlm_positions.size(); ++i) {
    if (b.mlm_positions[i] < 0 || static_cast<size_t>(b.mlm_positions[i]) >= n) {
      Fail("batch: mlm_positions[", i, "] = ", b.mlm_positions[i], " outside [0, ", n, ")");
    }
    if (b.mlm_labels[i] < 0 || b.mlm_labels[i] >= d.vocab) {
      Fail("batch: mlm_labels[", i, "] = ", b.mlm_labels[i], " outside the vocab");
    }
  }
  if (!b.sop_labels.empty()) {
    if (b.sop_labels.size() != static_cast<size_t>(b.batch)) {
      Fail("batch: ", b.sop_labels.size(), " sop_labels for ", b.batch, " sequences");
    }
    for (size_t i = 0; i < b.sop_labels.size(); ++i) {
      if (b.sop_labels[i] != 0 && b.sop_labels[i] != 1) {
        Fail("batch: sop_labels[", i, "] = ", b.sop_labels[i], " must be 0 or 1");
      }
    }
  }
}

DropoutSpec RoFormerModel::Impl::Spec(float p, uint32_t layer_id, uint32_t op, int64_t cols_global,
                                      int64_t col_offset) const {
  DropoutSpec s;
  if (!drop.enabled || p <= 0.0f) return s;
  s.p = p;
  s.key = drop.seed;
  s.stream = DropoutStreamId(drop.step, drop.micro, layer_id, op);
  s.cols_global = cols_global;
  s.col_offset = col_offset;
  return s;
}

AttentionParams RoFormerModel::Impl::AttnParams(int l) const {
  AttentionParams ap;
  ap.realformer = cfg.realformer();
  ap.has_prev = l > 0;
  ap.mean_div = cfg.realformer() && cfg.realformer_running_mean() ? 1.0f / (l + 1) : 1.0f;
  ap.log_n = cfg.attention_scale() == "log_n";
  const int64_t LL = static_cast<int64_t>(L) * L;
  ap.dropout = Spec(cfg.attention_probs_dropout_prob(), l, kDropAttnProbs, d.heads * LL,
                    static_cast<int64_t>(d.tp_rank) * d.local_heads() * LL);
  ap.recompute = cfg.attention_recompute();
  return ap;
}

const float* RoFormerModel::Impl::EncoderForward(const Batch& batch, const DropoutContext& dc) {
  Validate(batch);
  Reserve(batch.batch, batch.seq_len);
  B = batch.batch;
  L = batch.seq_len;
  drop = dc;
  ids.assign(batch.input_ids.begin(), batch.input_ids.end());
  types.assign(batch.token_type_ids.begin(), batch.token_type_ids.end());
  mask.assign(batch.attention_mask.begin(), batch.attention_mask.end());
  const int64_t BL = static_cast<int64_t>(B) * L;
  const int H = d.hidden, E = d.embedding;

  // Embeddings: word (vocab-parallel) + token type, LN, dropout, [embeddings_project].
  EmbeddingForward(ids.data(), P(word), emb_sum, BL, E, vocab_start(), Vl(), false);
  tp.ReduceFromRegionForward(Span(emb_sum, BL * E));
  EmbeddingForward(types.data(), P(type), emb_sum, BL, E, 0, d.type_vocab, true);
  LayerNormForward(emb_sum, P(emb_ln_g), P(emb_ln_b), emb_out, emb_mean, emb_rstd, BL, E,
                   cfg.layer_norm_eps());
  DropoutForward(Spec(cfg.hidden_dropout_prob(), 0, kDropEmbedding, E, 0), emb_out, emb_out, BL, E);
  if (E != H) LinearForward(emb_out, P(proj_w), P(proj_b), hidden0, BL, E, H);

  for (int l = 0; l < d.layers; ++l) LayerForward(l);
  carry_is_top = true;

  if (cfg.pre_ln()) {
    LayerNormForward(Hidden(d.layers), P(final_g), P(final_b), final_out, final_mean, final_rstd,
                     BL, H, cfg.layer_norm_eps());
  }
  return SequenceOutput();
}

void RoFormerModel::Impl::LayerForward(int l) {
  const LayerRefs& w = layer[l];
  LayerActs& a = acts[l];
  const int64_t BL = static_cast<int64_t>(B) * L;
  const int H = d.hidden, hl = Hl(), il = Il();
  const float eps = cfg.layer_norm_eps();
  const bool pre = cfg.pre_ln();
  float* x = Hidden(l);

  // ---- attention ----
  if (pre)
    LayerNormForward(x, P(w.lna_g), P(w.lna_b), a.attn_in, a.lna_mean, a.lna_rstd, BL, H, eps);
  float* ain = pre ? a.attn_in : x;
  tp.CopyToRegionForward(Span(ain, BL * H));
  LinearForward(ain, P(w.q_w), P(w.q_b), a.q, BL, H, hl);
  LinearForward(ain, P(w.k_w), P(w.k_b), a.k, BL, H, hl);
  LinearForward(ain, P(w.v_w), P(w.v_b), a.v, BL, H, hl);
  RopeForward(a.q, rope.data(), B, L, d.local_heads(), d.head_dim, hl);
  RopeForward(a.k, rope.data(), B, L, d.local_heads(), d.head_dim, hl);
  AttentionDims ad{B, L, d.local_heads(), d.head_dim, hl};
  AttentionForward(ad, AttnParams(l), a.q, a.k, a.v, mask.data(), carry, a.probs, a.ctx);
  // Row-parallel output projection: partial sums reduced, then the (replicated) bias.
  LinearForward(a.ctx, P(w.o_w), nullptr, a.res1, BL, hl, H);
  tp.ReduceFromRegionForward(Span(a.res1, BL * H));
  BiasDropoutResidualForward(Spec(cfg.hidden_dropout_prob(), l, kDropAttnOut, H, 0), a.res1,
                             P(w.o_b), x, BL, H);
  if (pre) {
    LayerNormForward(a.res1, P(w.lnf_g), P(w.lnf_b), a.ffn_in, a.lnf_mean, a.lnf_rstd, BL, H, eps);
  } else {
    LayerNormForward(a.res1, P(w.lna_g), P(w.lna_b), a.ffn_in, a.lna_mean, a.lna_rstd, BL, H, eps);
  }

  // ---- FFN ----
  tp.CopyToRegionForward(Span(a.ffn_in, BL * H));
  LinearForward(a.ffn_in, P(w.f1_w), P(w.f1_b), a.ffn_pre, BL, H, il);
  GeluForward(a.ffn_pre, a.ffn_act, BL * il);
  LinearForward(a.ffn_act, P(w.f2_w), nullptr, a.res2, BL, il, H);
  tp.ReduceFromRegionForward(Span(a.res2, BL * H));
  BiasDropoutResidualForward(Spec(cfg.hidden_dropout_prob(), l, kDropFfnOut, H, 0), a.res2,
                             P(w.f2_b), pre ? a.res1 : a.ffn_in, BL, H);
  if (!pre) {
    LayerNormForward(a.res2, P(w.lnf_g), P(w.lnf_b), a.out, a.lnf_mean, a.lnf_rstd, BL, H, eps);
  }
}

void RoFormerModel::Impl::LayerBackward(int l) {
  // In: G = d(layer output). Out: G = d(layer input).
  const LayerRefs& w = layer[l];
  LayerActs& a = acts[l];
  const int64_t BL = static_cast<int64_t>(B) * L;
  const int H = d.hidden, hl = Hl(), il = Il();
  const bool pre = cfg.pre_ln();
  float* x = Hidden(l);
  float* ain = pre ? a.attn_in : x;
  const DropoutSpec ffn_drop = Spec(cfg.hidden_dropout_prob(), l, kDropFfnOut, H, 0);
  const DropoutSpec attn_drop = Spec(cfg.hidden_dropout_prob(), l, kDropAttnOut, H, 0);

  // ---- FFN ----
  float* dres2 = G;
  if (!pre) {
    LayerNormBackward(G, a.res2, a.lnf_mean, a.lnf_rstd, P(w.lnf_g), D1, Gr(w.lnf_g), Gr(w.lnf_b),
                      BL, H);
    dres2 = D1;
  }
  DropoutBackward(ffn_drop, dres2, D2, BL, H);
  tp.ReduceFromRegionBackward(Span(D2, BL * H));
  LinearBackward(D2, a.ffn_act, P(w.f2_w), dffn, Gr(w.f2_w), Gr(w.f2_b), BL, il, H);
  GeluBackward(dffn, a.ffn_pre, dffn, BL * il);
  float* dffn_in = pre ? D1 : D2;  // post-LN: D1 still holds dres2 (the residual branch)
  // Column-parallel backward (f): dgrad first, its TP all-reduce overlaps the wgrad GEMM.
  LinearBackward(dffn, a.ffn_in, P(w.f1_w), dffn_in, nullptr, nullptr, BL, H, il);
  CommHandle ffn_reduce = tp.CopyToRegionBackwardAsync(Span(dffn_in, BL * H));
  LinearBackward(dffn, a.ffn_in, nullptr, nullptr, Gr(w.f1_w), Gr(w.f1_b), BL, H, il);
  tp.Wait(ffn_reduce);
  float* dres1;
  if (pre) {
    // res2 = res1 + drop(FFN(LN_f(res1))): G (= dres2) already holds the residual branch.
    LayerNormBackward(D1, a.res1, a.lnf_mean, a.lnf_rstd, P(w.lnf_g), G, Gr(w.lnf_g), Gr(w.lnf_b),
                      BL, H, /*accumulate_dx=*/true);
    dres1 = G;
  } else {
    AddInPlace(D2, D1, BL * H);  // res2 = ffn_in + ...: d ffn_in total
    LayerNormBackward(D2, a.res1, a.lna_mean, a.lna_rstd, P(w.lna_g), D1, Gr(w.lna_g), Gr(w.lna_b),
                      BL, H);
    dres1 = D1;
  }

  // ---- attention ----
  DropoutBackward(attn_drop, dres1, D2, BL, H);
  tp.ReduceFromRegionBackward(Span(D2, BL * H));
  LinearBackward(D2, a.ctx, P(w.o_w), dctx, Gr(w.o_w), Gr(w.o_b), BL, hl, H);
  AttentionDims ad{B, L, d.local_heads(), d.head_dim, hl};
  AttentionBackward(ad, AttnParams(l), dctx, a.q, a.k, a.v, mask.data(), a.probs, dcarry,
                    l + 1 < d.layers, dq, dk, dv, carry);
  RopeBackward(dq, rope.data(), B, L, d.local_heads(), d.head_dim, hl);
  RopeBackward(dk, rope.data(), B, L, d.local_heads(), d.head_dim, hl);
  float* dain = pre ? D1 : G;  // pre: G holds dres1 (residual); post: D1 holds dres1
  LinearBackward(dq, ain, P(w.q_w), dain, nullptr, nullptr, BL, H, hl);
  LinearBackward(dk, ain, P(w.k_w), dain, nullptr, nullptr, BL, H, hl, true);
  LinearBackward(dv, ain, P(w.v_w), dain, nullptr, nullptr, BL, H, hl, true);
  CommHandle qkv_reduce = tp.CopyToRegionBackwardAsync(Span(dain, BL * H));
  LinearBackward(dq, ain, nullptr, nullptr, Gr(w.q_w), Gr(w.q_b), BL, H, hl);
  LinearBackward(dk, ain, nullptr, nullptr, Gr(w.k_w), Gr(w.k_b), BL, H, hl);
  LinearBackward(dv, ain, nullptr, nullptr, Gr(w.v_w), Gr(w.v_b), BL, H, hl);
  tp.Wait(qkv_reduce);
  if (pre) {
    LayerNormBackward(D1, x, a.lna_mean, a.lna_rstd, P(w.lna_g), G, Gr(w.lna_g), Gr(w.lna_b), BL, H,
                      /*accumulate_dx=*/true);
  } else {
    AddInPlace(G, D1, BL * H);
  }
}

void RoFormerModel::Impl::EncoderBackward() {
  // In: d_seq = d(sequence output), already scaled.
  const int64_t BL = static_cast<int64_t>(B) * L;
  const int H = d.hidden, E = d.embedding;
  if (cfg.attention_recompute() && cfg.realformer()) {
    // The recomputing backward walks the carry down to layer 0; a second backward would start
    // from the bottom layer's carry and silently compute wrong probabilities.
    CHECK(carry_is_top) << "model.attention_recompute with RealFormer: one EncoderBackward per "
                           "EncoderForward";
    carry_is_top = false;
  }
  if (cfg.pre_ln()) {
    LayerNormBackward(d_seq, Hidden(d.layers), final_mean, final_rstd, P(final_g), G, Gr(final_g),
                      Gr(final_b), BL, H);
  } else {
    std::memcpy(G, d_seq, sizeof(float) * BL * H);
  }
  GradReady(ready_final_ln);
  for (int l = d.layers - 1; l >= 0; --l) {
    LayerBackward(l);
    GradReady(ready_layer[l]);
  }
  float* demb = G;
  if (E != H) {
    LinearBackward(G, emb_out, P(proj_w), dE, Gr(proj_w), Gr(proj_b), BL, E, H);
    demb = dE;
  }
  DropoutBackward(Spec(cfg.hidden_dropout_prob(), 0, kDropEmbedding, E, 0), demb, demb, BL, E);
  LayerNormBackward(demb, emb_sum, emb_mean, emb_rstd, P(emb_ln_g), dE2, Gr(emb_ln_g), Gr(emb_ln_b),
                    BL, E);
  tp.ReduceFromRegionBackward(Span(dE2, BL * E));
  // HF padding_idx: the [PAD] row (id 0) never receives an embedding gradient.
  EmbeddingBackward(ids.data(), dE2, Gr(word), BL, E, vocab_start(), Vl(), /*skip_id=*/0);
  EmbeddingBackward(types.data(), dE2, Gr(type), BL, E, 0, d.type_vocab, /*skip_id=*/-1);
  GradReady(ready_embeddings);
}

CrossEntropyStats RoFormerModel::Impl::MlmHead(const int32_t* positions, const int32_t* labels,
                                               int64_t m, bool backward, float grad_scale) {
  last_m = m;
  if (m == 0) return {};
  ReserveHead(m);
  const int H = d.hidden, E = d.embedding, V = Vl();
  // HF RoFormerLMPredictionHead: LN_E(gelu(dense_{H->E}(x))) then the tied decoder + bias, here
  // only on the selected rows.
  GatherRows(SequenceOutput(), positions, h_g, m, H);
  LinearForward(h_g, P(head_w), P(head_b), h_t1, m, H, E);
  GeluForward(h_t1, h_t2, m * E);
  LayerNormForward(h_t2, P(head_ln_g), P(head_ln_b), h_t3, h_mean, h_rstd, m, E,
                   cfg.layer_norm_eps());
  // Decoder tied to the (vocab-parallel) word embeddings: a column-parallel linear.
  tp.CopyToRegionForward(Span(h_t3, m * E));
  LinearForward(h_t3, P(word), P(dec_bias), h_logits, m, E, V);
  if (!labels) return {};
  // Mean over rows (labels are validated, so every row counts), times the caller's scale: every
  // downstream gradient inherits it. The fused backward overwrites the logits with dlogits.
  const float row_scale = grad_scale / static_cast<float>(m);
  CrossEntropyStats st;
  if (!tp.active()) {
    st = SoftmaxCrossEntropy(h_logits, labels, m, V, valid_local_vocab(),
                             backward ? h_logits : nullptr, row_scale);
  } else {
    // Vocab-parallel: the [m, V/tp] logits stay local; one all-gather of 4 doubles per row and
    // shard replaces the gather of the logits (padded columns are masked inside the kernel; a
    // shard of padding only still joins the collective).
    const size_t n = static_cast<size_t>(m) * kVocabShardStatsWidth;
    VocabShardStats(h_logits, labels, m, V, valid_local_vocab(), vocab_start(), ce_local.data());
    tp.AllGather(std::span<const double>(ce_local.data(), n),
                 std::span<double>(ce_all.data(), n * d.tp));
    st = VocabParallelCrossEntropy(h_logits, labels, m, V, valid_local_vocab(), vocab_start(),
                                   d.vocab, ce_all.data(), d.tp, backward ? h_logits : nullptr,
                                   row_scale);
  }
  if (!backward) return st;
  // Tied decoder: its weight IS the local word-embedding shard, so the decoder's wgrad lands in
  // the same gradient rows as the lookup's (no extra collective; anchors §10.11). The input grad
  // is partial over vocab shards (f backward); its all-reduce overlaps the wgrad GEMM.
  LinearBackward(h_logits, h_t3, P(word), h_dt3, nullptr, nullptr, m, E, V);
  CommHandle dec_reduce = tp.CopyToRegionBackwardAsync(Span(h_dt3, m * E));
  LinearBackward(h_logits, h_t3, nullptr, nullptr, Gr(word), Gr(dec_bias), m, E, V);
  dec_reduce.Wait();
  LayerNormBackward(h_dt3, h_t2, h_mean, h_rstd, P(head_ln_g), h_dt2, Gr(head_ln_g), Gr(head_ln_b),
                    m, E);
  GeluBackward(h_dt2, h_t1, h_dt2, m * E);
  LinearBackward(h_dt2, h_g, P(head_w), h_dg, Gr(head_w), Gr(head_b), m, H, E);
  ScatterAddRows(h_dg, positions, d_seq, m, H);
  return st;
}

CrossEntropyStats RoFormerModel::Impl::SopHead(const int32_t* labels, bool backward,
                                               float grad_scale) {
  const int H = d.hidden;
  cls_index.resize(B);
  for (int b = 0; b < B; ++b) cls_index[b] = b * L;
  // BERT-style pooler on [CLS] (dense + tanh), then a 2-way classifier.
  GatherRows(SequenceOutput(), cls_index.data(), sop_cls, B, H);
  LinearForward(sop_cls, P(sop_w), P(sop_b), sop_pre, B, H, H);
  TanhForward(sop_pre, sop_pool, static_cast<int64_t>(B) * H);
  LinearForward(sop_pool, P(cls_w), P(cls_b), sop_logits, B, H, 2);
  const float row_scale = grad_scale / static_cast<float>(B);
  CrossEntropyStats st =
      SoftmaxCrossEntropy(sop_logits, labels, B, 2, 2, backward ? sop_logits : nullptr, row_scale);
  if (!backward) return st;
  LinearBackward(sop_logits, sop_pool, P(cls_w), sop_dpool, Gr(cls_w), Gr(cls_b), B, H, 2);
  TanhBackward(sop_dpool, sop_pool, sop_dpool, static_cast<int64_t>(B) * H);
  LinearBackward(sop_dpool, sop_cls, P(sop_w), sop_dcls, Gr(sop_w), Gr(sop_b), B, H, H);
  ScatterAddRows(sop_dcls, cls_index.data(), d_seq, B, H);
  return st;
}

// ---------------------------------------------------------------------------------------------

RoFormerModel::RoFormerModel(const config::ModelConfig& cfg, TpRegion tp, bool with_optimizer_state)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.cfg = cfg;
  m.tp = tp;
  if (cfg.vocab_size() <= 0)
    Fail("model.vocab_size must be resolved (> 0) before building the model");
  m.d = MakeModelDims(cfg, tp.size(), tp.rank());
  ValidateTpLayout(m.d);
  if (cfg.precision() == "bf16") {
    const std::string why = Bf16GemmUnavailableReason();
    if (!why.empty()) Fail("model.precision: \"bf16\" is unavailable: ", why);
    m.gemm_precision = GemmPrecision::kBf16;
  } else if (cfg.precision() != "fp32") {
    Fail("model.precision must be \"fp32\" or \"bf16\" (got \"", cfg.precision(), "\")");
  }
  if (cfg.attention_scale() != "sqrt_d" && cfg.attention_scale() != "log_n") {
    Fail("model.attention_scale must be \"sqrt_d\" or \"log_n\" (got \"", cfg.attention_scale(),
         "\")");
  }
  m.Declare();
  m.store.Allocate(with_optimizer_state);
  m.rope = RopeTable(m.d.max_positions, m.d.head_dim);
}

RoFormerModel::~RoFormerModel() = default;

TpGradState TpGradStateOf(const ParamInfo& info) {
  switch (info.placement) {
    case Placement::kShardDim0:
    case Placement::kShardDim1:
      return TpGradState::kShardComplete;
    case Placement::kReplicated:
      // Every replicated tensor (LNs, token-type table, row-parallel biases added after g, the MLM
      // transform, SOP head, embeddings_project) is used between a g (all-reduce) and the next f,
      // on activations that are bit-identical across TP ranks, and its output gradient there is
      // also TP-invariant (f's backward all-reduces before it reaches them). Sequence
      // parallelism would change this rule to kPartial.
      return TpGradState::kReplicaComplete;
  }
  return TpGradState::kPartial;
}

const ModelDims& RoFormerModel::dims() const { return impl_->d; }
TpRegion& RoFormerModel::tp() { return impl_->tp; }

void RoFormerModel::SetGradReadyHook(std::function<void(const std::vector<size_t>&)> hook) {
  impl_->grad_ready = std::move(hook);
}

void RoFormerModel::FinishGradientsTp() {
  Impl& m = *impl_;
  if (!m.tp.active()) return;
  // Pack the partial gradients into one buffer, one all-reduce, unpack. Same order on every rank
  // (the store's declaration order), so the collective schedule matches by construction.
  int64_t n = 0;
  for (const ParamInfo& info : m.store.infos()) {
    if (TpGradStateOf(info) == TpGradState::kPartial) n += info.numel;
  }
  if (n == 0) return;
  m.tp_partial.resize(static_cast<size_t>(n));
  float* grads = m.store.grads().data();
  int64_t at = 0;
  for (const ParamInfo& info : m.store.infos()) {
    if (TpGradStateOf(info) != TpGradState::kPartial) continue;
    std::memcpy(m.tp_partial.data() + at, grads + info.offset, sizeof(float) * info.numel);
    at += info.numel;
  }
  m.tp.AllReduceSum(std::span<float>(m.tp_partial));
  at = 0;
  for (const ParamInfo& info : m.store.infos()) {
    if (TpGradStateOf(info) != TpGradState::kPartial) continue;
    std::memcpy(grads + info.offset, m.tp_partial.data() + at, sizeof(float) * info.numel);
    at += info.numel;
  }
}

std::string RoFormerModel::CheckReplicatedAcrossTp(bool grads) {
  Impl& m = *impl_;
  const float* base = grads ? m.store.grads().data() : m.store.params().data();
  std::vector<uint64_t> mine;
  std::vector<const ParamInfo*> which;
  for (const ParamInfo& info : m.store.infos()) {
    if (info.placement != Placement::kReplicated) continue;
    mine.push_back(Fnv1a64(base + info.offset, static_cast<size_t>(info.numel) * sizeof(float)));
    which.push_back(&info);
  }
  std::vector<uint64_t> all(mine.size() * m.tp.size());
  m.tp.AllGather(std::span<const uint64_t>(mine), std::span<uint64_t>(all));
  for (size_t i = 0; i < mine.size(); ++i) {
    for (int t = 0; t < m.tp.size(); ++t) {
      if (all[t * mine.size() + i] != mine[i]) return which[i]->name;
    }
  }
  return "";
}
const config::ModelConfig& RoFormerModel::config() const { return impl_->cfg; }
ParamStore& RoFormerModel::store() { return impl_->store; }
const ParamStore& RoFormerModel::store() const { return impl_->store; }

void RoFormerModel::InitWeights(uint64_t seed) {
  Impl& m = *impl_;
  const double stddev = m.cfg.initializer_range();
  float* params = m.store.params().data();
  for (const ParamInfo& info : m.store.infos()) {
    float* p = params + info.offset;
    const bool is_ln_weight =
        EndsWith(info.name, "LayerNorm.weight") || EndsWith(info.name, "final_layer_norm.weight");
    if (is_ln_weight) {
      std::fill(p, p + info.numel, 1.0f);
      continue;
    }
    if (EndsWith(info.name, ".bias")) {
      std::fill(p, p + info.numel, 0.0f);
      continue;
    }
    const uint64_t stream = MixStream(Fnv1a64(info.name), 0x696e6974 /* "init" */);
    const int64_t rows = info.local_shape[0];
    const int64_t cols = info.numel / std::max<int64_t>(rows, 1);
    const int64_t gcols = info.global_shape.size() > 1 ? info.global_shape[1] : 1;
    const bool is_word = info.name == "roformer.embeddings.word_embeddings.weight";
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        // Logical (unsharded) coordinates: every TP layout draws the same values.
        int64_t gr = r, gc = c;
        if (info.placement == Placement::kShardDim0) gr += info.shard_start;
        if (info.placement == Placement::kShardDim1) gc += info.shard_start;
        float value = 0.0f;
        if (!(is_word && (gr == 0 || gr >= m.d.vocab))) {
          const auto w = Philox4x32(stream, static_cast<uint64_t>(gr * gcols + gc), seed);
          const double u1 = (static_cast<double>(w[0]) + 1.0) * 0x1.0p-32;  // (0, 1]
          const double u2 = static_cast<double>(w[1]) * 0x1.0p-32;
          const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
          value = static_cast<float>(z * stddev);
        }
        p[r * cols + c] = value;
      }
    }
  }
}

LossStats RoFormerModel::ForwardBackward(const Batch& batch, const DropoutContext& dropout,
                                         bool backward, float grad_scale, float mlm_scale,
                                         float sop_scale) {
  Impl& m = *impl_;
  ScopedGemmPrecision precision(m.gemm_precision);
  const auto t0 = std::chrono::steady_clock::now();
  m.EncoderForward(batch, dropout);
  const int64_t BL = static_cast<int64_t>(m.B) * m.L;
  if (backward) std::memset(m.d_seq, 0, sizeof(float) * BL * m.d.hidden);
  LossStats ls;
  const auto t1 = std::chrono::steady_clock::now();
  ls.forward_seconds = std::chrono::duration<double>(t1 - t0).count();
  const CrossEntropyStats mlm = m.MlmHead(batch.mlm_positions.data(), batch.mlm_labels.data(),
                                          static_cast<int64_t>(batch.mlm_positions.size()),
                                          backward && mlm_scale != 0.0f, grad_scale * mlm_scale);
  ls.mlm_count = mlm.count;
  ls.mlm_correct = mlm.correct;
  ls.mlm_loss = mlm.count > 0 ? mlm.loss_sum / mlm.count : 0.0;
  if (!batch.sop_labels.empty()) {
    const CrossEntropyStats sop =
        m.SopHead(batch.sop_labels.data(), backward && sop_scale != 0.0f, grad_scale * sop_scale);
    ls.sop_count = sop.count;
    ls.sop_correct = sop.correct;
    ls.sop_loss = sop.count > 0 ? sop.loss_sum / sop.count : 0.0;
  }
  ls.loss = ls.mlm_loss + ls.sop_loss;
  if (backward) {
    m.GradReady(m.ready_heads);
    m.EncoderBackward();
  }
  // The heads' forward and backward run together; they are counted as backward time.
  ls.backward_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  return ls;
}

void RoFormerModel::Infer(const Batch& batch, std::vector<float>* mlm_logits,
                          std::vector<float>* sequence_output,
                          std::vector<std::vector<float>>* hidden_states) {
  Impl& m = *impl_;
  ScopedGemmPrecision precision(m.gemm_precision);
  const float* seq = m.EncoderForward(batch, DropoutContext{});
  const int64_t BL = static_cast<int64_t>(m.B) * m.L;
  const int H = m.d.hidden;
  if (sequence_output) sequence_output->assign(seq, seq + BL * H);
  if (hidden_states) {
    hidden_states->resize(m.d.layers + 1);
    for (int i = 0; i <= m.d.layers; ++i) {
      (*hidden_states)[i].assign(m.Hidden(i), m.Hidden(i) + BL * H);
    }
  }
  if (mlm_logits) {
    std::vector<int32_t> all(BL);
    for (int64_t i = 0; i < BL; ++i) all[i] = static_cast<int32_t>(i);
    m.MlmHead(all.data(), nullptr, BL, false, 0.0f);
    const int V = m.d.vocab, Vp = m.d.vocab_padded;
    std::vector<float> full(BL * Vp);
    m.tp.GatherFromRegionForward({m.h_logits, static_cast<size_t>(BL * m.Vl())}, full, BL);
    mlm_logits->resize(BL * V);
    for (int64_t r = 0; r < BL; ++r) {
      std::memcpy(mlm_logits->data() + r * V, full.data() + r * Vp, sizeof(float) * V);
    }
  }
}

const float* RoFormerModel::EncoderForward(const Batch& batch, const DropoutContext& dropout) {
  ScopedGemmPrecision precision(impl_->gemm_precision);
  return impl_->EncoderForward(batch, dropout);
}

void RoFormerModel::EncoderBackward(const float* d_sequence_output, float grad_scale) {
  Impl& m = *impl_;
  const int64_t n = static_cast<int64_t>(m.B) * m.L * m.d.hidden;
  CHECK_GT(n, 0) << "EncoderBackward before EncoderForward";
  ScopedGemmPrecision precision(m.gemm_precision);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) m.d_seq[i] = d_sequence_output[i] * grad_scale;
  m.EncoderBackward();
}

std::span<const float> RoFormerModel::LastMlmLogits() const {
  const Impl& m = *impl_;
  return {m.h_logits, static_cast<size_t>(m.last_m * m.Vl())};
}

}  // namespace roformer
