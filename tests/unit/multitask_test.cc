// Multi-task wiring (model/multitask.h, the trainer's use of model/loss_weighting.h): the task
// sampler is a pure function of (seed, step) with the configured proportions; the trainer's
// weighted gradient is Σ w_i ∇L_i of two separate per-task backward passes; realtime's gradient is
// ∇(log L_mlm + log L_sop) (finite differences); gradnorm normalises each task's shared-encoder
// gradient to unit norm; the default config keeps the historical objective bit for bit.
#include "model/multitask.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "model/roformer_model.h"
#include "model/synthetic_batches.h"
#include "model/trainer.h"
#include "runtime/comm.h"
#include "runtime/comm_task.h"
#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/grad_reducer.h"

namespace roformer {
namespace {

// ------------------------------------------------------------------------------------ sampler

TEST(TaskSampler, MixedCountsFollowRatiosAndSumToBatch) {
  TaskSampler s("mixed", {}, {1000, 3000, 600}, 32, 7);
  std::vector<int> c;
  s.CountsAt(0, &c);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0] + c[1] + c[2], 32);
  // 32 * (1000, 3000, 600) / 4600 = (6.96, 20.87, 4.17) -> largest remainders.
  EXPECT_EQ(c, (std::vector<int>{7, 21, 4}));
  std::vector<int> c2;
  s.CountsAt(12345, &c2);
  EXPECT_EQ(c, c2);
  // Tiny ratio still gets one example per step.
  TaskSampler tiny("mixed", {1, 1000}, {10, 10}, 8, 7);
  tiny.CountsAt(3, &c);
  EXPECT_EQ(c, (std::vector<int>{1, 7}));
}

TEST(TaskSampler, RoundRobinAndCursors) {
  TaskSampler s("round_robin", {}, {50, 60, 70}, 4, 1);
  std::vector<int> c;
  std::vector<int64_t> sum(3, 0), cur;
  for (int64_t step = 0; step < 20; ++step) {
    s.CursorsAt(step, &cur);
    EXPECT_EQ(cur, sum) << "step " << step;
    s.CountsAt(step, &c);
    EXPECT_EQ(c[step % 3], 4);
    EXPECT_EQ(c[0] + c[1] + c[2], 4);
    for (int i = 0; i < 3; ++i) sum[i] += c[i];
  }
}

TEST(TaskSampler, ProportionalIsAPureFunctionOfSeedAndStep) {
  TaskSampler a("proportional", {1, 2, 5}, {10, 10, 10}, 16, 42);
  TaskSampler b("proportional", {1, 2, 5}, {10, 10, 10}, 16, 42);
  TaskSampler other("proportional", {1, 2, 5}, {10, 10, 10}, 16, 43);
  std::vector<int> ca, cb, co;
  std::vector<double> freq(3, 0);
  int differ = 0;
  const int steps = 8000;
  std::vector<int64_t> sum(3, 0);
  for (int64_t t = 0; t < steps; ++t) {
    a.CountsAt(t, &ca);
    b.CountsAt(t, &cb);
    other.CountsAt(t, &co);
    ASSERT_EQ(ca, cb);
    differ += ca != co;
    for (int i = 0; i < 3; ++i) {
      freq[i] += ca[i] > 0;
      sum[i] += ca[i];
    }
  }
  // Reverse order (a resumed run asks for a late step first) gives the same answers.
  for (int64_t t = steps - 1; t >= steps - 50; --t) {
    a.CountsAt(t, &ca);
    TaskSampler fresh("proportional", {1, 2, 5}, {10, 10, 10}, 16, 42);
    fresh.CountsAt(t, &cb);
    ASSERT_EQ(ca, cb);
  }
  EXPECT_GT(differ, steps / 3);  // another seed, another sequence
  const double expect[3] = {1.0 / 8, 2.0 / 8, 5.0 / 8};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(freq[i] / steps, expect[i], 0.02) << "task " << i;
  std::vector<int64_t> cur;
  a.CursorsAt(steps, &cur);
  EXPECT_EQ(cur, sum);
}

