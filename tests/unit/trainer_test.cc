// The training loop's numerics against independent references and its failure handling:
// AdamW + clipping + warmup/decay against a PyTorch trajectory (tests/reference/
// make_optimizer_fixture.py), the non-finite guard, and gradient accumulation.
#include "model/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "model/lr_schedule.h"
#include "model/optimizer.h"
#include "model/roformer_model.h"
#include "model/synthetic_batches.h"
#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/json.h"

namespace roformer {
namespace {

TEST(AdamW, MatchesTorchTrajectory) {
  Json fx = Json::ParseFile(std::string(ROFORMER_SOURCE_DIR) +
                            "/tests/reference/fixtures/adamw_trajectory.json");
  const Json& c = fx.at("config");
  ParamStore store;
  store.Declare("w", {6, 5}, Placement::kReplicated, /*weight_decay=*/true);
  store.Declare("ln.weight", {5}, Placement::kReplicated, /*weight_decay=*/false);
  store.Allocate();
  for (const char* name : {"w", "ln.weight"}) {
    const auto& init = fx.at("init").at(name).as_array();
    for (size_t i = 0; i < init.size(); ++i)
      store.param(name)[i] = static_cast<float>(init[i].as_double());
  }
  AdamWOptions o;
  o.beta1 = c.at("beta1").as_double();
  o.beta2 = c.at("beta2").as_double();
  o.eps = c.at("eps").as_double();
  o.weight_decay = c.at("weight_decay").as_double();
  o.grad_clip = c.at("clip").as_double();
  LrSchedule sched;
  sched.peak = c.at("lr").as_double();
  sched.warmup_steps = c.at("warmup").as_int();
  sched.total_steps = c.at("total").as_int();
  const auto& steps = fx.at("steps").as_array();
  for (size_t s = 0; s < steps.size(); ++s) {
    for (const char* name : {"w", "ln.weight"}) {
      const auto& g = steps[s].at("grads").at(name).as_array();
      for (size_t i = 0; i < g.size(); ++i)
        store.grad(name)[i] = static_cast<float>(g[i].as_double());
    }
    GradCheck gc = CheckGradients(store);
    EXPECT_NEAR(gc.norm, steps[s].at("grad_norm").as_double(), 1e-5 * gc.norm) << "step " << s;
    const double lr = sched.At(static_cast<int64_t>(s));
    EXPECT_NEAR(lr, steps[s].at("lr").as_double(), 1e-12);
    AdamWStep(&store, o, lr, static_cast<int64_t>(s) + 1, gc.norm);
    for (const char* name : {"w", "ln.weight"}) {
      const auto& want = steps[s].at(name).as_array();
      for (size_t i = 0; i < want.size(); ++i) {
        const double w = want[i].as_double();
        EXPECT_NEAR(store.param(name)[i], w, 1e-6 * std::max(1.0, std::fabs(w)))
            << name << "[" << i << "] after step " << s;
      }
    }
  }
}

config::Config TinyConfig() {
  return ResolveConfig(
      "", {"model.vocab_size=200", "model.hidden_size=16", "model.num_hidden_layers=2",
           "model.num_attention_heads=2", "model.intermediate_size=32",
           "model.max_position_embeddings=32", "train.seq_len=16", "train.micro_batch=4",
           "train.global_batch=8", "train.steps=6", "train.warmup_steps=1", "train.lr=1e-3",
           "train.log_every=1", "train.eval_every=0", "train.max_consecutive_skips=3"});
}

TEST(Trainer, SkipsNonFiniteStepsThenStops) {
  config::Config cfg = TinyConfig();
  RoFormerModel model(cfg.model());
  model.InitWeights(1);
  SyntheticBatchSource data(200, 16, 7);
  TrainerOptions opt;
  opt.quiet = true;
  Trainer trainer(cfg, &model, &data, opt);
  StepResult ok = trainer.Step();
  EXPECT_FALSE(ok.skipped);
  // Poison one LayerNorm weight: the loss and every gradient become NaN.
  ParamStore& store = model.store();
  store.param("roformer.encoder.layer.1.output.LayerNorm.weight")[0] =
      std::numeric_limits<float>::quiet_NaN();
  std::vector<float> before = store.params();
  StepResult bad = trainer.Step();
  EXPECT_TRUE(bad.skipped);
  // A skipped step leaves every other parameter untouched.
  for (size_t i = 0; i < before.size(); ++i) {
    if (!std::isnan(before[i])) {
      ASSERT_EQ(store.params()[i], before[i]) << i;
    }
  }
  EXPECT_TRUE(trainer.Step().skipped);
  try {
    trainer.Step();
    FAIL() << "expected the run to stop after 3 consecutive skips";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("3 consecutive steps"), std::string::npos) << e.what();
  }
}

TEST(Trainer, GradientAccumulationMatchesOneBigMicroBatchDirection) {
  // With dropout off and every sequence having the same number of masked tokens, two micro-batches
  // of 4 give the same averaged gradient as one of 8 (the loss is a mean over masked tokens).
  config::Config cfg = TinyConfig();
  cfg.mutable_model()->set_hidden_dropout_prob(0);
  cfg.mutable_model()->set_attention_probs_dropout_prob(0);
  SyntheticBatchSource data(200, 16, 9);
  Batch all;
  data.Fill(0, 8, false, &all);
  // Exactly two prediction targets per row (positions 1 and 2, labels = the original ids there).
  Batch eq = all;
  eq.mlm_positions.clear();
  eq.mlm_labels.clear();
  for (int r = 0; r < 8; ++r) {
    for (int t : {1, 2}) {
      eq.mlm_positions.push_back(r * 16 + t);
      eq.mlm_labels.push_back(5 + (r * 7 + t) % 150);
    }
  }
  auto split = [&](int first) {
    Batch b;
    b.batch = 4;
    b.seq_len = 16;
    b.input_ids.assign(eq.input_ids.begin() + first * 16, eq.input_ids.begin() + (first + 4) * 16);
    b.token_type_ids.assign(eq.token_type_ids.begin() + first * 16,
                            eq.token_type_ids.begin() + (first + 4) * 16);
    b.attention_mask.assign(eq.attention_mask.begin() + first * 16,
                            eq.attention_mask.begin() + (first + 4) * 16);
    b.sop_labels.assign(eq.sop_labels.begin() + first, eq.sop_labels.begin() + first + 4);
    for (size_t i = 0; i < eq.mlm_positions.size(); ++i) {
      int row = eq.mlm_positions[i] / 16;
      if (row >= first && row < first + 4) {
        b.mlm_positions.push_back(eq.mlm_positions[i] - first * 16);
        b.mlm_labels.push_back(eq.mlm_labels[i]);
      }
    }
    return b;
  };
  RoFormerModel a(cfg.model()), b(cfg.model());
  a.InitWeights(3);
  b.InitWeights(3);
  a.store().ZeroGrads();
  b.store().ZeroGrads();
  a.ForwardBackward(eq, DropoutContext{}, true, 1.0f);
  b.ForwardBackward(split(0), DropoutContext{}, true, 0.5f);
  b.ForwardBackward(split(4), DropoutContext{}, true, 0.5f);
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < a.store().grads().size(); ++i) {
    max_diff = std::max(
        max_diff, std::fabs(static_cast<double>(a.store().grads()[i]) - b.store().grads()[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(a.store().grads()[i])));
  }
  EXPECT_LT(max_diff / max_ref, 1e-5);
}

}  // namespace
}  // namespace roformer
