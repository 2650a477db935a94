// Staged plans (model/growth/stage_schedule.h): resolution (cumulative stage configs, tokens ->
// steps, global step ranges, which boundaries grow), the up-front checks that make a bad plan fail
// before anything runs (each naming the stage and field), locating a checkpoint in a plan, and the
// Trainer's stage hooks (LR re-warmup from lr_schedule_start, the stage index in checkpoints).
#include "model/growth/stage_schedule.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "model/lr_schedule.h"
#include "model/synthetic_batches.h"
#include "model/trainer.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "runtime/error.h"

namespace roformer {
namespace {

constexpr char kBase[] = R"(
base {
  model { hidden_size: 32 num_hidden_layers: 2 num_attention_heads: 2 intermediate_size: 64
          max_position_embeddings: 128 realformer: true }
  train { micro_batch: 4 global_batch: 8 seq_len: 32 lr: 1e-3 warmup_steps: 2 seed: 5 }
}
)";

schedule::Plan Parse(const std::string& stages) {
  schedule::Plan p;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(std::string(kBase) + stages, &p))
      << stages;
  return p;
}

StagePlan Resolve(const std::string& stages) {
  return ResolveStagePlan(Parse(stages), "p.textproto", ".", /*vocab_size=*/100);
}

// The Error message of resolving `stages` ("" when it resolves).
std::string ErrorOf(const std::string& stages) {
  try {
    Resolve(stages);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR(stages, ...)                                                         \
  do {                                                                                    \
    const std::string msg = ErrorOf(stages);                                              \
    ASSERT_FALSE(msg.empty()) << "accepted: " << stages;                                  \
    for (const char* want : {__VA_ARGS__}) {                                              \
      EXPECT_NE(msg.find(want), std::string::npos) << "'" << want << "' not in: " << msg; \
    }                                                                                     \
  } while (0)

constexpr char kGrow[] = R"(
stages { name: "small" steps: 10 config { train { lr_decay: "constant" } } }
stages { name: "big" steps: 5
         config { model { hidden_size: 64 num_attention_heads: 4 intermediate_size: 128
                          num_hidden_layers: 3 }
                  train { lr: 5e-4 } }
         growth { noise_scale: 0.2 insert_layers: 1 } }
stages { name: "long" tokens: 1000 config { train { seq_len: 64 global_batch: 4 } } }
)";

TEST(StagePlan, ResolvesCumulativeConfigsAndGlobalStepRanges) {
  StagePlan plan = Resolve(kGrow);
  ASSERT_EQ(plan.stages.size(), 3u);
  const auto& s0 = plan.stages[0];
  const auto& s1 = plan.stages[1];
  const auto& s2 = plan.stages[2];
  EXPECT_EQ(s0.first_step, 0);
  EXPECT_EQ(s0.end_step, 10);
  EXPECT_EQ(s1.first_step, 10);
  EXPECT_EQ(s1.end_step, 15);
  // 1000 tokens at 4 x 64 per step: 3.9 -> 4 whole steps.
  EXPECT_EQ(s2.first_step, 15);
  EXPECT_EQ(s2.end_step, 19);
  EXPECT_EQ(plan.total_steps(), 19);
  // train.steps is the stage's end on the global counter.
  EXPECT_EQ(s1.cfg.train().steps(), 15);
  // Each stage inherits what earlier stages set: stage 2 keeps stage 1's model, lr and stage 0's
  // constant decay; only the sequence length and batch change.
  EXPECT_EQ(s2.cfg.model().hidden_size(), 64);
  EXPECT_FLOAT_EQ(s2.cfg.train().lr(), 5e-4f);
  EXPECT_EQ(s2.cfg.train().lr_decay(), "constant");
  EXPECT_EQ(s2.cfg.train().seq_len(), 64);
  EXPECT_EQ(s0.cfg.model().vocab_size(), 100);
  EXPECT_FALSE(s0.grows);
  EXPECT_TRUE(s1.grows);
  EXPECT_FALSE(s2.grows);
  EXPECT_EQ(s1.name, "big");
  EXPECT_NE(s1.where.find("p.textproto: stage 1 (\"big\")"), std::string::npos) << s1.where;

  GrowthOptions g = StageGrowthOptions(s1, /*train_seed=*/5, /*step=*/10);
  EXPECT_EQ(g.seed, 5u * 1000003u + 10u);  // seed 0 in the plan: derived, like `roformer grow`
  EXPECT_DOUBLE_EQ(g.noise_scale, 0.2);
  EXPECT_EQ(g.insert_positions, std::vector<int>({1}));
}

TEST(StagePlan, CurriculumWithoutGrowth) {
  // The RoFormer recipe shape: lengths and batches change, the model does not.
  StagePlan plan = Resolve(R"(
    stages { steps: 4 config { train { seq_len: 128 global_batch: 8 } } }
    stages { steps: 2 config { train { seq_len: 32 global_batch: 32 micro_batch: 8 } } })");
  EXPECT_FALSE(plan.stages[1].grows);
  EXPECT_EQ(plan.stages[1].cfg.train().global_batch(), 32);
}

TEST(StagePlan, BadPlansNameTheStageAndField) {
  EXPECT_ERROR("", "p.textproto", "no stages");
  EXPECT_ERROR("stages { steps: 2 tokens: 10 }", "stage 0", "exactly one of `steps` or `tokens`");
  EXPECT_ERROR("stages { }", "stage 0", "exactly one");
  EXPECT_ERROR("stages { steps: 0 }", "stage 0", "must be > 0");
  EXPECT_ERROR("stages { steps: 2 config { train { steps: 9 } } }", "train.steps is not allowed");
  EXPECT_ERROR(
      "stages { steps: 2 set: \"train.steps=9\" } stages { steps: 1 set: \"train.steps=3\" }",
      "stage 1", "train.steps");
  EXPECT_ERROR("stages { steps: 2 set: \"model.no_such=1\" }", "stage 0", "no_such");
  EXPECT_ERROR("stages { steps: 2 config { train { lr: -1 } } }", "stage 0", "train.lr");
  // TP must divide the heads (checked like the model does when it is built).
  EXPECT_ERROR("stages { steps: 2 config { parallel { tp: 4 } } }", "stage 0", "parallel.tp = 4",
               "num_attention_heads");
  EXPECT_ERROR("stages { steps: 2 config { parallel { dp: 3 } } }", "stage 0", "global_batch");
  // Shrinking, non-integer widths, architecture changes.
  EXPECT_ERROR(
      "stages { steps: 2 } stages { name: \"x\" steps: 2 config { model { num_hidden_layers: 1 } } "
      "}",
      "stage 1 (\"x\")", "model.num_hidden_layers = 1 is smaller");
  EXPECT_ERROR(
      "stages { steps: 2 } stages { steps: 2 config { model { hidden_size: 48 "
      "num_attention_heads: 3 } } }",
      "stage 1", "integer multiple");
  EXPECT_ERROR("stages { steps: 2 } stages { steps: 2 config { model { pre_ln: true } } }",
               "stage 1", "model.pre_ln");
  EXPECT_ERROR("stages { steps: 2 } stages { steps: 2 config { train { seed: 6 } } }", "stage 1",
               "train.seed");
  EXPECT_ERROR("stages { steps: 2 } stages { steps: 2 config { data { vocab: \"other.txt\" } } }",
               "stage 1", "data.vocab");
  // Growth options where nothing grows, or that do not fit the growth.
  EXPECT_ERROR("stages { steps: 2 growth { seed: 1 } }", "stage 0", "first stage");
  EXPECT_ERROR("stages { steps: 2 } stages { steps: 2 growth { seed: 1 } }", "stage 1",
               "same shape");
  EXPECT_ERROR(
      "stages { steps: 2 } stages { steps: 2 config { model { num_hidden_layers: 4 } } "
      "growth { insert_layers: 1 } }",
      "stage 1", "1 positions for 2 new layers");
  EXPECT_ERROR(
      "stages { steps: 2 } stages { steps: 2 config { model { num_hidden_layers: 3 } } "
      "growth { insert_layers: 5 } }",
      "stage 1", "position 5 outside [0, 2]");
  EXPECT_ERROR(
      "stages { steps: 2 config { model { realformer_running_mean: true } } } stages { steps: 2 "
      "config { model { num_hidden_layers: 3 } } growth { insert_layers: 1 } }",
      "stage 1", "realformer_running_mean");
  EXPECT_ERROR(
      "stages { steps: 2 } stages { steps: 2 config { model { hidden_size: 64 "
      "num_attention_heads: 4 } } growth { noise_scale: -1 } }",
      "stage 1", "noise_scale");
}

TEST(StagePlan, LoadReportsUnknownFieldsWithFileAndLine) {
  const std::string path = ::testing::TempDir() + "/stage_schedule_bad.textproto";
  {
    std::ofstream out(path);
    out << "stages {\n  steps: 2\n  stepz: 3\n}\n";
  }
  try {
    LoadStagePlan(path, 100);
    FAIL() << "unknown field accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":3:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("stepz"), std::string::npos) << e.what();
  }
}