TEST(TaskSampler, ExamplesArePerTaskEpochPermutations) {
  TaskSampler s("mixed", {}, {5, 7}, 4, 3);
  TaskSampler again("mixed", {}, {5, 7}, 4, 3);
  for (int task = 0; task < 2; ++task) {
    const int n = task == 0 ? 5 : 7;
    for (int epoch = 0; epoch < 3; ++epoch) {
      std::vector<int> seen(n, 0);
      for (int i = 0; i < n; ++i) {
        const int64_t e = s.ExampleAt(task, epoch * n + i);
        ASSERT_GE(e, 0);
        ASSERT_LT(e, n);
        ++seen[e];
      }
      for (int v : seen) EXPECT_EQ(v, 1);
    }
    // Random access (resume) gives the same example as sequential access.
    for (int64_t p = 20; p >= 0; --p) EXPECT_EQ(again.ExampleAt(task, p), s.ExampleAt(task, p));
  }
}

TEST(TaskSampler, BadConfigNamesTheField) {
  EXPECT_THROW(TaskSampler("shuffle", {}, {3}, 4, 1), Error);
  try {
    TaskSampler("mixed", {1, -1}, {3, 3}, 4, 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("multitask.ratios"), std::string::npos) << e.what();
  }
  try {
    ParseNumberList("1,x", "multitask.weights");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("multitask.weights"), std::string::npos) << e.what();
  }
  EXPECT_EQ(ParseNumberList("1, 0.5", "w"), (std::vector<double>{1, 0.5}));
}

// ------------------------------------------------------------------------------- the trainer

config::Config TinyConfig(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> o = {"model.vocab_size=200",       "model.hidden_size=16",
                                "model.num_hidden_layers=2",  "model.num_attention_heads=2",
                                "model.intermediate_size=32", "model.max_position_embeddings=32",
                                "train.seq_len=16",           "train.micro_batch=4",
                                "train.global_batch=8",       "train.steps=6",
                                "train.warmup_steps=1",       "train.lr=1e-3",
                                "train.log_every=100",        "train.eval_every=0"};
  o.insert(o.end(), extra.begin(), extra.end());
  return ResolveConfig("", o);
}

// Gradient of one task (or a weighted pair) over the trainer's step-0 micro-batches, computed
// directly on the model: ∇(mlm_scale L_mlm + sop_scale L_sop), L = mean over the 2 micro-batches.
std::vector<float> ReferenceGrad(const config::Config& cfg, SyntheticBatchSource* data,
                                 float mlm_scale, float sop_scale, double* mlm_loss = nullptr,
                                 double* sop_loss = nullptr) {
  RoFormerModel model(cfg.model());
  model.InitWeights(cfg.train().seed());
  model.store().ZeroGrads();
  const int num_local = cfg.train().global_batch() / cfg.train().micro_batch();
  double lm = 0, ls = 0;
  for (int k = 0; k < num_local; ++k) {
    Batch b;
    data->Fill(static_cast<int64_t>(k) * cfg.train().micro_batch(), cfg.train().micro_batch(),
               false, &b);
    DropoutContext drop;
    drop.enabled = true;
    drop.seed = cfg.train().seed();
    drop.step = 0;
    drop.micro = static_cast<uint32_t>(k);
    LossStats s = model.ForwardBackward(b, drop, true, 1.0f / num_local, mlm_scale, sop_scale);
    lm += s.mlm_loss / num_local;
    ls += s.sop_loss / num_local;
  }
  if (mlm_loss) *mlm_loss = lm;
  if (sop_loss) *sop_loss = ls;
  return model.store().grads();
}

double Norm(const std::vector<float>& g) {
  double s = 0;
  for (float v : g) s += static_cast<double>(v) * v;
  return std::sqrt(s);
}

// Max |a - b| relative to max |b|.
double RelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::fabs(static_cast<double>(b[i])));
  }
  return num / std::max(den, 1e-30);
}

struct TrainerRun {
  StepResult r;
  std::vector<float> grads, params;
};

TrainerRun OneTrainerStep(const config::Config& cfg) {
  RoFormerModel model(cfg.model());
  model.InitWeights(cfg.train().seed());
  SyntheticBatchSource data(200, 16, 5);
  TrainerOptions opt;
  opt.quiet = true;
  Trainer trainer(cfg, &model, &data, opt);
  TrainerRun run;
  run.r = trainer.Step();
  run.grads = model.store().grads();  // AdamW leaves the final gradient in place
  run.params = model.store().params();
  return run;
}

