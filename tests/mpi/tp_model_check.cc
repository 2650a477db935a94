// Driven by tests/mpi/tp_model.sh under mpirun (world = tp, dp = 1): tensor-parallel RoFormerModel
// against the tp = 1 model that every rank also builds locally from the same seed.
//   tp_model_check forward   -> vocab-parallel CE kernel vs the plain kernel (simulated shards);
//                               for Post-LN+RealFormer, Pre-LN, log_n(+E!=H): loss, logits and
//                               every parameter gradient vs tp = 1 (dropout on); bad layouts
//   tp_model_check train     -> 20 AdamW steps TP vs tp = 1 (per-step loss, final weights),
//                               replicated tensors bit-identical across TP, tied embedding; prints
//                               a digest line per rank (losses + parameters) for the bitwise
//                               determinism comparison of two runs
// Every rank prints "tp_model_check OK <mode> rank R" on success.
#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cross_entropy.h"
#include "model/optimizer.h"
#include "model/roformer_model.h"
#include "runtime/error.h"
#include "runtime/grid.h"
#include "runtime/logging.h"
#include "runtime/tp_region.h"

using namespace roformer;

namespace {

constexpr int kVocab = 300;  // padded to 384 (tp 1), 512 (tp 2: 256 + 44 valid), 512 (tp 4: the
                             // last shard [384, 512) is padding only)

int g_bad = 0;
int g_rank = 0;
double g_worst_loss = 0, g_worst_logit = 0, g_worst_grad = 0, g_worst_weight = 0;
std::string g_worst_grad_name, g_worst_weight_name;

void Expect(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "rank %d: FAILED %s\n", g_rank, what.c_str());
    ++g_bad;
  }
}

double Rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

// max|a - b| / max|b| over n elements.
double RelInf(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den > 0 ? num / den : num;
}

config::ModelConfig TinyConfig(const std::string& variant) {
  config::ModelConfig c;
  c.set_vocab_size(kVocab);
  c.set_hidden_size(32);
  c.set_num_hidden_layers(3);
  c.set_num_attention_heads(4);
  c.set_intermediate_size(64);
  c.set_hidden_dropout_prob(0.1f);
  c.set_attention_probs_dropout_prob(0.1f);
  c.set_max_position_embeddings(32);
  c.set_type_vocab_size(2);
  c.set_layer_norm_eps(1e-12f);
  c.set_initializer_range(0.1f);
  c.set_realformer(true);
  if (variant == "pre_ln") {
    c.set_pre_ln(true);
    c.set_realformer_running_mean(true);
  } else if (variant == "log_n") {
    c.set_attention_scale("log_n");
    c.set_embedding_size(24);
  } else if (variant == "recompute") {
    // Each TP rank rebuilds its own heads' RealFormer carry in the backward.
    c.set_attention_recompute(true);
    c.set_attention_scale("log_n");
  }
  return c;
}

// B = 4, L = 16, rows right-padded to 16/11/7/13 real tokens; MLM targets in every vocab shard.
Batch TinyBatch(uint32_t seed) {
  Batch b;
  b.batch = 4;
  b.seq_len = 16;
  std::mt19937 gen(seed);
  const int lens[4] = {16, 11, 7, 13};
  for (int r = 0; r < 4; ++r) {
    for (int t = 0; t < 16; ++t) {
      const bool real = t < lens[r];
      const int id = t == 0 ? 2 : 5 + static_cast<int>(gen() % (kVocab - 5));
      b.input_ids.push_back(real ? id : 0);
      b.token_type_ids.push_back(real && t >= lens[r] / 2 ? 1 : 0);
      b.attention_mask.push_back(real ? 1 : 0);
      if (real && t > 0 && gen() % 4 == 0) {
        b.mlm_positions.push_back(r * 16 + t);
        b.mlm_labels.push_back(1 + static_cast<int>(gen() % (kVocab - 1)));
      }
    }
  }
  // Make sure the labels reach the upper shards (tp 2: [256, 300); tp 4: [256, 300) on rank 2).
  b.mlm_positions.push_back(3);
  b.mlm_labels.push_back(kVocab - 1);
  b.mlm_positions.push_back(16 + 4);
  b.mlm_labels.push_back(257);
  b.sop_labels = {0, 1, 1, 0};
  return b;
}

