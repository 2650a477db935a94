// The Trainer's device path (train.device != "cpu", model/device_model.h) without a GPU: a test
// backend, "cpu-mirror", keeps its own copy of the state in a second RoFormerModel, so anything
// the trainer forgets to synchronise (the restore before a resumed step, the download before a
// checkpoint or at the end of Run, evaluation on the device's weights) shows up as a difference
// from the plain CPU trainer, which the mirror must otherwise reproduce bit for bit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "model/device_model.h"
#include "model/optimizer.h"
#include "model/roformer_model.h"
#include "model/synthetic_batches.h"
#include "model/trainer.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/grad_reducer.h"

namespace roformer {
namespace {

class MirrorDevice : public DeviceModel {
 public:
  explicit MirrorDevice(const DeviceModelContext& c)
      : model_(c.cfg->model()), reducer_(&model_.store(), c.dp), tp_(c.tp) {
    UploadState(c.host->store());
    ++constructed;
  }
  std::string Describe() const override { return "cpu-mirror (test backend)"; }
  double PeakGflops() const override { return 1.0; }
  void UploadState(const ParamStore& s) override {
    model_.store().params() = s.params();
    model_.store().adam_m() = s.adam_m();
    model_.store().adam_v() = s.adam_v();
    ++uploads;
  }
  void DownloadState(ParamStore* s) override {
    s->params() = model_.store().params();
    s->adam_m() = model_.store().adam_m();
    s->adam_v() = model_.store().adam_v();
  }
  void ZeroGrads() override { model_.store().ZeroGrads(); }
  LossStats ForwardBackward(const Batch& batch, const DropoutContext& dropout, bool backward,
                            float grad_scale, float mlm_scale, float sop_scale,
                            bool last_micro_batch) override {
    if (backward && last_micro_batch) {
      model_.SetGradReadyHook([this](const std::vector<size_t>& ix) {
        for (size_t i : ix) reducer_.MarkReady(i);
      });
    }
    LossStats s =
        model_.ForwardBackward(batch, dropout, backward, grad_scale, mlm_scale, sop_scale);
    model_.SetGradReadyHook({});
    if (!backward) ++forward_only;
    return s;
  }
  void FinishBackward() override {
    model_.FinishGradientsTp();
    reducer_.FinishBackward();
  }
  GradCheck CheckGradients() override {
    GradCheck gc;
    gc.norm = reducer_.GlobalGradNorm(tp_->size() > 1 ? tp_ : nullptr);
    gc.finite = std::isfinite(gc.norm);
    if (!gc.finite && !reducer_.nonfinite_tensors().empty())
      gc.first_bad = reducer_.nonfinite_tensors().front();
    return gc;
  }
  void ApplyAdamW(const AdamWOptions& opt, double lr, int64_t step, double norm) override {
    AdamWStep(&model_.store(), opt, lr, step, norm);
  }

  static inline int constructed = 0, uploads = 0, forward_only = 0;