TEST(StagePlan, ExamplePlansResolve) {
  // The committed examples must stay valid (data paths are placeholders; nothing is read).
  for (const char* name : {"tiny", "curriculum", "grow_small_to_base"}) {
    const std::string path =
        std::string(ROFORMER_SOURCE_DIR) + "/launch/plans/" + name + ".textproto";
    StagePlan plan;
    ASSERT_NO_THROW(plan = LoadStagePlan(path, 21128)) << path;
    EXPECT_GE(plan.stages.size(), 2u) << path;
  }
}

TEST(StagePlan, LocatesCheckpoints) {
  StagePlan plan = Resolve(kGrow);
  const config::ModelConfig small = plan.stages[0].cfg.model();
  const config::ModelConfig big = plan.stages[1].cfg.model();
  PlanPosition p = LocateInPlan(plan, 0, 6, small, "ck");
  EXPECT_EQ(p.stage, 0);
  EXPECT_FALSE(p.at_end);
  p = LocateInPlan(plan, 0, 10, small, "ck");  // the end of stage 0: grow next
  EXPECT_TRUE(p.at_end);
  p = LocateInPlan(plan, 1, 10, big, "ck");  // grown, stage 1 not started
  EXPECT_EQ(p.stage, 1);
  EXPECT_FALSE(p.at_end);
  p = LocateInPlan(plan, 2, 19, big, "ck");
  EXPECT_TRUE(p.at_end);
  auto error = [&](int stage, int64_t step, const config::ModelConfig& m) -> std::string {
    try {
      LocateInPlan(plan, stage, step, m, "ck");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error(3, 19, big).find("3 stage(s)"), std::string::npos);
  EXPECT_NE(error(1, 16, big).find("stage lengths changed"), std::string::npos);
  EXPECT_NE(error(1, 12, small).find("plan changed"), std::string::npos);
}

config::Config TinyTrainConfig() {
  return ResolveConfig(
      "", {"model.vocab_size=200", "model.hidden_size=16", "model.num_hidden_layers=2",
           "model.num_attention_heads=2", "model.intermediate_size=32",
           "model.max_position_embeddings=32", "train.seq_len=16", "train.micro_batch=4",
           "train.global_batch=4", "train.steps=8", "train.warmup_steps=2", "train.lr=1e-3",
           "train.log_every=100", "train.eval_every=0"});
}

TEST(StageTrainer, LrRewarmsFromTheStageStartAndCheckpointsCarryTheStage) {
  // A stage covering global steps [5, 8) with warmup 2: lr 0.5, 1.0 x peak, then the decay over
  // the stage's 3 steps, independent of the 5 steps before it.
  config::Config cfg = TinyTrainConfig();
  RoFormerModel model(cfg.model());
  model.InitWeights(1);
  SyntheticBatchSource data(200, 16, 3);
  const std::string dir = ::testing::TempDir() + "/stage_trainer_ckpt";
  std::filesystem::remove_all(dir);
  {
    TrainerOptions o;
    o.quiet = true;
    o.checkpoint_dir = dir;
    cfg.mutable_train()->set_steps(5);
    Trainer first(cfg, &model, &data, o);
    first.Run();  // saves step 5, stage 0
  }
  cfg.mutable_train()->set_steps(8);
  TrainerOptions o;
  o.quiet = true;
  o.checkpoint_dir = dir;
  o.growth_stage = 1;
  o.lr_schedule_start = 5;
  Trainer t(cfg, &model, &data, o);
  ASSERT_TRUE(t.ResumeFromLatest());
  ASSERT_EQ(t.step(), 5);
  LrSchedule want;
  want.peak = 1e-3;
  want.warmup_steps = 2;
  want.total_steps = 3;
  for (int k = 0; k < 3; ++k) {
    StepResult r = t.Step();
    EXPECT_EQ(r.step, 5 + k);
    EXPECT_NEAR(r.lr, want.At(k), 1e-9) << "stage step " << k;
  }
  EXPECT_NEAR(t.history()[0].lr, 0.5e-3, 1e-9);
  t.SaveCheckpointNow();
  LoadedCheckpoint ck = LoadCheckpoint(dir, /*with_optimizer=*/false);
  EXPECT_EQ(ck.state.step, 8);
  EXPECT_EQ(ck.state.growth_stage, 1);
  // Adam's bias-correction count keeps running across the stage boundary.
  EXPECT_EQ(ck.state.adam_step, 8);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace roformer