// Deterministic non-trivial LN/bias values as a function of the LOGICAL index (so every layout
// gets the same values); padded vocab entries stay 0.
void Perturb(ParamStore& store) {
  for (const ParamInfo& info : store.infos()) {
    const bool bias =
        info.name.size() > 5 && info.name.compare(info.name.size() - 5, 5, ".bias") == 0;
    const bool ln = info.name.find("LayerNorm.weight") != std::string::npos ||
                    info.name.find("final_layer_norm.weight") != std::string::npos;
    if (!bias && !ln) continue;
    CHECK_EQ(info.local_shape.size(), 1u) << info.name;
    float* p = store.param(info.name);
    for (int64_t i = 0; i < info.numel; ++i) {
      const int64_t g = i + (info.placement == Placement::kShardDim0 ? info.shard_start : 0);
      if (info.name == "cls.predictions.bias" && g >= kVocab) continue;
      p[i] +=
          0.1f * std::sin(0.7f * static_cast<float>(g) + static_cast<float>(info.name.size() % 7));
    }
  }
}

// Reassembles the logical tensor `name` of `values` (a flat buffer laid out like `store`) from
// every TP rank's shard, placing each at its shard_start. Collective over TP.
std::vector<float> Full(const ParamStore& store, const std::string& name, const float* values,
                        TpRegion& tp) {
  const ParamInfo& info = store.info(name);
  std::vector<float> local(values + info.offset, values + info.offset + info.numel);
  if (info.placement == Placement::kReplicated) return local;
  std::vector<float> all(local.size() * tp.size());
  tp.AllGather(std::span<const float>(local), std::span<float>(all));
  const uint64_t mine = static_cast<uint64_t>(info.shard_start);
  std::vector<uint64_t> starts(tp.size());
  tp.AllGather(std::span<const uint64_t>(&mine, 1), std::span<uint64_t>(starts));
  int64_t gnumel = 1;
  for (int64_t d : info.global_shape) gnumel *= d;
  std::vector<float> full(gnumel, std::nanf(""));
  const int64_t rows = info.local_shape[0];
  const int64_t cols = info.local_shape.size() > 1 ? info.local_shape[1] : 1;
  const int64_t gcols = info.global_shape.size() > 1 ? info.global_shape[1] : 1;
  for (int t = 0; t < tp.size(); ++t) {
    const float* src = all.data() + t * info.numel;
    const int64_t s = static_cast<int64_t>(starts[t]);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t gr = info.placement == Placement::kShardDim0 ? s + r : r;
        const int64_t gc = info.placement == Placement::kShardDim1 ? s + c : c;
        full[gr * gcols + gc] = src[r * cols + c];
      }
    }
  }
  for (float v : full) CHECK(!std::isnan(v)) << "shards of " << name << " do not tile it";
  return full;
}

// Compares every tensor of `values` (TP model, reassembled) with `ref_values` (tp = 1 model).
// Vocab-sized tensors are compared on their first kVocab rows; their padded rows must be 0.
double CompareAll(RoFormerModel& tp_model, const float* values, RoFormerModel& ref,
                  const float* ref_values, double tol, const char* what, std::string* worst_name) {
  double worst = 0;
  for (const ParamInfo& info : tp_model.store().infos()) {
    const std::vector<float> full = Full(tp_model.store(), info.name, values, tp_model.tp());
    const ParamInfo& ri = ref.store().info(info.name);
    const float* r = ref_values + ri.offset;
    int64_t n = ri.numel;
    const bool vocab_rows = info.global_shape[0] == tp_model.dims().vocab_padded;
    if (vocab_rows) {
      const int64_t per_row = n / ri.global_shape[0];
      n = kVocab * per_row;
      bool pad_zero = true;
      for (size_t i = n; i < full.size(); ++i) pad_zero &= full[i] == 0.0f;
      for (int64_t i = n; i < ri.numel; ++i) pad_zero &= r[i] == 0.0f;
      Expect(pad_zero, std::string(what) + " of padded vocab rows of " + info.name + " not 0");
    } else {
      Expect(static_cast<int64_t>(full.size()) == n, info.name + " size");
    }
    const double e = RelInf(full.data(), r, n);
    if (e > worst) {
      worst = e;
      if (worst_name) *worst_name = info.name;
    }
    if (!(e <= tol)) {
      Expect(false, std::string(what) + " of " + info.name + ": rel err " + std::to_string(e));
    }
  }
  return worst;
}