 private:
  RoFormerModel model_;
  GradReducer reducer_;
  Communicator* tp_;
};

void RegisterMirror() {
  RegisterDeviceModel(
      "cpu-mirror", [](const DeviceModelContext& c) { return std::make_unique<MirrorDevice>(c); });
}

config::Config TinyConfig(const std::string& device, const std::string& weighting = "fixed") {
  config::Config cfg = ResolveConfig(
      "", {"model.vocab_size=200", "model.hidden_size=16", "model.num_hidden_layers=2",
           "model.num_attention_heads=2", "model.intermediate_size=32",
           "model.max_position_embeddings=32", "model.realformer=true", "train.seq_len=16",
           "train.micro_batch=4", "train.global_batch=8", "train.steps=6", "train.warmup_steps=2",
           "train.lr=1e-3", "train.log_every=1", "train.eval_every=3", "train.eval_samples=8",
           "checkpoint.every=3"});
  cfg.mutable_train()->set_device(device);
  cfg.mutable_multitask()->set_weighting(weighting);
  return cfg;
}

struct RunOutput {
  std::vector<StepResult> history;
  std::vector<float> params, adam_m, adam_v;
  EvalResult eval;
};

// `split`: run the first `split` steps, then a fresh model + trainer resumes from the checkpoint.
RunOutput Train(const std::string& device, const std::string& ckpt_dir, int split = 0,
                const std::string& weighting = "fixed") {
  config::Config cfg = TinyConfig(device, weighting);
  SyntheticBatchSource data(200, 16, 11);
  TrainerOptions opt;
  opt.quiet = true;
  opt.checkpoint_dir = ckpt_dir;
  RunOutput out;
  auto model = std::make_unique<RoFormerModel>(cfg.model());
  model->InitWeights(5);
  if (split > 0) {
    Trainer first(cfg, model.get(), &data, opt);
    first.Run(split);
    first.SaveCheckpointNow();
    out.history = first.history();
    model = std::make_unique<RoFormerModel>(cfg.model());
    model->InitWeights(99);  // overwritten by the resume
  }
  Trainer trainer(cfg, model.get(), &data, opt);
  if (split > 0) {
    EXPECT_TRUE(trainer.ResumeFromLatest());
  }
  trainer.Run();
  for (const StepResult& r : trainer.history()) out.history.push_back(r);
  out.eval = trainer.Evaluate();
  out.params = model->store().params();
  out.adam_m = model->store().adam_m();
  out.adam_v = model->store().adam_v();
  return out;
}

class TrainerDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterMirror();
    dir_ = std::filesystem::temp_directory_path() /
           ("trainer_device_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Dir(const std::string& leaf) { return (dir_ / leaf).string(); }
  std::filesystem::path dir_;
};

void ExpectSameRun(const RunOutput& a, const RunOutput& b) {
  ASSERT_EQ(a.history.size(), b.history.size());
  for (size_t i = 0; i < a.history.size(); ++i) {
    EXPECT_EQ(a.history[i].step, b.history[i].step);
    EXPECT_EQ(a.history[i].loss, b.history[i].loss) << "step " << i;
    EXPECT_EQ(a.history[i].grad_norm, b.history[i].grad_norm) << "step " << i;
    EXPECT_EQ(a.history[i].lr, b.history[i].lr) << "step " << i;
  }
  ASSERT_EQ(a.params.size(), b.params.size());
  EXPECT_TRUE(a.params == b.params) << "final parameters differ";
  EXPECT_TRUE(a.adam_m == b.adam_m) << "final Adam moments differ";
  EXPECT_EQ(a.eval.mlm_loss, b.eval.mlm_loss);
  EXPECT_EQ(a.eval.sop_acc, b.eval.sop_acc);
}

TEST_F(TrainerDevice, MirrorReproducesTheCpuTrainerBitForBit) {
  const RunOutput cpu = Train("cpu", Dir("cpu"));
  MirrorDevice::forward_only = 0;
  const RunOutput dev = Train("cpu-mirror", Dir("dev"));
  ExpectSameRun(cpu, dev);
  // Evaluation ran on the device (at steps 0, 3 and 6, and the explicit call), not on the host.
  EXPECT_GE(MirrorDevice::forward_only, 4 * 2);
  // The final weights are the device's (Run synchronised them back), and the checkpoint written at
  // the end holds them too.
  LoadedCheckpoint ck = LoadCheckpoint(FindLatestCheckpoint(Dir("dev")), true);
  RoFormerModel probe(TinyConfig("cpu").model());
  RestoreInto(ck, &probe.store(), true);
  EXPECT_TRUE(probe.store().params() == dev.params);
  EXPECT_TRUE(probe.store().adam_v() == dev.adam_v);
}

TEST_F(TrainerDevice, FinalWeightsReachTheHostWithoutCheckpoints) {
  // No checkpoint_dir: only the end of Run copies the device's state back to the host model.
  const RunOutput cpu = Train("cpu", "");
  const RunOutput dev = Train("cpu-mirror", "");
  ExpectSameRun(cpu, dev);
}

TEST_F(TrainerDevice, ResumeOnTheDeviceRestoresWeightsAndMoments) {
  const RunOutput cpu = Train("cpu", Dir("cpu"));
  MirrorDevice::uploads = 0;
  const RunOutput dev = Train("cpu-mirror", Dir("dev"), /*split=*/3);
  // Construction of each trainer uploads once, the resume once more.
  EXPECT_EQ(MirrorDevice::uploads, 3);
  ExpectSameRun(cpu, dev);
}

TEST_F(TrainerDevice, CheckpointsAreInterchangeableBetweenDevices) {
  // Three steps on the device, then the CPU resumes the checkpoint: same as all six on the CPU.
  const RunOutput cpu = Train("cpu", Dir("cpu"));
  config::Config cfg = TinyConfig("cpu-mirror");
  SyntheticBatchSource data(200, 16, 11);
  TrainerOptions opt;
  opt.quiet = true;
  opt.checkpoint_dir = Dir("mixed");
  RoFormerModel model(cfg.model());
  model.InitWeights(5);
  {
    Trainer t(cfg, &model, &data, opt);
    t.Run(3);
  }
  config::Config on_cpu = TinyConfig("cpu");
  RoFormerModel fresh(on_cpu.model());
  Trainer t(on_cpu, &fresh, &data, opt);
  ASSERT_TRUE(t.ResumeFromLatest());
  t.Run();
  EXPECT_TRUE(fresh.store().params() == cpu.params);
}

TEST_F(TrainerDevice, MultitaskWeightingSchemesRunOnTheDevice) {
  // The per-task loss scales reach the device's backward, and the schemes that need this step's
  // losses run their forward-only pre-pass there; the scheme state survives a resume on the device.
  for (const char* scheme : {"realtime", "uncertainty", "genmean", "init"}) {
    SCOPED_TRACE(scheme);
    const RunOutput cpu = Train("cpu", Dir(std::string("cpu_") + scheme), 0, scheme);
    MirrorDevice::forward_only = 0;
    const RunOutput dev = Train("cpu-mirror", Dir(std::string("dev_") + scheme), 3, scheme);
    ExpectSameRun(cpu, dev);
    for (size_t i = 0; i < cpu.history.size(); ++i) {
      EXPECT_EQ(cpu.history[i].w_mlm, dev.history[i].w_mlm) << "step " << i;
      EXPECT_EQ(cpu.history[i].w_sop, dev.history[i].w_sop) << "step " << i;
    }
    // The weights really moved away from the unit sum somewhere in the run.
    bool weighted = false;
    for (const StepResult& r : dev.history) weighted |= r.w_mlm != 1.0 || r.w_sop != 1.0;
    EXPECT_TRUE(weighted);
  }
}

TEST_F(TrainerDevice, UnsupportedCombinationsFailNamingTheField) {
  SyntheticBatchSource data(200, 16, 11);
  TrainerOptions opt;
  opt.quiet = true;
  auto expect_error = [&](config::Config cfg, const std::string& needle) {
    RoFormerModel model(cfg.model());
    try {
      Trainer t(cfg, &model, &data, opt);
      ADD_FAILURE() << "expected an error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  config::Config z = TinyConfig("cpu-mirror");
  z.mutable_optimizer()->set_zero_stage(1);
  expect_error(z, "optimizer.zero_stage");
  config::Config w = TinyConfig("cpu-mirror");
  w.mutable_multitask()->set_weighting("gradnorm");
  expect_error(w, "multitask.weighting");
  expect_error(TinyConfig("no-such-device"), "train.device = \"no-such-device\"");
  // The config schema itself only accepts the two real backends.
  EXPECT_THROW(ResolveConfig("", {"train.device=tpu"}), Error);
  EXPECT_NO_THROW(ResolveConfig("", {"train.device=cuda"}));
}

}  // namespace
}  // namespace roformer