TEST(MultitaskTrainer, WeightedGradientIsTheSumOfPerTaskGradients) {
  config::Config cfg = TinyConfig();
  SyntheticBatchSource data(200, 16, 5);
  const std::vector<float> g_mlm = ReferenceGrad(cfg, &data, 1.0f, 0.0f);
  const std::vector<float> g_sop = ReferenceGrad(cfg, &data, 0.0f, 1.0f);
  const std::vector<float> g_both = ReferenceGrad(cfg, &data, 0.3f, 2.5f);
  std::vector<float> want(g_mlm.size());
  for (size_t i = 0; i < want.size(); ++i) want[i] = 0.3f * g_mlm[i] + 2.5f * g_sop[i];
  EXPECT_LT(RelDiff(g_both, want), 1e-5);
  // The trainer with fixed weights 0.3, 2.5 follows the same gradient.
  TrainerRun run =
      OneTrainerStep(TinyConfig({"multitask.weighting=fixed", "multitask.weights=0.3,2.5"}));
  EXPECT_DOUBLE_EQ(run.r.w_mlm, 0.3);
  EXPECT_DOUBLE_EQ(run.r.w_sop, 2.5);
  EXPECT_LT(RelDiff(run.grads, want), 1e-5);
  EXPECT_NEAR(run.r.grad_norm, Norm(want), 1e-5 * Norm(want));
}

TEST(MultitaskTrainer, RealtimeFollowsTheGradientOfTheLogLosses) {
  config::Config cfg = TinyConfig({"multitask.weighting=realtime"});
  SyntheticBatchSource data(200, 16, 5);
  double lm = 0, ls = 0;
  const std::vector<float> g_mlm = ReferenceGrad(cfg, &data, 1.0f, 0.0f, &lm, &ls);
  const std::vector<float> g_sop = ReferenceGrad(cfg, &data, 0.0f, 1.0f);
  TrainerRun run = OneTrainerStep(cfg);
  EXPECT_NEAR(run.r.mlm_loss, lm, 1e-12 * lm);
  EXPECT_NEAR(run.r.sop_loss, ls, 1e-12 * ls);
  EXPECT_NEAR(run.r.w_mlm, 1.0 / lm, 1e-12 / lm);
  EXPECT_NEAR(run.r.w_sop, 1.0 / ls, 1e-12 / ls);
  EXPECT_NEAR(run.r.loss, std::log(lm) + std::log(ls), 1e-9);
  std::vector<float> want(g_mlm.size());
  const float wm = static_cast<float>(1.0 / lm), wsop = static_cast<float>(1.0 / ls);
  for (size_t i = 0; i < want.size(); ++i) want[i] = wm * g_mlm[i] + wsop * g_sop[i];
  EXPECT_LT(RelDiff(run.grads, want), 1e-5);

  // ∇(log L_mlm + log L_sop) by central differences along the gradient direction (dropout off so
  // the objective is smooth; double-precision sums of the fp32 losses).
  config::Config nd =
      TinyConfig({"model.hidden_dropout_prob=0", "model.attention_probs_dropout_prob=0",
                  "multitask.weighting=realtime"});
  double l0m = 0, l0s = 0;
  const std::vector<float> gm = ReferenceGrad(nd, &data, 1.0f, 0.0f, &l0m, &l0s);
  const std::vector<float> gs = ReferenceGrad(nd, &data, 0.0f, 1.0f);
  std::vector<float> g(gm.size());
  for (size_t i = 0; i < g.size(); ++i) g[i] = static_cast<float>(gm[i] / l0m + gs[i] / l0s);
  const double gn = Norm(g);
  RoFormerModel model(nd.model());
  model.InitWeights(nd.train().seed());
  const std::vector<float> p0 = model.store().params();
  auto objective = [&](double h) {
    for (size_t i = 0; i < p0.size(); ++i)
      model.store().params()[i] = static_cast<float>(p0[i] + h * g[i] / gn);
    double m = 0, s = 0;
    for (int k = 0; k < 2; ++k) {
      Batch b;
      data.Fill(k * 4, 4, false, &b);
      LossStats st = model.ForwardBackward(b, DropoutContext{}, false);
      m += st.mlm_loss / 2;
      s += st.sop_loss / 2;
    }
    return std::log(m) + std::log(s);
  };
  const double h = 2e-3;
  const double fd = (objective(h) - objective(-h)) / (2 * h);
  // Directional derivative along g/|g| is |g|.
  EXPECT_NEAR(fd, gn, 5e-3 * gn) << "finite difference " << fd << " vs |grad log L| " << gn;
}

