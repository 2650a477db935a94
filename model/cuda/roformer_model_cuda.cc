// GPU port of model/roformer_model.cc (see the header). The whole file is inside
// ROFORMER_HAVE_CUDA_MODEL: the core library's model/**.cc glob compiles it empty and the
// roformer_cuda_model target (CMake's CUDA block) compiles it for real.
//
// Every function below mirrors the CPU function of the same name line for line, TP collectives
// included (through CudaTpRegion, model/cuda/tp_region_cuda.h, where the CPU calls TpRegion), so a
// reviewer can diff the two; where the GPU differs it says why.
#ifdef ROFORMER_HAVE_CUDA_MODEL

#include "model/cuda/roformer_model_cuda.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cross_entropy.h"  // kVocabShardStatsWidth
#include "kernels/cpu/rope.h"           // RopeTable (host)
#include "kernels/cuda/gemm_cublas.h"
#include "kernels/cuda/ops.h"
#include "model/cuda/tp_region_cuda.h"
#include "model/param_refs.h"
#include "runtime/error.h"

namespace roformer::cuda {

// Dropout op ids: must equal model/roformer_model.cc's, so masks match the CPU model's.
enum DropOp : uint32_t {
  kDropEmbedding = 0,
  kDropAttnProbs = 1,
  kDropAttnOut = 2,
  kDropFfnOut = 3
};

struct CudaRoFormerModel::Impl {
  virtual ~Impl() = default;
  virtual void UploadParams(const ParamStore& store) = 0;
  virtual LossStats ForwardBackward(const Batch& batch, const DropoutContext& dropout,
                                    bool backward, float grad_scale, float mlm_scale,
                                    float sop_scale) = 0;
  float* params = nullptr;
  float* grads = nullptr;
  bf16* weights_bf16 = nullptr;  // the GEMM copy of the weights (bf16 models only)
  int64_t total = 0;
  cudaStream_t stream = nullptr;
  ModelDims d;
  CudaTpRegion tp;  // the only way the model talks across TP
  std::vector<ParamInfo> infos;
  // Optimizer state (EnsureOptimizerState: by UploadParams with moments, or the first step).
  float *adam_m = nullptr, *adam_v = nullptr;
  int64_t* seg_offsets = nullptr;
  double *seg_sums = nullptr, *norm2 = nullptr;
  int* first_bad = nullptr;
  void* norm_ws = nullptr;
  double* tp_norm = nullptr;  // CheckGradients under TP: {sharded, replicated, first bad index}

  // Gradient-ready groups (store indices) in backward order, for SetGradReadyHook; grouped as
  // RoFormerModel::Impl::Declare groups them.
  std::function<void(const std::vector<size_t>&)> grad_ready;
  std::vector<size_t> ready_heads, ready_final_ln, ready_embeddings;
  std::vector<std::vector<size_t>> ready_layer;
  // TP fix-up: tensors whose gradient is partial over TP (TpGradStateOf), which of them were
  // already summed this step (by the grad-ready path), and the packing buffer (allocated once,
  // only when some tensor is partial and tp > 1).
  std::vector<size_t> tp_partial;
  std::vector<char> tp_reduced;
  float* tp_partial_buf = nullptr;

  void BuildGroups();
  void GradReady(const std::vector<size_t>& group);
  void ReducePartial(const std::vector<size_t>& tensors);
  void EnsureOptimizerState();
  GradCheck CheckGradients();
  void ApplyAdamW(const AdamWOptions& opt, double lr, int64_t step, double grad_norm);
  void FreeOptimizer() {
    for (void* p :
         {static_cast<void*>(adam_m), static_cast<void*>(adam_v), static_cast<void*>(seg_offsets),
          static_cast<void*>(seg_sums), static_cast<void*>(norm2), static_cast<void*>(first_bad),
          norm_ws, static_cast<void*>(tp_norm), static_cast<void*>(tp_partial_buf)}) {
      if (p) cudaFree(p);
    }
  }
};

void CudaRoFormerModel::Impl::BuildGroups() {
  // model/roformer_model.cc (Declare): the word embedding is tied to the decoder, so it is final
  // only after the embedding backward.
  ready_layer.assign(d.layers, {});
  ready_heads.clear();
  ready_final_ln.clear();
  ready_embeddings.clear();
  tp_partial.clear();
  int64_t partial_numel = 0;
  for (size_t i = 0; i < infos.size(); ++i) {
    const std::string& n = infos[i].name;
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
    if (TpGradStateOf(infos[i]) == TpGradState::kPartial) {
      tp_partial.push_back(i);
      partial_numel += infos[i].numel;
    }
  }
  tp_reduced.assign(infos.size(), 0);
  if (tp.active() && partial_numel > 0) {
    ROFORMER_CUDA_CHECK(
        cudaMalloc(reinterpret_cast<void**>(&tp_partial_buf), sizeof(float) * partial_numel));
  }
}

void CudaRoFormerModel::Impl::ReducePartial(const std::vector<size_t>& tensors) {
  // RoFormerModel::FinishGradientsTp on the device: pack (store order), one all-reduce, unpack,
  // all on the compute stream (the all-reduce through the TP region's events). The tensor list
  // and tp_reduced evolve identically on every TP rank, so every rank issues the same collective.
  if (!tp.active()) return;
  std::vector<size_t> todo;
  int64_t n = 0;
  for (const size_t i : tensors) {
    if (TpGradStateOf(infos[i]) != TpGradState::kPartial || tp_reduced[i]) continue;
    todo.push_back(i);
    n += infos[i].numel;
  }
  if (n == 0) return;
  int64_t at = 0;
  for (const size_t i : todo) {
    ROFORMER_CUDA_CHECK(cudaMemcpyAsync(tp_partial_buf + at, grads + infos[i].offset,
                                        sizeof(float) * infos[i].numel, cudaMemcpyDeviceToDevice,
                                        stream));
    at += infos[i].numel;
  }
  tp.AllReduce(tp_partial_buf, n, TpReduce::kSum);
  at = 0;
  for (const size_t i : todo) {
    ROFORMER_CUDA_CHECK(cudaMemcpyAsync(grads + infos[i].offset, tp_partial_buf + at,
                                        sizeof(float) * infos[i].numel, cudaMemcpyDeviceToDevice,
                                        stream));
    at += infos[i].numel;
    tp_reduced[i] = 1;
  }
}

void CudaRoFormerModel::Impl::GradReady(const std::vector<size_t>& group) {
  if (!grad_ready || group.empty()) return;
  // The hook is set for the last micro-batch only, so the group's gradients are final for the
  // step: its partial tensors can be summed over TP now (FinishGradientsTp skips them).
  ReducePartial(group);
  grad_ready(group);
}

void CudaRoFormerModel::Impl::EnsureOptimizerState() {
  if (adam_m) return;
  const size_t bytes = sizeof(float) * std::max<int64_t>(total, 1);
  ROFORMER_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&adam_m), bytes));
  ROFORMER_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&adam_v), bytes));
  ROFORMER_CUDA_CHECK(cudaMemsetAsync(adam_m, 0, bytes, stream));
  ROFORMER_CUDA_CHECK(cudaMemsetAsync(adam_v, 0, bytes, stream));
  // Segments = tensors in store order, as CheckGradients walks them.
  const int nseg = static_cast<int>(infos.size());
  std::vector<int64_t> offsets;
  for (const auto& info : infos) offsets.push_back(info.offset);
  offsets.push_back(nseg > 0 ? infos.back().offset + infos.back().numel : 0);
  ROFORMER_CUDA_CHECK(
      cudaMalloc(reinterpret_cast<void**>(&seg_offsets), sizeof(int64_t) * offsets.size()));
  // On the compute stream (which may be non-blocking, so not ordered after the legacy stream),
  // waited for before `offsets` goes away.
  ROFORMER_CUDA_CHECK(cudaMemcpyAsync(seg_offsets, offsets.data(), sizeof(int64_t) * offsets.size(),
                                      cudaMemcpyHostToDevice, stream));
  ROFORMER_CUDA_CHECK(
      cudaMalloc(reinterpret_cast<void**>(&seg_sums), sizeof(double) * std::max(nseg, 1)));
  ROFORMER_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&norm2), sizeof(double)));
  ROFORMER_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&first_bad), sizeof(int)));
  ROFORMER_CUDA_CHECK(cudaMalloc(&norm_ws, std::max<size_t>(GradNormWorkspaceBytes(nseg), 1)));
  ROFORMER_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&tp_norm), sizeof(double) * 3));
  ROFORMER_CUDA_CHECK(cudaStreamSynchronize(stream));
}