// ---- vocab-parallel cross-entropy kernel vs the plain one (local, simulated shards) ----
void KernelCheck() {
  const int rows = 37, shards = 3, cols = 128, vocab = 300;  // shard 2: [256, 384), 44 valid
  std::mt19937 gen(5);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> full(rows * shards * cols);
  for (float& v : full) v = nd(gen);
  std::vector<int32_t> labels(rows);
  for (int r = 0; r < rows; ++r) labels[r] = static_cast<int32_t>(gen() % vocab);
  labels[5] = -1;  // ignored row
  // Ties across shards: the first maximum (lower class) wins the argmax.
  full[7 * shards * cols + 10] = 50.0f;
  full[7 * shards * cols + 200] = 50.0f;
  labels[7] = 200;
  full[8 * shards * cols + 10] = 50.0f;
  full[8 * shards * cols + 200] = 50.0f;
  labels[8] = 10;
  const float scale = 0.25f;
  std::vector<float> dref(full.size());
  CrossEntropyStats ref = SoftmaxCrossEntropy(full.data(), labels.data(), rows, shards * cols,
                                              vocab, dref.data(), scale);
  std::vector<std::vector<float>> sh(shards, std::vector<float>(rows * cols));
  std::vector<double> all(static_cast<size_t>(shards) * rows * kVocabShardStatsWidth);
  for (int t = 0; t < shards; ++t) {
    for (int r = 0; r < rows; ++r) {
      std::memcpy(sh[t].data() + r * cols, full.data() + r * shards * cols + t * cols,
                  sizeof(float) * cols);
    }
    const int valid = std::clamp(vocab - t * cols, 0, cols);
    VocabShardStats(sh[t].data(), labels.data(), rows, cols, valid, t * cols,
                    all.data() + static_cast<size_t>(t) * rows * kVocabShardStatsWidth);
  }
  double worst_d = 0;
  for (int t = 0; t < shards; ++t) {
    const int valid = std::clamp(vocab - t * cols, 0, cols);
    CrossEntropyStats st =
        VocabParallelCrossEntropy(sh[t].data(), labels.data(), rows, cols, valid, t * cols, vocab,
                                  all.data(), shards, sh[t].data(), scale);
    Expect(st.count == ref.count && st.correct == ref.correct, "VP CE count/correct");
    Expect(Rel(st.loss_sum, ref.loss_sum) < 1e-6, "VP CE loss");
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) {
        worst_d = std::max<double>(
            worst_d, std::abs(sh[t][r * cols + c] - dref[r * shards * cols + t * cols + c]));
      }
    }
  }
  Expect(worst_d < 1e-7, "VP CE dlogits (max abs " + std::to_string(worst_d) + ")");
  Expect(ref.correct >= 1, "tie rows: label 10 must count as correct");
}

DropoutContext Dropout(uint64_t step) {
  DropoutContext dc;
  dc.enabled = true;
  dc.seed = 1234;
  dc.step = step;
  dc.micro = 0;
  return dc;
}