TEST(MultitaskTrainer, GradNormGivesUnitSharedGradientPerTask) {
  config::Config cfg = TinyConfig({"multitask.weighting=gradnorm"});
  SyntheticBatchSource data(200, 16, 5);
  const std::vector<float> g_mlm = ReferenceGrad(cfg, &data, 1.0f, 0.0f);
  const std::vector<float> g_sop = ReferenceGrad(cfg, &data, 0.0f, 1.0f);
  RoFormerModel probe(cfg.model());
  const auto& infos = probe.store().infos();
  auto shared_norm = [&](const std::vector<float>& g) {
    double s = 0;
    for (const ParamInfo& info : infos) {
      if (info.name.rfind("roformer.", 0) != 0) continue;
      for (int64_t i = info.offset; i < info.offset + info.numel; ++i)
        s += static_cast<double>(g[i]) * g[i];
    }
    return std::sqrt(s);
  };
  const double nm = shared_norm(g_mlm), ns = shared_norm(g_sop);
  TrainerRun run = OneTrainerStep(cfg);
  EXPECT_NEAR(run.r.gnorm_mlm, nm, 1e-5 * nm);
  EXPECT_NEAR(run.r.gnorm_sop, ns, 1e-5 * ns);
  EXPECT_NEAR(run.r.w_mlm * run.r.gnorm_mlm, 1.0, 1e-12);
  EXPECT_NEAR(run.r.w_sop * run.r.gnorm_sop, 1.0, 1e-12);
  // Each normalised task gradient has unit norm over the shared parameters, and the step's
  // gradient is their sum (heads get their own task's normalised gradient).
  std::vector<float> um(g_mlm.size()), us(g_sop.size()), want(g_mlm.size());
  for (size_t i = 0; i < want.size(); ++i) {
    um[i] = static_cast<float>(g_mlm[i] * run.r.w_mlm);
    us[i] = static_cast<float>(g_sop[i] * run.r.w_sop);
    want[i] = um[i] + us[i];
  }
  EXPECT_NEAR(shared_norm(um), 1.0, 1e-5);
  EXPECT_NEAR(shared_norm(us), 1.0, 1e-5);
  EXPECT_LT(RelDiff(run.grads, want), 1e-5);
  // The loss-scale invariance the post claims: multiplying a task's loss by c changes nothing.
  // Here that is checked on the normalised gradient (c = 7 on the SOP gradient).
  std::vector<float> g7(g_sop.size());
  for (size_t i = 0; i < g7.size(); ++i) g7[i] = 7.0f * g_sop[i];
  const double n7 = shared_norm(g7);
  for (size_t i = 0; i < g7.size(); i += 97) EXPECT_NEAR(g7[i] / n7, us[i], 1e-6);
}

TEST(MultitaskTrainer, SharedGradNormMatchesDirectSum) {
  config::Config cfg = TinyConfig();
  RoFormerModel model(cfg.model());
  for (size_t i = 0; i < model.store().grads().size(); ++i)
    model.store().grads()[i] = static_cast<float>(static_cast<int>(i % 13) - 6) * 0.01f;
  auto dp = MakeLocalCommunicator("dp", 0);
  GradReducer reducer(&model.store(), dp.get());
  std::vector<char> shared(model.store().infos().size(), 0);
  double want = 0;
  for (size_t t = 0; t < shared.size(); ++t) {
    const ParamInfo& info = model.store().infos()[t];
    shared[t] = info.name.rfind("roformer.encoder.layer.1.", 0) == 0;
    if (!shared[t]) continue;
    for (int64_t i = info.offset; i < info.offset + info.numel; ++i)
      want += static_cast<double>(model.store().grads()[i]) * model.store().grads()[i];
  }
  EXPECT_NEAR(SharedGradNorm(model.store(), shared, reducer, false, dp.get(), nullptr),
              std::sqrt(want), 1e-12);
}