GradCheck CudaRoFormerModel::Impl::CheckGradients() {
  EnsureOptimizerState();
  const int nseg = static_cast<int>(infos.size());
  GradSumSquares(grads, seg_offsets, nseg, seg_sums, norm2, first_bad, norm_ws, stream);
  GradCheck gc;
  if (!tp.active()) {
    // model/optimizer.cc's CheckGradients: the in-order total of the per-tensor sums.
    double n2 = 0;
    int bad = -1;
    ROFORMER_CUDA_CHECK(
        cudaMemcpyAsync(&n2, norm2, sizeof(double), cudaMemcpyDeviceToHost, stream));
    ROFORMER_CUDA_CHECK(
        cudaMemcpyAsync(&bad, first_bad, sizeof(int), cudaMemcpyDeviceToHost, stream));
    ROFORMER_CUDA_CHECK(cudaStreamSynchronize(stream));
    gc.norm = std::sqrt(n2);
    if (bad >= 0) {
      gc.finite = false;
      gc.first_bad = infos[bad].name;
    }
    return gc;
  }
  // TP: runtime/tp_region.cc's TpGlobalSumSquares. Per tensor in store order into two fp64
  // partial sums: sharded tensors (this rank's shard, summed over TP) and replicated ones
  // (identical on every TP rank: only rank 0 contributes them). The first non-finite tensor is
  // the minimum store index over the group, so every rank names the same one.
  std::vector<double> sums(static_cast<size_t>(std::max(nseg, 1)), 0.0);
  ROFORMER_CUDA_CHECK(cudaMemcpyAsync(sums.data(), seg_sums, sizeof(double) * nseg,
                                      cudaMemcpyDeviceToHost, stream));
  ROFORMER_CUDA_CHECK(cudaStreamSynchronize(stream));
  double acc[3] = {0, 0, static_cast<double>(nseg)};
  for (int i = 0; i < nseg; ++i) {
    acc[infos[i].placement == Placement::kReplicated ? 1 : 0] += sums[i];
    if (!std::isfinite(sums[i]) && acc[2] == nseg) acc[2] = i;
  }
  if (tp.rank() != 0) acc[1] = 0;
  ROFORMER_CUDA_CHECK(cudaMemcpyAsync(tp_norm, acc, sizeof(acc), cudaMemcpyHostToDevice, stream));
  tp.AllReduce(tp_norm, 2, TpReduce::kSum);
  tp.AllReduce(tp_norm + 2, 1, TpReduce::kMin);
  ROFORMER_CUDA_CHECK(cudaMemcpyAsync(acc, tp_norm, sizeof(acc), cudaMemcpyDeviceToHost, stream));
  ROFORMER_CUDA_CHECK(cudaStreamSynchronize(stream));  // `acc` is read back (and was read) here
  gc.norm = std::sqrt(acc[0] + acc[1]);
  if (acc[2] < nseg) {
    gc.finite = false;
    gc.first_bad = infos[static_cast<size_t>(acc[2])].name;
  }
  return gc;
}

void CudaRoFormerModel::Impl::ApplyAdamW(const AdamWOptions& opt, double lr, int64_t step,
                                         double grad_norm) {
  EnsureOptimizerState();
  const AdamWCoefficients c =
      MakeAdamWCoefficients(opt.beta1, opt.beta2, opt.eps, lr, step, opt.grad_clip, grad_norm);
  for (const auto& info : infos) {
    // model/optimizer.cc's decay factor: lr * weight_decay for decayed tensors, else 0.
    const float decay = info.weight_decay ? static_cast<float>(lr * opt.weight_decay) : 0.0f;
    AdamWUpdate(c, decay, params + info.offset, grads + info.offset, adam_m + info.offset,
                adam_v + info.offset, info.numel,
                weights_bf16 ? weights_bf16 + info.offset : nullptr, stream);
  }
}

namespace {

template <typename T>
struct LayerActs {
  T *attn_in, *q, *k, *v, *probs, *ctx, *res1, *ffn_in, *ffn_pre, *ffn_act, *res2, *out;
  float *lna_mean, *lna_rstd, *lnf_mean, *lnf_rstd;
};

// Device allocations of one reservation, freed together when a larger batch needs more.
class Arena {
 public:
  ~Arena() { Clear(); }
  template <typename U>
  U* Take(int64_t n) {
    void* p = nullptr;
    ROFORMER_CUDA_CHECK(cudaMalloc(&p, std::max<int64_t>(n, 1) * sizeof(U)));
    ptrs_.push_back(p);
    return static_cast<U*>(p);
  }
  void Clear() {
    for (void* p : ptrs_) cudaFree(p);
    ptrs_.clear();
  }

 private:
  std::vector<void*> ptrs_;
};

template <typename T>
class Model final : public CudaRoFormerModel::Impl, public ParamRefs {
 public:
  Model(const config::ModelConfig& c, const ParamStore& layout, cudaStream_t s,
        NcclCommunicator* tp_comm)
      : cfg(c), blas(s, Deterministic()) {
    stream = s;
    tp.Init(tp_comm, s);
    d = MakeModelDims(c, tp.size(), tp.rank());
    ValidateTpLayout(d);
    infos = layout.infos();
    Resolve(layout);  // before any allocation: a Fail here leaks nothing
    total = layout.size();
    ROFORMER_CUDA_CHECK(
        cudaMalloc(reinterpret_cast<void**>(&params), sizeof(float) * std::max<int64_t>(total, 1)));
    ROFORMER_CUDA_CHECK(
        cudaMalloc(reinterpret_cast<void**>(&grads), sizeof(float) * std::max<int64_t>(total, 1)));
    if constexpr (std::is_same_v<T, bf16>) {
      ROFORMER_CUDA_CHECK(
          cudaMalloc(reinterpret_cast<void**>(&wt), sizeof(bf16) * std::max<int64_t>(total, 1)));
      weights_bf16 = wt;
    }
    BuildGroups();
    const std::vector<float> rope = RopeTable(d.max_positions, d.head_dim);
    ROFORMER_CUDA_CHECK(
        cudaMalloc(reinterpret_cast<void**>(&rope_dev), sizeof(float) * rope.size()));
    // On the compute stream (it may be non-blocking); UploadParams synchronises it before `rope`
    // goes away.
    ROFORMER_CUDA_CHECK(cudaMemcpyAsync(rope_dev, rope.data(), sizeof(float) * rope.size(),
                                        cudaMemcpyHostToDevice, stream));
    UploadParams(layout);
    ROFORMER_CUDA_CHECK(cudaMemsetAsync(grads, 0, sizeof(float) * total, stream));
  }
  ~Model() override {
    cudaStreamSynchronize(stream);
    tp.Synchronize();
    FreeOptimizer();
    cudaFree(params);
    cudaFree(grads);
    if constexpr (std::is_same_v<T, bf16>) cudaFree(wt);
    cudaFree(rope_dev);
    if (ev_start) cudaEventDestroy(ev_start);
    if (ev_forward) cudaEventDestroy(ev_forward);
  }