// (1) one forward/backward and Infer of a TP model vs the local tp = 1 model.
void ForwardCheck(Grid& grid, const std::string& variant) {
  const config::ModelConfig cfg = TinyConfig(variant);
  RoFormerModel ref(cfg, TpRegion(), false);
  RoFormerModel tpm(cfg, TpRegion(&grid.tp()), false);
  ref.InitWeights(99);
  tpm.InitWeights(99);
  Perturb(ref.store());
  Perturb(tpm.store());
  // Same weights before anything runs (init is layout-invariant).
  std::string init_worst;
  const double init_err = CompareAll(tpm, tpm.store().params().data(), ref,
                                     ref.store().params().data(), 0.0, "init", &init_worst);
  Expect(init_err == 0.0, variant + ": init differs (" + init_worst + ")");

  const Batch batch = TinyBatch(11);
  const float scale = 0.5f;  // a micro-batch scale: gradients accumulate scaled
  LossStats lr = ref.ForwardBackward(batch, Dropout(3), true, scale);
  LossStats lt = tpm.ForwardBackward(batch, Dropout(3), true, scale);
  tpm.FinishGradientsTp();
  const double el = std::max(Rel(lt.loss, lr.loss), Rel(lt.mlm_loss, lr.mlm_loss));
  g_worst_loss = std::max(g_worst_loss, el);
  Expect(el < 1e-5,
         variant + ": loss " + std::to_string(lt.loss) + " vs " + std::to_string(lr.loss));
  Expect(lt.mlm_count == lr.mlm_count && lt.mlm_correct == lr.mlm_correct &&
             lt.sop_correct == lr.sop_correct,
         variant + ": MLM/SOP counts");
  std::string gname;
  const double eg = CompareAll(tpm, tpm.store().grads().data(), ref, ref.store().grads().data(),
                               1e-4, "grad", &gname);
  if (eg > g_worst_grad) {
    g_worst_grad = eg;
    g_worst_grad_name = variant + ":" + gname;
  }
  const std::string diff = tpm.CheckReplicatedAcrossTp(/*grads=*/true);
  Expect(diff.empty(), variant + ": replicated gradient differs across TP: " + diff);

  // Training-mode logits (dropout on) at the masked rows: local vocab shard vs the tp=1 columns.
  ref.ForwardBackward(batch, Dropout(4), false);
  tpm.ForwardBackward(batch, Dropout(4), false);
  {
    const auto a = tpm.LastMlmLogits();
    const auto b = ref.LastMlmLogits();
    const int64_t m = static_cast<int64_t>(batch.mlm_positions.size());
    const int vl = tpm.dims().local_vocab(), vr = ref.dims().local_vocab();
    const int64_t start = static_cast<int64_t>(grid.tp_rank()) * vl;
    double num = 0, den = 0;
    for (int64_t r = 0; r < m; ++r) {
      for (int c = 0; c < vl; ++c) {
        if (start + c >= kVocab) break;
        num = std::max<double>(num, std::abs(a[r * vl + c] - b[r * vr + start + c]));
        den = std::max<double>(den, std::abs(b[r * vr + start + c]));
      }
    }
    const double e = den > 0 ? num / den : num;
    g_worst_logit = std::max(g_worst_logit, e);
    Expect(e < 1e-5, variant + ": training logits rel err " + std::to_string(e));
  }
  // Inference logits (every position, the model gathers the vocab shards) and sequence output.
  std::vector<float> logits_r, logits_t, seq_r, seq_t;
  ref.Infer(batch, &logits_r, &seq_r);
  tpm.Infer(batch, &logits_t, &seq_t);
  Expect(logits_r.size() == logits_t.size(), variant + ": logits size");
  const double e = RelInf(logits_t.data(), logits_r.data(), static_cast<int64_t>(logits_r.size()));
  g_worst_logit = std::max(g_worst_logit, e);
  Expect(e < 1e-5, variant + ": Infer logits rel err " + std::to_string(e));
  Expect(RelInf(seq_t.data(), seq_r.data(), static_cast<int64_t>(seq_r.size())) < 1e-5,
         variant + ": sequence output");
}