TEST(MultitaskTrainer, DefaultConfigIsTheUnweightedSumBitForBit) {
  // Weights of exactly 1 through the weighted path (uncertainty with a frozen s = 0) give the
  // default path's losses, gradients and parameters bit for bit.
  TrainerRun a = OneTrainerStep(TinyConfig());
  TrainerRun b =
      OneTrainerStep(TinyConfig({"multitask.weighting=uncertainty", "multitask.uncertainty_lr=0"}));
  EXPECT_EQ(a.r.w_mlm, 1.0);
  EXPECT_EQ(b.r.w_mlm, 1.0);
  EXPECT_EQ(a.r.mlm_loss, b.r.mlm_loss);
  EXPECT_EQ(a.r.sop_loss, b.r.sop_loss);
  EXPECT_EQ(a.r.grad_norm, b.r.grad_norm);
  EXPECT_EQ(a.grads, b.grads);
  EXPECT_EQ(a.params, b.params);
  EXPECT_EQ(a.r.loss, a.r.mlm_loss + a.r.sop_loss);
}

TEST(MultitaskTrainer, EverySchemeTrainsAndBadConfigFails) {
  for (const char* scheme : {"init", "prior", "genmean", "uncertainty"}) {
    config::Config cfg = TinyConfig({std::string("multitask.weighting=") + scheme});
    RoFormerModel model(cfg.model());
    model.InitWeights(1);
    SyntheticBatchSource data(200, 16, 5);
    TrainerOptions opt;
    opt.quiet = true;
    Trainer trainer(cfg, &model, &data, opt);
    for (int s = 0; s < 3; ++s) {
      StepResult r = trainer.Step();
      EXPECT_FALSE(r.skipped) << scheme;
      EXPECT_TRUE(std::isfinite(r.loss)) << scheme;
      EXPECT_GT(r.w_mlm, 0) << scheme;
      EXPECT_GT(r.w_sop, 0) << scheme;
    }
  }
  auto build = [](const std::vector<std::string>& o) {
    config::Config cfg = TinyConfig(o);
    RoFormerModel model(cfg.model());
    SyntheticBatchSource data(200, 16, 5);
    TrainerOptions opt;
    opt.quiet = true;
    Trainer trainer(cfg, &model, &data, opt);
  };
  EXPECT_THROW(build({"multitask.weighting=best"}), Error);
  try {
    build({"multitask.weighting=fixed", "multitask.weights=1,2,3"});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("multitask.weights"), std::string::npos) << e.what();
  }
}

TEST(MultitaskTrainer, ResumeContinuesTheWeightingStateExactly) {
  // uncertainty's learned log-variances live in the checkpoint's metadata: 2 steps, save, resume
  // in a new trainer, 2 more steps == 4 uninterrupted steps, bit for bit.
  const std::string dir = ::testing::TempDir() + "/multitask_resume_ckpt";
  std::filesystem::remove_all(dir);
  config::Config cfg =
      TinyConfig({"multitask.weighting=uncertainty", "multitask.uncertainty_lr=0.1"});
  auto run = [&](int steps, bool save, bool resume, std::vector<StepResult>* out) {
    RoFormerModel model(cfg.model());
    model.InitWeights(cfg.train().seed());
    SyntheticBatchSource data(200, 16, 5);
    TrainerOptions opt;
    opt.quiet = true;
    opt.checkpoint_dir = save || resume ? dir : "";
    Trainer trainer(cfg, &model, &data, opt);
    if (resume) {
      EXPECT_TRUE(trainer.ResumeFromLatest());
    }
    for (int s = 0; s < steps; ++s) out->push_back(trainer.Step());
    if (save) trainer.SaveCheckpointNow();
    return model.store().params();
  };
  std::vector<StepResult> full, first, second;
  const std::vector<float> want = run(4, false, false, &full);
  run(2, true, false, &first);
  const std::vector<float> got = run(2, false, true, &second);
  ASSERT_EQ(second.size(), 2u);
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(second[k].loss, full[2 + k].loss) << k;
    EXPECT_EQ(second[k].w_mlm, full[2 + k].w_mlm) << k;
    EXPECT_EQ(second[k].w_sop, full[2 + k].w_sop) << k;
  }
  EXPECT_NE(full[3].w_mlm, full[0].w_mlm);  // the state did evolve
  EXPECT_EQ(got, want);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace roformer