  void UploadParams(const ParamStore& store) override {
    if (store.size() != total) Fail("CudaRoFormerModel: store size ", store.size(), " != ", total);
    ROFORMER_CUDA_CHECK(cudaMemcpyAsync(params, store.params().data(), sizeof(float) * total,
                                        cudaMemcpyHostToDevice, stream));
    if constexpr (std::is_same_v<T, bf16>) ConvertToBf16(params, wt, total, stream);
    if (static_cast<int64_t>(store.adam_m().size()) == total &&
        static_cast<int64_t>(store.adam_v().size()) == total) {
      // A store with moments (a checkpoint's, or a fresh CPU store's zeros) restores them, even
      // on a model that has not stepped yet.
      EnsureOptimizerState();
      ROFORMER_CUDA_CHECK(cudaMemcpyAsync(adam_m, store.adam_m().data(), sizeof(float) * total,
                                          cudaMemcpyHostToDevice, stream));
      ROFORMER_CUDA_CHECK(cudaMemcpyAsync(adam_v, store.adam_v().data(), sizeof(float) * total,
                                          cudaMemcpyHostToDevice, stream));
    }
    ROFORMER_CUDA_CHECK(cudaStreamSynchronize(stream));
  }

  LossStats ForwardBackward(const Batch& batch, const DropoutContext& dropout, bool backward,
                            float grad_scale, float mlm_scale, float sop_scale) override;

 private:
  static BlasOptions Deterministic() {
    BlasOptions o;
    o.deterministic = true;
    return o;
  }
  // Parameter views: fp32 master (biases, LayerNorm, anything only read elementwise), the GEMM
  // operand copy (T), the fp32 gradient.
  float* P(int64_t off) { return params + off; }
  T* W(int64_t off) {
    if constexpr (std::is_same_v<T, bf16>) {
      return wt + off;
    } else {
      return params + off;
    }
  }
  float* Gr(int64_t off) { return grads + off; }

  int H() const { return d.hidden; }
  int E() const { return d.embedding; }
  int Hl() const { return d.local_heads() * d.head_dim; }
  int Il() const { return d.local_intermediate(); }
  int Vl() const { return d.local_vocab(); }
  int64_t vocab_start() const { return static_cast<int64_t>(d.tp_rank) * Vl(); }
  int valid_local_vocab() const {
    return static_cast<int>(std::clamp<int64_t>(d.vocab - vocab_start(), 0, Vl()));
  }
  T* Hidden(int i) { return i == 0 ? hidden0 : acts[i - 1].out; }
  T* SequenceOutput() { return cfg.pre_ln() ? final_out : Hidden(d.layers); }

  void Resolve(const ParamStore& layout);
  void Reserve(int b, int l);
  void ReserveHead(int64_t m);
  DropoutSpec Spec(float p, uint32_t layer_id, uint32_t op, int64_t cols_global,
                   int64_t col_offset) const;
  AttentionParams AttnParams(int l) const;
  void EncoderForward(const Batch& batch, const DropoutContext& dc);
  void LayerForward(int l);
  void EncoderBackward();
  void LayerBackward(int l);
  // The heads leave their loss statistics on the device (ce_stats[0] MLM, [1] SOP); the step
  // reads both back once, at its end, so the host never waits in the middle of a step.
  void MlmHead(const Batch& batch, bool backward, float grad_scale);
  void SopHead(const Batch& batch, bool backward, float grad_scale);

  config::ModelConfig cfg;
  Blas blas;
  bf16* wt = nullptr;  // bf16 copy of the master weights (T = bf16 only)
  float* rope_dev = nullptr;

  // parameter offsets: ParamRefs (model/param_refs.h)

  Arena arena, head_arena;
  int cap_b = 0, cap_l = 0;
  int64_t cap_m = 0;
  std::vector<LayerActs<T>> acts;
  T *emb_sum = nullptr, *emb_out = nullptr, *hidden0 = nullptr, *final_out = nullptr;
  float *emb_mean = nullptr, *emb_rstd = nullptr, *final_mean = nullptr, *final_rstd = nullptr;
  float *carry = nullptr, *dcarry = nullptr;
  T *G = nullptr, *D1 = nullptr, *D2 = nullptr, *dctx = nullptr, *dq = nullptr, *dk = nullptr,
    *dv = nullptr, *dffn = nullptr, *dE = nullptr, *dE2 = nullptr, *d_seq = nullptr;
  void *attn_ws = nullptr, *ln_ws = nullptr, *col_ws = nullptr, *ce_ws = nullptr;
  int32_t *ids = nullptr, *types = nullptr, *mask = nullptr, *cls_index = nullptr;
  // Embedding-backward groups of the last forward (host lists, device copies): word, token type.
  EmbeddingGroups groups[2];
  int32_t *group_ids[2] = {}, *group_starts[2] = {}, *group_rows[2] = {};
  CrossEntropyDeviceStats* ce_stats = nullptr;           // [2]: MLM, SOP
  std::vector<int32_t> cls_host;                         // [CLS] rows: the source of an async copy
  cudaEvent_t ev_start = nullptr, ev_forward = nullptr;  // forward time without a host wait
  T *sop_cls = nullptr, *sop_pre = nullptr, *sop_pool = nullptr, *sop_logits = nullptr,
    *sop_dpool = nullptr, *sop_dcls = nullptr;
  int32_t *sop_labels = nullptr, *mlm_pos = nullptr, *mlm_lab = nullptr;
  T *h_g = nullptr, *h_t1 = nullptr, *h_t2 = nullptr, *h_t3 = nullptr, *h_logits = nullptr,
    *h_dg = nullptr, *h_dt3 = nullptr, *h_dt2 = nullptr;
  float *h_mean = nullptr, *h_rstd = nullptr;
  // vocab-parallel cross-entropy: this shard's per-row summaries and every shard's (all-gathered)
  double *ce_local = nullptr, *ce_all = nullptr;