// (5) layouts that do not divide must throw roformer::Error naming the field (no collective runs
// before the check, so a throwing rank cannot strand the others).
void BadLayoutCheck(Grid& grid) {
  const int tp = grid.tp_size();
  auto expect_error = [&](config::ModelConfig cfg, const std::string& needle) {
    try {
      RoFormerModel m(cfg, TpRegion(&grid.tp()), false);
      Expect(false, "no Error for bad layout (" + needle + ")");
    } catch (const Error& e) {
      Expect(std::string(e.what()).find(needle) != std::string::npos,
             std::string("Error message '") + e.what() + "' lacks '" + needle + "'");
    }
  };
  config::ModelConfig c = TinyConfig("post");
  c.set_num_attention_heads(tp + 1);  // hidden 8 * (tp + 1) keeps hidden % heads == 0
  c.set_hidden_size(8 * (tp + 1));
  expect_error(c, "model.num_attention_heads = " + std::to_string(tp + 1) +
                      " is not divisible by parallel.tp = " + std::to_string(tp));
  c = TinyConfig("post");
  c.set_intermediate_size(64 + 1);
  expect_error(
      c, "model.intermediate_size = 65 is not divisible by parallel.tp = " + std::to_string(tp));
}

// (2)-(4) 20 AdamW steps TP vs tp = 1.
void TrainCheck(Grid& grid) {
  const config::ModelConfig cfg = TinyConfig("post");
  RoFormerModel ref(cfg, TpRegion(), true);
  RoFormerModel tpm(cfg, TpRegion(&grid.tp()), true);
  ref.InitWeights(7);
  tpm.InitWeights(7);
  Perturb(ref.store());
  Perturb(tpm.store());
  AdamWOptions opt;
  opt.weight_decay = 0.01;
  opt.grad_clip = 1.0;
  const double lr = 2e-3;
  TpRegion local;
  uint64_t digest = 0xcbf29ce484222325ull;
  auto mix = [&](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) {
      digest ^= b[i];
      digest *= 0x100000001b3ull;
    }
  };
  double first = 0, last = 0;
  for (int step = 1; step <= 20; ++step) {
    ref.store().ZeroGrads();
    tpm.store().ZeroGrads();
    double lref = 0, ltp = 0;
    for (uint32_t micro = 0; micro < 2; ++micro) {  // two micro-batches accumulate
      const Batch batch = TinyBatch(100 + 2 * step + micro);
      DropoutContext dc = Dropout(step);
      dc.micro = micro;
      lref += ref.ForwardBackward(batch, dc, true, 0.5f).loss / 2;
      ltp += tpm.ForwardBackward(batch, dc, true, 0.5f).loss / 2;
    }
    tpm.FinishGradientsTp();
    const double nref = std::sqrt(TpGlobalSumSquares(ref.store(), ref.store().grads(), local));
    const double ntp = std::sqrt(TpGlobalSumSquares(tpm.store(), tpm.store().grads(), tpm.tp()));
    Expect(Rel(ntp, nref) < 1e-5, "step " + std::to_string(step) + " grad norm " +
                                      std::to_string(ntp) + " vs " + std::to_string(nref));
    const double e = Rel(ltp, lref);
    g_worst_loss = std::max(g_worst_loss, e);
    Expect(e < 1e-5, "step " + std::to_string(step) + " loss " + std::to_string(ltp) + " vs " +
                         std::to_string(lref));
    if (step == 1) first = ltp;
    last = ltp;
    mix(&ltp, sizeof(ltp));
    mix(&ntp, sizeof(ntp));
    AdamWStep(&ref.store(), opt, lr, step, nref);
    AdamWStep(&tpm.store(), opt, lr, step, ntp);
  }
  Expect(last < first, "loss did not decrease over 20 steps");
  std::string wname;
  const double ew = CompareAll(tpm, tpm.store().params().data(), ref, ref.store().params().data(),
                               1e-4, "final weight", &wname);
  g_worst_weight = ew;
  g_worst_weight_name = wname;
  // (4) replicated tensors bit-identical on every TP rank (params and the last step's grads).
  std::string diff = tpm.CheckReplicatedAcrossTp(false);
  Expect(diff.empty(), "replicated parameter differs across TP ranks: " + diff);
  diff = tpm.CheckReplicatedAcrossTp(true);
  Expect(diff.empty(), "replicated gradient differs across TP ranks: " + diff);
  // Digest of this rank's losses + parameters, all-gathered so rank 0 prints the whole group.
  mix(tpm.store().params().data(), tpm.store().params().size() * sizeof(float));
  std::vector<uint64_t> digests(grid.tp_size());
  tpm.tp().AllGather(std::span<const uint64_t>(&digest, 1), std::span<uint64_t>(digests));
  if (grid.tp_rank() == 0) {
    std::printf("tp_model_check digest");
    for (uint64_t d : digests) std::printf(" %016llx", static_cast<unsigned long long>(d));
    std::printf(" loss %.9g -> %.9g\n", first, last);
  }

  // (4) tied embedding: ONE store tensor serves the lookup and the decoder.
  ParamStore& st = tpm.store();
  int vocab_tensors = 0;
  for (const ParamInfo& info : st.infos()) {
    vocab_tensors +=
        info.global_shape.size() == 2 && info.global_shape[0] == tpm.dims().vocab_padded;
  }
  Expect(vocab_tensors == 1 && !st.has("cls.predictions.decoder.weight"),
         "exactly one [vocab, E] tensor (the tied word embeddings) expected");
  const Batch batch = TinyBatch(77);
  std::vector<float> logits, seq_a, seq_b;
  const ParamInfo& word = st.info("roformer.embeddings.word_embeddings.weight");
  std::fill(st.param(word.name), st.param(word.name) + word.numel, 0.0f);
  // Decoder reads that memory: with it zeroed, every logit is exactly the decoder bias.
  tpm.Infer(batch, &logits, &seq_a);
  const std::vector<float> bias = Full(st, "cls.predictions.bias", st.params().data(), tpm.tp());
  bool dec_ok = true;
  for (int64_t r = 0; r < batch.batch * batch.seq_len; ++r) {
    for (int v = 0; v < kVocab; ++v) dec_ok &= logits[r * kVocab + v] == bias[v];
  }
  Expect(dec_ok, "decoder does not read the word-embedding tensor");
  // Lookup reads it too: with it zeroed, the ids no longer matter.
  Batch other = batch;
  for (int32_t& id : other.input_ids) id = id > 0 ? 1 + (id * 7) % (kVocab - 1) : 0;
  tpm.Infer(other, nullptr, &seq_b);
  Expect(seq_a == seq_b, "lookup does not read the word-embedding tensor");
}

}  // namespace