  int B = 0, L = 0;
  DropoutContext drop;
};

template <typename T>
void Model<T>::Resolve(const ParamStore& layout) {
  const std::string word_name = "roformer.embeddings.word_embeddings.weight";
  if (!layout.has(word_name)) Fail("CudaRoFormerModel: the store has no tensor '", word_name, "'");
  const ParamInfo& word_info = layout.info(word_name);
  if (word_info.local_shape[0] != Vl() || word_info.shard_start != vocab_start() ||
      word_info.global_shape[0] != d.vocab_padded)
    Fail("CudaRoFormerModel: the store must come from a model of the same config with tp = ", d.tp,
         " and tp rank ", d.tp_rank, " (its word embedding shard is rows [", word_info.shard_start,
         ", ", word_info.shard_start + word_info.local_shape[0], ") of ", word_info.global_shape[0],
         ")");
  ResolveOffsets(layout, d.layers, E() != H(), cfg.pre_ln(), "CudaRoFormerModel");
  if (d.layers > 0) {
    const ParamInfo& q = layout.info("roformer.encoder.layer.0.attention.self.query.weight");
    const ParamInfo& f = layout.info("roformer.encoder.layer.0.intermediate.dense.weight");
    if (q.local_shape[0] != Hl() || q.shard_start != static_cast<int64_t>(d.tp_rank) * Hl() ||
        f.local_shape[0] != Il())
      Fail("CudaRoFormerModel: the store's attention/FFN shards do not match tp = ", d.tp,
           ", tp rank ", d.tp_rank);
  }
}

template <typename T>
void Model<T>::Reserve(int b, int l) {
  if (b <= cap_b && l <= cap_l) return;
  cap_b = std::max(cap_b, b);
  cap_l = std::max(cap_l, l);
  ROFORMER_CUDA_CHECK(cudaStreamSynchronize(stream));
  tp.Synchronize();  // no TP collective may still use the buffers freed here
  arena.Clear();
  const int64_t BL = static_cast<int64_t>(cap_b) * cap_l, H = d.hidden, E = d.embedding;
  const int64_t hl = Hl(), il = Il();
  const int64_t scores = static_cast<int64_t>(cap_b) * d.local_heads() * cap_l * cap_l;
  const bool pre = cfg.pre_ln();
  emb_sum = arena.Take<T>(BL * E);
  emb_out = arena.Take<T>(BL * E);
  emb_mean = arena.Take<float>(BL);
  emb_rstd = arena.Take<float>(BL);
  hidden0 = E != H ? arena.Take<T>(BL * H) : emb_out;
  acts.assign(d.layers, {});
  for (auto& a : acts) {
    a.attn_in = pre ? arena.Take<T>(BL * H) : nullptr;
    a.q = arena.Take<T>(BL * hl);
    a.k = arena.Take<T>(BL * hl);
    a.v = arena.Take<T>(BL * hl);
    // model.attention_recompute: P lives in the attention workspace, shared by every layer.
    a.probs = cfg.attention_recompute() ? nullptr : arena.Take<T>(scores);
    a.ctx = arena.Take<T>(BL * hl);
    a.res1 = arena.Take<T>(BL * H);
    a.ffn_in = arena.Take<T>(BL * H);
    a.ffn_pre = arena.Take<T>(BL * il);
    a.ffn_act = arena.Take<T>(BL * il);
    a.res2 = arena.Take<T>(BL * H);
    a.out = pre ? a.res2 : arena.Take<T>(BL * H);
    a.lna_mean = arena.Take<float>(BL);
    a.lna_rstd = arena.Take<float>(BL);
    a.lnf_mean = arena.Take<float>(BL);
    a.lnf_rstd = arena.Take<float>(BL);
  }
  if (pre) {
    final_out = arena.Take<T>(BL * H);
    final_mean = arena.Take<float>(BL);
    final_rstd = arena.Take<float>(BL);
  }
  carry = arena.Take<float>(scores);
  dcarry = arena.Take<float>(scores);
  G = arena.Take<T>(BL * H);
  D1 = arena.Take<T>(BL * H);
  D2 = arena.Take<T>(BL * H);
  dctx = arena.Take<T>(BL * hl);
  dq = arena.Take<T>(BL * hl);
  dk = arena.Take<T>(BL * hl);
  dv = arena.Take<T>(BL * hl);
  dffn = arena.Take<T>(BL * il);
  dE = arena.Take<T>(BL * E);
  dE2 = arena.Take<T>(BL * E);
  d_seq = arena.Take<T>(BL * H);
  AttentionDims ad{cap_b, cap_l, d.local_heads(), d.head_dim, hl};
  AttentionParams ap;
  ap.dropout.p = 0.5f;  // size for the dropout variant (it needs the extra probability copy)
  ap.recompute = cfg.attention_recompute();  // and for the shared probabilities
  attn_ws = arena.Take<char>(static_cast<int64_t>(AttentionWorkspaceBytes<T>(ad, ap)));
  const int widest = std::max({d.hidden, d.embedding, d.intermediate, d.vocab_padded});
  ln_ws = arena.Take<char>(static_cast<int64_t>(LayerNormBackwardWorkspaceBytes(widest)));
  col_ws = arena.Take<char>(static_cast<int64_t>(ColumnSumWorkspaceBytes(widest)));
  ids = arena.Take<int32_t>(BL);
  types = arena.Take<int32_t>(BL);
  for (int i = 0; i < 2; ++i) {
    group_ids[i] = arena.Take<int32_t>(BL);
    group_starts[i] = arena.Take<int32_t>(BL + 1);
    group_rows[i] = arena.Take<int32_t>(BL);
  }
  mask = arena.Take<int32_t>(BL);
  cls_index = arena.Take<int32_t>(cap_b);
  sop_labels = arena.Take<int32_t>(cap_b);
  ce_stats = arena.Take<CrossEntropyDeviceStats>(2);
  ce_ws = arena.Take<char>(static_cast<int64_t>(CrossEntropyWorkspaceBytes(
      std::max<int64_t>(BL, cap_b))));  // MLM rows are at most BL, SOP rows B
  sop_cls = arena.Take<T>(cap_b * H);
  sop_pre = arena.Take<T>(cap_b * H);
  sop_pool = arena.Take<T>(cap_b * H);
  sop_logits = arena.Take<T>(cap_b * 2);
  sop_dpool = arena.Take<T>(cap_b * H);
  sop_dcls = arena.Take<T>(cap_b * H);
}

template <typename T>
void Model<T>::ReserveHead(int64_t m) {
  if (m <= cap_m) return;
  cap_m = m;
  ROFORMER_CUDA_CHECK(cudaStreamSynchronize(stream));
  tp.Synchronize();
  head_arena.Clear();
  const int64_t H = d.hidden, E = d.embedding, V = Vl();
  mlm_pos = head_arena.Take<int32_t>(m);
  mlm_lab = head_arena.Take<int32_t>(m);
  h_g = head_arena.Take<T>(m * H);
  h_t1 = head_arena.Take<T>(m * E);
  h_t2 = head_arena.Take<T>(m * E);
  h_t3 = head_arena.Take<T>(m * E);
  h_mean = head_arena.Take<float>(m);
  h_rstd = head_arena.Take<float>(m);
  h_logits = head_arena.Take<T>(m * V);
  h_dt3 = head_arena.Take<T>(m * E);
  h_dt2 = head_arena.Take<T>(m * E);
  h_dg = head_arena.Take<T>(m * H);
  ce_local = head_arena.Take<double>(m * kVocabShardStatsWidth);
  ce_all = head_arena.Take<double>(m * kVocabShardStatsWidth * d.tp);
}

template <typename T>
DropoutSpec Model<T>::Spec(float p, uint32_t layer_id, uint32_t op, int64_t cols_global,
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

template <typename T>
AttentionParams Model<T>::AttnParams(int l) const {
  AttentionParams ap;
  ap.realformer = cfg.realformer();
  ap.has_prev = l > 0;
  ap.mean_div = cfg.realformer() && cfg.realformer_running_mean() ? 1.0f / (l + 1) : 1.0f;
  ap.log_n = cfg.attention_scale() == "log_n";
  const int64_t LL = static_cast<int64_t>(L) * L;
  // The logical view [B, heads * L * L]: this rank's heads start at column tp_rank * heads' * L*L.
  ap.dropout = Spec(cfg.attention_probs_dropout_prob(), l, kDropAttnProbs, d.heads * LL,
                    static_cast<int64_t>(d.tp_rank) * d.local_heads() * LL);
  ap.recompute = cfg.attention_recompute();
  return ap;
}

template <typename T>
void Model<T>::EncoderForward(const Batch& batch, const DropoutContext& dc) {
  if (batch.batch <= 0 || batch.seq_len <= 0 || batch.seq_len > d.max_positions)
    Fail("CudaRoFormerModel: bad batch shape ", batch.batch, " x ", batch.seq_len);
  const size_t n = static_cast<size_t>(batch.batch) * batch.seq_len;
  if (batch.input_ids.size() != n || batch.token_type_ids.size() != n ||
      batch.attention_mask.size() != n)
    Fail("CudaRoFormerModel: input_ids/token_type_ids/attention_mask need ", n, " entries");
  // The CPU model's Validate: out-of-range ids would silently read zero rows here.
  for (size_t i = 0; i < n; ++i) {
    if (batch.input_ids[i] < 0 || batch.input_ids[i] >= d.vocab)
      Fail("batch: input_ids[", i, "] = ", batch.input_ids[i], " outside the vocab");
    if (batch.token_type_ids[i] < 0 || batch.token_type_ids[i] >= d.type_vocab)
      Fail("batch: token_type_ids[", i, "] = ", batch.token_type_ids[i], " outside [0, ",
           d.type_vocab, ")");
  }
  for (size_t i = 0; i < batch.mlm_positions.size(); ++i) {
    if (batch.mlm_positions[i] < 0 || static_cast<size_t>(batch.mlm_positions[i]) >= n)
      Fail("batch: mlm_positions[", i, "] = ", batch.mlm_positions[i], " outside [0, ", n, ")");
  }
  for (size_t i = 0; i < batch.mlm_labels.size(); ++i) {
    if (batch.mlm_labels[i] < 0 || batch.mlm_labels[i] >= d.vocab)
      Fail("batch: mlm_labels[", i, "] = ", batch.mlm_labels[i], " outside the vocab");
  }
  for (size_t i = 0; i < batch.sop_labels.size(); ++i) {
    if (batch.sop_labels[i] != 0 && batch.sop_labels[i] != 1)
      Fail("batch: sop_labels[", i, "] = ", batch.sop_labels[i], " must be 0 or 1");
  }
  if (batch.mlm_positions.size() > n)
    Fail("batch: more mlm_positions (", batch.mlm_positions.size(), ") than tokens (", n, ")");
  Reserve(batch.batch, batch.seq_len);
  B = batch.batch;
  L = batch.seq_len;
  drop = dc;
  const int64_t BL = static_cast<int64_t>(B) * L;
  const int H = d.hidden, E = d.embedding;
  ROFORMER_CUDA_CHECK(
      cudaMemcpyAsync(ids, batch.input_ids.data(), 4 * BL, cudaMemcpyHostToDevice, stream));
  ROFORMER_CUDA_CHECK(
      cudaMemcpyAsync(types, batch.token_type_ids.data(), 4 * BL, cudaMemcpyHostToDevice, stream));
  ROFORMER_CUDA_CHECK(
      cudaMemcpyAsync(mask, batch.attention_mask.data(), 4 * BL, cudaMemcpyHostToDevice, stream));

  // The embedding backward's row groups, built on the host from the host ids (HF padding_idx:
  // the [PAD] row, id 0, never receives a gradient). Word ids outside this rank's vocab shard
  // are dropped: their rows live on another TP rank.
  BuildEmbeddingGroups(batch.input_ids.data(), BL, vocab_start(), Vl(), /*skip_id=*/0, &groups[0]);
  BuildEmbeddingGroups(batch.token_type_ids.data(), BL, 0, d.type_vocab, /*skip_id=*/-1,
                       &groups[1]);
  for (int i = 0; i < 2; ++i) {
    const EmbeddingGroups& g = groups[i];
    ROFORMER_CUDA_CHECK(cudaMemcpyAsync(group_ids[i], g.ids.data(), 4 * g.ids.size(),
                                        cudaMemcpyHostToDevice, stream));
    ROFORMER_CUDA_CHECK(cudaMemcpyAsync(group_starts[i], g.starts.data(), 4 * g.starts.size(),
                                        cudaMemcpyHostToDevice, stream));
    ROFORMER_CUDA_CHECK(cudaMemcpyAsync(group_rows[i], g.rows.data(), 4 * g.rows.size(),
                                        cudaMemcpyHostToDevice, stream));
  }

  // Embeddings: word (vocab-parallel: zero rows for ids of other shards, then g) + token type.
  EmbeddingForward<T>(ids, W(word), emb_sum, BL, E, vocab_start(), Vl(), false, stream);
  tp.ReduceFromRegionForward(emb_sum, BL * E);
  EmbeddingForward<T>(types, W(type), emb_sum, BL, E, 0, d.type_vocab, true, stream);
  LayerNormForward<T>(emb_sum, P(emb_ln_g), P(emb_ln_b), emb_out, emb_mean, emb_rstd, BL, E,
                      cfg.layer_norm_eps(), stream);
  DropoutForward<T>(Spec(cfg.hidden_dropout_prob(), 0, kDropEmbedding, E, 0), emb_out, emb_out, BL,
                    E, stream);
  if (E != H) LinearForward<T>(blas, emb_out, W(proj_w), P(proj_b), hidden0, BL, E, H);

  for (int l = 0; l < d.layers; ++l) LayerForward(l);

  if (cfg.pre_ln()) {
    LayerNormForward<T>(Hidden(d.layers), P(final_g), P(final_b), final_out, final_mean, final_rstd,
                        BL, H, cfg.layer_norm_eps(), stream);
  }
}

template <typename T>
void Model<T>::LayerForward(int l) {
  const LayerRefs& w = layer[l];
  LayerActs<T>& a = acts[l];
  const int64_t BL = static_cast<int64_t>(B) * L;
  const int H = d.hidden, hl = Hl(), il = Il();
  const float eps = cfg.layer_norm_eps();
  const bool pre = cfg.pre_ln();
  T* x = Hidden(l);

  // ---- attention ----
  if (pre)
    LayerNormForward<T>(x, P(w.lna_g), P(w.lna_b), a.attn_in, a.lna_mean, a.lna_rstd, BL, H, eps,
                        stream);
  T* ain = pre ? a.attn_in : x;
  tp.CopyToRegionForward(ain, BL * H);
  LinearForward<T>(blas, ain, W(w.q_w), P(w.q_b), a.q, BL, H, hl);
  LinearForward<T>(blas, ain, W(w.k_w), P(w.k_b), a.k, BL, H, hl);
  LinearForward<T>(blas, ain, W(w.v_w), P(w.v_b), a.v, BL, H, hl);
  RopeForward<T>(a.q, rope_dev, B, L, d.local_heads(), d.head_dim, hl, stream);
  RopeForward<T>(a.k, rope_dev, B, L, d.local_heads(), d.head_dim, hl, stream);
  AttentionDims ad{B, L, d.local_heads(), d.head_dim, hl};
  AttentionForward<T>(blas, ad, AttnParams(l), a.q, a.k, a.v, mask, carry, a.probs, a.ctx, attn_ws);
  // Row-parallel output projection: partial sums reduced, then the (replicated) bias.
  LinearForward<T>(blas, a.ctx, W(w.o_w), nullptr, a.res1, BL, hl, H);
  tp.ReduceFromRegionForward(a.res1, BL * H);
  BiasDropoutResidualForward<T>(Spec(cfg.hidden_dropout_prob(), l, kDropAttnOut, H, 0), a.res1,
                                P(w.o_b), x, BL, H, stream);
  if (pre) {
    LayerNormForward<T>(a.res1, P(w.lnf_g), P(w.lnf_b), a.ffn_in, a.lnf_mean, a.lnf_rstd, BL, H,
                        eps, stream);
  } else {
    LayerNormForward<T>(a.res1, P(w.lna_g), P(w.lna_b), a.ffn_in, a.lna_mean, a.lna_rstd, BL, H,
                        eps, stream);
  }

  // ---- FFN ----
  tp.CopyToRegionForward(a.ffn_in, BL * H);
  LinearForward<T>(blas, a.ffn_in, W(w.f1_w), P(w.f1_b), a.ffn_pre, BL, H, il);
  GeluForward<T>(a.ffn_pre, a.ffn_act, BL * il, stream);
  LinearForward<T>(blas, a.ffn_act, W(w.f2_w), nullptr, a.res2, BL, il, H);
  tp.ReduceFromRegionForward(a.res2, BL * H);
  BiasDropoutResidualForward<T>(Spec(cfg.hidden_dropout_prob(), l, kDropFfnOut, H, 0), a.res2,
                                P(w.f2_b), pre ? a.res1 : a.ffn_in, BL, H, stream);
  if (!pre) {
    LayerNormForward<T>(a.res2, P(w.lnf_g), P(w.lnf_b), a.out, a.lnf_mean, a.lnf_rstd, BL, H, eps,
                        stream);
  }
}

template <typename T>
void Model<T>::LayerBackward(int l) {
  // In: G = d(layer output). Out: G = d(layer input).
  const LayerRefs& w = layer[l];
  LayerActs<T>& a = acts[l];
  const int64_t BL = static_cast<int64_t>(B) * L;
  const int H = d.hidden, hl = Hl(), il = Il();
  const bool pre = cfg.pre_ln();
  T* x = Hidden(l);
  T* ain = pre ? a.attn_in : x;
  const DropoutSpec ffn_drop = Spec(cfg.hidden_dropout_prob(), l, kDropFfnOut, H, 0);
  const DropoutSpec attn_drop = Spec(cfg.hidden_dropout_prob(), l, kDropAttnOut, H, 0);

  // ---- FFN ----
  T* dres2 = G;
  if (!pre) {
    LayerNormBackward<T>(G, a.res2, a.lnf_mean, a.lnf_rstd, P(w.lnf_g), D1, Gr(w.lnf_g),
                         Gr(w.lnf_b), BL, H, false, ln_ws, stream);
    dres2 = D1;
  }
  DropoutBackward<T>(ffn_drop, dres2, D2, BL, H, stream);
  tp.ReduceFromRegionBackward(D2, BL * H);
  LinearBackward<T>(blas, D2, a.ffn_act, W(w.f2_w), dffn, Gr(w.f2_w), Gr(w.f2_b), BL, il, H, false,
                    col_ws);
  GeluBackward<T>(dffn, a.ffn_pre, dffn, BL * il, stream);
  T* dffn_in = pre ? D1 : D2;  // post-LN: D1 still holds dres2 (the residual branch)
  // Column-parallel backward (f): dgrad first; its TP all-reduce (TP stream) overlaps the wgrad
  // GEMM (compute stream), which reads only dffn and ffn_in; dffn_in is read after the Wait.
  LinearBackward<T>(blas, dffn, a.ffn_in, W(w.f1_w), dffn_in, nullptr, nullptr, BL, H, il, false,
                    col_ws);
  TpPending ffn_reduce = tp.CopyToRegionBackwardAsync(dffn_in, BL * H);
  LinearBackward<T>(blas, dffn, a.ffn_in, nullptr, nullptr, Gr(w.f1_w), Gr(w.f1_b), BL, H, il,
                    false, col_ws);
  tp.Wait(ffn_reduce);
  T* dres1;
  if (pre) {
    LayerNormBackward<T>(D1, a.res1, a.lnf_mean, a.lnf_rstd, P(w.lnf_g), G, Gr(w.lnf_g),
                         Gr(w.lnf_b), BL, H, /*accumulate_dx=*/true, ln_ws, stream);
    dres1 = G;
  } else {
    AddInPlace<T>(D2, D1, BL * H, stream);  // res2 = ffn_in + ...: d ffn_in total
    LayerNormBackward<T>(D2, a.res1, a.lna_mean, a.lna_rstd, P(w.lna_g), D1, Gr(w.lna_g),
                         Gr(w.lna_b), BL, H, false, ln_ws, stream);
    dres1 = D1;
  }

  // ---- attention ----
  DropoutBackward<T>(attn_drop, dres1, D2, BL, H, stream);
  tp.ReduceFromRegionBackward(D2, BL * H);
  LinearBackward<T>(blas, D2, a.ctx, W(w.o_w), dctx, Gr(w.o_w), Gr(w.o_b), BL, hl, H, false,
                    col_ws);
  AttentionDims ad{B, L, d.local_heads(), d.head_dim, hl};
  AttentionBackward<T>(blas, ad, AttnParams(l), dctx, a.q, a.k, a.v, mask, a.probs, dcarry,
                       l + 1 < d.layers, dq, dk, dv, attn_ws, carry);
  RopeBackward<T>(dq, rope_dev, B, L, d.local_heads(), d.head_dim, hl, stream);
  RopeBackward<T>(dk, rope_dev, B, L, d.local_heads(), d.head_dim, hl, stream);
  T* dain = pre ? D1 : G;  // pre: G holds dres1 (residual); post: D1 holds dres1
  // Column-parallel Q/K/V backward (f): the three dgrads into dain, its TP all-reduce overlapping
  // the three wgrad GEMMs (which read dq/dk/dv and ain, never dain).
  LinearBackward<T>(blas, dq, ain, W(w.q_w), dain, nullptr, nullptr, BL, H, hl, false, col_ws);
  LinearBackward<T>(blas, dk, ain, W(w.k_w), dain, nullptr, nullptr, BL, H, hl, true, col_ws);
  LinearBackward<T>(blas, dv, ain, W(w.v_w), dain, nullptr, nullptr, BL, H, hl, true, col_ws);
  TpPending qkv_reduce = tp.CopyToRegionBackwardAsync(dain, BL * H);
  LinearBackward<T>(blas, dq, ain, nullptr, nullptr, Gr(w.q_w), Gr(w.q_b), BL, H, hl, false,
                    col_ws);
  LinearBackward<T>(blas, dk, ain, nullptr, nullptr, Gr(w.k_w), Gr(w.k_b), BL, H, hl, false,
                    col_ws);
  LinearBackward<T>(blas, dv, ain, nullptr, nullptr, Gr(w.v_w), Gr(w.v_b), BL, H, hl, false,
                    col_ws);
  tp.Wait(qkv_reduce);
  if (pre) {
    LayerNormBackward<T>(D1, x, a.lna_mean, a.lna_rstd, P(w.lna_g), G, Gr(w.lna_g), Gr(w.lna_b), BL,
                         H, /*accumulate_dx=*/true, ln_ws, stream);
  } else {
    AddInPlace<T>(G, D1, BL * H, stream);
  }
}

template <typename T>
void Model<T>::EncoderBackward() {
  // In: d_seq = d(sequence output), already scaled.
  const int64_t BL = static_cast<int64_t>(B) * L;
  const int H = d.hidden, E = d.embedding;
  if (cfg.pre_ln()) {
    LayerNormBackward<T>(d_seq, Hidden(d.layers), final_mean, final_rstd, P(final_g), G,
                         Gr(final_g), Gr(final_b), BL, H, false, ln_ws, stream);
  } else {
    ROFORMER_CUDA_CHECK(
        cudaMemcpyAsync(G, d_seq, sizeof(T) * BL * H, cudaMemcpyDeviceToDevice, stream));
  }
  GradReady(ready_final_ln);
  for (int l = d.layers - 1; l >= 0; --l) {
    LayerBackward(l);
    GradReady(ready_layer[l]);
  }
  T* demb = G;
  if (E != H) {
    LinearBackward<T>(blas, G, emb_out, W(proj_w), dE, Gr(proj_w), Gr(proj_b), BL, E, H, false,
                      col_ws);
    demb = dE;
  }
  DropoutBackward<T>(Spec(cfg.hidden_dropout_prob(), 0, kDropEmbedding, E, 0), demb, demb, BL, E,
                     stream);
  LayerNormBackward<T>(demb, emb_sum, emb_mean, emb_rstd, P(emb_ln_g), dE2, Gr(emb_ln_g),
                       Gr(emb_ln_b), BL, E, false, ln_ws, stream);
  tp.ReduceFromRegionBackward(dE2, BL * E);
  // Grouped by id on the host (BuildEmbeddingGroups): the CPU's per-element summation order, and
  // deterministic, with one block per distinct id. The word groups hold this rank's vocab shard
  // only (HF padding_idx: never the [PAD] row).
  EmbeddingBackwardGrouped<T>(group_ids[0], group_starts[0], group_rows[0],
                              static_cast<int>(groups[0].ids.size()), dE2, Gr(word), E, stream);
  EmbeddingBackwardGrouped<T>(group_ids[1], group_starts[1], group_rows[1],
                              static_cast<int>(groups[1].ids.size()), dE2, Gr(type), E, stream);
  GradReady(ready_embeddings);
}

template <typename T>
void Model<T>::MlmHead(const Batch& batch, bool backward, float grad_scale) {
  const int64_t m = static_cast<int64_t>(batch.mlm_positions.size());
  if (m == 0) {
    ROFORMER_CUDA_CHECK(cudaMemsetAsync(ce_stats, 0, sizeof(CrossEntropyDeviceStats), stream));
    return;
  }
  if (batch.mlm_labels.size() != batch.mlm_positions.size())
    Fail("CudaRoFormerModel: mlm_positions and mlm_labels differ in size");
  ReserveHead(m);
  const int H = d.hidden, E = d.embedding, V = Vl();
  ROFORMER_CUDA_CHECK(
      cudaMemcpyAsync(mlm_pos, batch.mlm_positions.data(), 4 * m, cudaMemcpyHostToDevice, stream));
  ROFORMER_CUDA_CHECK(
      cudaMemcpyAsync(mlm_lab, batch.mlm_labels.data(), 4 * m, cudaMemcpyHostToDevice, stream));
  GatherRows<T>(SequenceOutput(), mlm_pos, h_g, m, H, stream);
  LinearForward<T>(blas, h_g, W(head_w), P(head_b), h_t1, m, H, E);
  GeluForward<T>(h_t1, h_t2, m * E, stream);
  LayerNormForward<T>(h_t2, P(head_ln_g), P(head_ln_b), h_t3, h_mean, h_rstd, m, E,
                      cfg.layer_norm_eps(), stream);
  // Decoder tied to the (vocab-parallel) word embeddings: a column-parallel linear.
  tp.CopyToRegionForward(h_t3, m * E);
  LinearForward<T>(blas, h_t3, W(word), P(dec_bias), h_logits, m, E, V);
  const float row_scale = grad_scale / static_cast<float>(m);
  if (!tp.active()) {
    SoftmaxCrossEntropy<T>(h_logits, mlm_lab, m, V, valid_local_vocab(),
                           backward ? h_logits : nullptr, row_scale, ce_stats, ce_ws, stream);
  } else {
    // Vocab-parallel: the [m, V/tp] logits stay local; one all-gather of 4 doubles per row and
    // shard replaces the gather of the logits, and the second pass merges the shards in rank
    // order, so every rank gets the same loss (a shard of padding only still joins).
    VocabShardStats<T>(h_logits, mlm_lab, m, V, valid_local_vocab(), vocab_start(), ce_local,
                       stream);
    tp.AllGather(ce_local, ce_all, m * kVocabShardStatsWidth);
    VocabParallelCrossEntropy<T>(h_logits, mlm_lab, m, V, valid_local_vocab(), vocab_start(),
                                 d.vocab, ce_all, d.tp, backward ? h_logits : nullptr, row_scale,
                                 ce_stats, ce_ws, stream);
  }
  if (!backward) return;
  // Tied decoder: its weight IS the local word-embedding shard, so its wgrad lands in the same
  // gradient rows as the lookup's. The input grad is partial over vocab shards (f backward): its
  // all-reduce overlaps the wgrad GEMM, which reads only h_logits and h_t3.
  LinearBackward<T>(blas, h_logits, h_t3, W(word), h_dt3, nullptr, nullptr, m, E, V, false, col_ws);
  TpPending dec_reduce = tp.CopyToRegionBackwardAsync(h_dt3, m * E);
  LinearBackward<T>(blas, h_logits, h_t3, nullptr, nullptr, Gr(word), Gr(dec_bias), m, E, V, false,
                    col_ws);
  tp.Wait(dec_reduce);
  LayerNormBackward<T>(h_dt3, h_t2, h_mean, h_rstd, P(head_ln_g), h_dt2, Gr(head_ln_g),
                       Gr(head_ln_b), m, E, false, ln_ws, stream);
  GeluBackward<T>(h_dt2, h_t1, h_dt2, m * E, stream);
  LinearBackward<T>(blas, h_dt2, h_g, W(head_w), h_dg, Gr(head_w), Gr(head_b), m, H, E, false,
                    col_ws);
  // Distinct positions (the data pipeline's case) give every element one add, so the parallel
  // kernel is exact and deterministic; repeated positions take the ordered one.
  std::vector<char> seen(static_cast<size_t>(B) * L, 0);
  bool distinct = true;
  for (const int32_t p : batch.mlm_positions) distinct &= seen[p]++ == 0;
  ScatterAddRows<T>(h_dg, mlm_pos, d_seq, m, H, /*deterministic=*/!distinct, stream);
}

template <typename T>
void Model<T>::SopHead(const Batch& batch, bool backward, float grad_scale) {
  const int H = d.hidden;
  cls_host.resize(B);
  for (int b = 0; b < B; ++b) cls_host[b] = b * L;
  ROFORMER_CUDA_CHECK(
      cudaMemcpyAsync(cls_index, cls_host.data(), 4 * B, cudaMemcpyHostToDevice, stream));
  ROFORMER_CUDA_CHECK(
      cudaMemcpyAsync(sop_labels, batch.sop_labels.data(), 4 * B, cudaMemcpyHostToDevice, stream));
  GatherRows<T>(SequenceOutput(), cls_index, sop_cls, B, H, stream);
  LinearForward<T>(blas, sop_cls, W(sop_w), P(sop_b), sop_pre, B, H, H);
  TanhForward<T>(sop_pre, sop_pool, static_cast<int64_t>(B) * H, stream);
  LinearForward<T>(blas, sop_pool, W(cls_w), P(cls_b), sop_logits, B, H, 2);
  const float row_scale = grad_scale / static_cast<float>(B);
  SoftmaxCrossEntropy<T>(sop_logits, sop_labels, B, 2, 2, backward ? sop_logits : nullptr,
                         row_scale, ce_stats + 1, ce_ws, stream);
  if (!backward) return;
  LinearBackward<T>(blas, sop_logits, sop_pool, W(cls_w), sop_dpool, Gr(cls_w), Gr(cls_b), B, H, 2,
                    false, col_ws);
  TanhBackward<T>(sop_dpool, sop_pool, sop_dpool, static_cast<int64_t>(B) * H, stream);
  LinearBackward<T>(blas, sop_dpool, sop_cls, W(sop_w), sop_dcls, Gr(sop_w), Gr(sop_b), B, H, H,
                    false, col_ws);
  // [CLS] rows are distinct: the parallel kernel is exact here.
  ScatterAddRows<T>(sop_dcls, cls_index, d_seq, B, H, /*deterministic=*/false, stream);
}

template <typename T>
LossStats Model<T>::ForwardBackward(const Batch& batch, const DropoutContext& dropout,
                                    bool backward, float grad_scale, float mlm_scale,
                                    float sop_scale) {
  if (!ev_start) {
    ROFORMER_CUDA_CHECK(cudaEventCreate(&ev_start));
    ROFORMER_CUDA_CHECK(cudaEventCreate(&ev_forward));
  }
  const auto t0 = std::chrono::steady_clock::now();
  ROFORMER_CUDA_CHECK(cudaEventRecord(ev_start, stream));
  EncoderForward(batch, dropout);
  const int64_t BL = static_cast<int64_t>(B) * L;
  if (backward) ROFORMER_CUDA_CHECK(cudaMemsetAsync(d_seq, 0, sizeof(T) * BL * H(), stream));
  ROFORMER_CUDA_CHECK(cudaEventRecord(ev_forward, stream));
  const bool sop = !batch.sop_labels.empty();
  if (sop && batch.sop_labels.size() != static_cast<size_t>(B))
    Fail("CudaRoFormerModel: ", batch.sop_labels.size(), " sop_labels for ", B, " sequences");
  MlmHead(batch, backward && mlm_scale != 0.0f, grad_scale * mlm_scale);
  if (sop) SopHead(batch, backward && sop_scale != 0.0f, grad_scale * sop_scale);
  if (backward) {
    GradReady(ready_heads);
    EncoderBackward();
  }
  // The one host wait of the step: both heads' statistics, after the whole step ran.
  CrossEntropyDeviceStats st[2] = {};
  ROFORMER_CUDA_CHECK(cudaMemcpyAsync(st, ce_stats, sizeof(CrossEntropyDeviceStats) * (sop ? 2 : 1),
                                      cudaMemcpyDeviceToHost, stream));
  ROFORMER_CUDA_CHECK(cudaStreamSynchronize(stream));
  LossStats ls;
  ls.mlm_count = st[0].count;
  ls.mlm_correct = st[0].correct;
  ls.mlm_loss = st[0].count > 0 ? st[0].loss_sum / st[0].count : 0.0;
  if (sop) {
    ls.sop_count = st[1].count;
    ls.sop_correct = st[1].correct;
    ls.sop_loss = st[1].count > 0 ? st[1].loss_sum / st[1].count : 0.0;
  }
  ls.loss = ls.mlm_loss + ls.sop_loss;
  // Device time of the forward (events); the rest of the wall time counts as backward + heads.
  float fwd_ms = 0;
  ROFORMER_CUDA_CHECK(cudaEventElapsedTime(&fwd_ms, ev_start, ev_forward));
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ls.forward_seconds = std::min(total, fwd_ms / 1e3);
  ls.backward_seconds = total - ls.forward_seconds;
  return ls;
}

}  // namespace

CudaRoFormerModel::CudaRoFormerModel(const config::ModelConfig& cfg, const ParamStore& layout,
                                     cudaStream_t stream, NcclCommunicator* tp) {
  if (cfg.precision() == "bf16") {
    impl_ = std::make_unique<Model<bf16>>(cfg, layout, stream, tp);
  } else if (cfg.precision() == "fp32" || cfg.precision().empty()) {
    impl_ = std::make_unique<Model<float>>(cfg, layout, stream, tp);
  } else {
    Fail("model.precision must be \"fp32\" or \"bf16\" (got \"", cfg.precision(), "\")");
  }
}

CudaRoFormerModel::~CudaRoFormerModel() = default;

void CudaRoFormerModel::UploadParams(const ParamStore& store) { impl_->UploadParams(store); }

void CudaRoFormerModel::DownloadGrads(ParamStore* store) const {
  if (store->size() != impl_->total) Fail("CudaRoFormerModel: store size mismatch");
  ROFORMER_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
  ROFORMER_CUDA_CHECK(cudaMemcpy(store->grads().data(), impl_->grads, sizeof(float) * impl_->total,
                                 cudaMemcpyDeviceToHost));
}

void CudaRoFormerModel::DownloadParams(ParamStore* store) const {
  Impl& m = *impl_;
  if (store->size() != m.total) Fail("CudaRoFormerModel: store size mismatch");
  ROFORMER_CUDA_CHECK(cudaStreamSynchronize(m.stream));
  ROFORMER_CUDA_CHECK(cudaMemcpy(store->params().data(), m.params, sizeof(float) * m.total,
                                 cudaMemcpyDeviceToHost));
  if (m.adam_m && static_cast<int64_t>(store->adam_m().size()) == m.total &&
      static_cast<int64_t>(store->adam_v().size()) == m.total) {
    ROFORMER_CUDA_CHECK(cudaMemcpy(store->adam_m().data(), m.adam_m, sizeof(float) * m.total,
                                   cudaMemcpyDeviceToHost));
    ROFORMER_CUDA_CHECK(cudaMemcpy(store->adam_v().data(), m.adam_v, sizeof(float) * m.total,
                                   cudaMemcpyDeviceToHost));
  }
}

GradCheck CudaRoFormerModel::CheckGradients() { return impl_->CheckGradients(); }

void CudaRoFormerModel::ApplyAdamW(const AdamWOptions& opt, double lr, int64_t step,
                                   double grad_norm) {
  impl_->ApplyAdamW(opt, lr, step, grad_norm);
}

GradCheck CudaRoFormerModel::AdamWStep(const AdamWOptions& opt, double lr, int64_t step) {
  const GradCheck gc = impl_->CheckGradients();
  if (!gc.finite) return gc;
  impl_->ApplyAdamW(opt, lr, step, gc.norm);
  ROFORMER_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
  return gc;
}

void CudaRoFormerModel::EnsureOptimizerState() { impl_->EnsureOptimizerState(); }

void CudaRoFormerModel::ZeroGrads() {
  ROFORMER_CUDA_CHECK(
      cudaMemsetAsync(impl_->grads, 0, sizeof(float) * impl_->total, impl_->stream));
  std::fill(impl_->tp_reduced.begin(), impl_->tp_reduced.end(), 0);
}

LossStats CudaRoFormerModel::ForwardBackward(const Batch& batch, const DropoutContext& dropout,
                                             bool backward, float grad_scale, float mlm_scale,
                                             float sop_scale) {
  return impl_->ForwardBackward(batch, dropout, backward, grad_scale, mlm_scale, sop_scale);
}

void CudaRoFormerModel::SetGradReadyHook(
    std::function<void(const std::vector<size_t>& infos_indices)> hook) {
  impl_->grad_ready = std::move(hook);
}

void CudaRoFormerModel::FinishGradientsTp() {
  Impl& m = *impl_;
  m.ReducePartial(m.tp_partial);
  std::fill(m.tp_reduced.begin(), m.tp_reduced.end(), 0);
}

const ModelDims& CudaRoFormerModel::dims() const { return impl_->d; }
const std::vector<ParamInfo>& CudaRoFormerModel::infos() const { return impl_->infos; }
cudaStream_t CudaRoFormerModel::stream() const { return impl_->stream; }
float* CudaRoFormerModel::device_params() { return impl_->params; }
float* CudaRoFormerModel::device_grads() { return impl_->grads; }
int64_t CudaRoFormerModel::size() const { return impl_->total; }

}  // namespace roformer::cuda

#endif  // ROFORMER_HAVE_CUDA_MODEL