int main(int argc, char** argv) {
  InitLogging(argv[0]);
  if (argc < 2) {
    std::fprintf(stderr, "usage: tp_model_check forward|train\n");
    return 2;
  }
  const std::string mode = argv[1];
  int world = 1;
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    if (const char* s = std::getenv(v)) {
      world = std::atoi(s);
      break;
    }
  }
  GridOptions opt;
  opt.tp = world;
  opt.dp = 1;
  opt.watchdog_timeout_s = 60;
  auto grid = Grid::Create(opt);
  g_rank = grid->world_rank();
  try {
    if (mode == "forward") {
      if (g_rank == 0) KernelCheck();
      for (const char* v : {"post", "pre_ln", "log_n", "recompute"}) ForwardCheck(*grid, v);
      BadLayoutCheck(*grid);
      std::printf(
          "rank %d tp %d forward: worst loss rel %.3g, logits rel %.3g, grad rel %.3g (%s)\n",
          g_rank, grid->tp_size(), g_worst_loss, g_worst_logit, g_worst_grad,
          g_worst_grad_name.c_str());
    } else if (mode == "train") {
      TrainCheck(*grid);
      std::printf("rank %d tp %d train: worst loss rel %.3g, final weight rel %.3g (%s)\n", g_rank,
                  grid->tp_size(), g_worst_loss, g_worst_weight, g_worst_weight_name.c_str());
    } else {
      std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
      return 2;
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d: error: %s\n", g_rank, e.what());
    ++g_bad;
  }
  if (g_bad == 0) std::printf("tp_model_check OK %s rank %d\n", mode.c_str(), g_rank);
  std::fflush(stdout);
  return g_bad ? 1 : 0;
}
