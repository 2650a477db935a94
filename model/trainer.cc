#include "model/trainer.h"

#include <glog/logging.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "model/flops.h"
#include "model/lr_schedule.h"
#include "model/optimizer.h"
#include "runtime/error.h"
#include "runtime/tensorboard.h"

namespace roformer {
namespace {

LrSchedule MakeSchedule(const config::TrainConfig& t) {
  LrSchedule s;
  s.peak = t.lr();
  s.warmup_steps = t.warmup_steps();
  s.total_steps = t.steps();
  s.decay = t.lr_decay();
  s.min_ratio = t.min_lr_ratio();
  return s;
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

// JSON has no NaN/Inf: a diverged value is written as null.
std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

}  // namespace

Trainer::~Trainer() = default;

Trainer::Trainer(const config::Config& cfg, RoFormerModel* model, BatchSource* data,
                 TrainerOptions opt)
    : cfg_(cfg), model_(model), data_(data), opt_(std::move(opt)) {
  const auto& t = cfg_.train();
  const int dp = cfg_.parallel().dp();
  if (t.global_batch() % (t.micro_batch() * dp) != 0) {
    Fail("train.global_batch = ", t.global_batch(), " must be a multiple of train.micro_batch (",
         t.micro_batch(), ") x parallel.dp (", dp, ")");
  }
  if (!opt_.run_dir.empty() && opt_.tensorboard) {
    tensorboard_ = std::make_unique<TensorBoardWriter>(opt_.run_dir + "/tensorboard");
  }
}

StepResult Trainer::Step() {
  const auto& t = cfg_.train();
  const int dp = cfg_.parallel().dp();
  const int micro = t.micro_batch();
  const int num_micro = t.global_batch() / (micro * dp);
  ParamStore& store = model_->store();
  store.ZeroGrads();

  StepResult r;
  r.step = step_;
  double loss = 0, mlm_loss = 0, sop_loss = 0;
  int64_t mlm_n = 0, mlm_ok = 0, sop_n = 0, sop_ok = 0;
  int64_t tokens = 0;
  double flops = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int m = 0; m < num_micro; ++m) {
    data_->Fill(consumed_samples_ + static_cast<int64_t>(m) * micro, micro, false, &batch_);
    DropoutContext drop;
    drop.enabled = true;
    drop.seed = t.seed();
    drop.step = static_cast<uint64_t>(step_);
    drop.micro = static_cast<uint32_t>(m);
    LossStats s = model_->ForwardBackward(batch_, drop, /*backward=*/true, 1.0f / num_micro);
    loss += s.loss / num_micro;
    mlm_loss += s.mlm_loss / num_micro;
    sop_loss += s.sop_loss / num_micro;
    mlm_n += s.mlm_count;
    mlm_ok += s.mlm_correct;
    sop_n += s.sop_count;
    sop_ok += s.sop_correct;
    tokens += static_cast<int64_t>(batch_.batch) * batch_.seq_len;
    flops += batch_.batch * TrainFlopsPerSequence(model_->dims(), batch_.seq_len,
                                                  static_cast<double>(s.mlm_count) / batch_.batch,
                                                  !batch_.sop_labels.empty());
  }
  r.loss = loss;
  r.mlm_loss = mlm_loss;
  r.sop_loss = sop_loss;
  r.mlm_acc = mlm_n ? static_cast<double>(mlm_ok) / mlm_n : 0;
  r.sop_acc = sop_n ? static_cast<double>(sop_ok) / sop_n : 0;
  r.lr = MakeSchedule(t).At(step_);

  GradCheck gc = CheckGradients(store);
  r.grad_norm = gc.norm;
  if (!std::isfinite(loss) || !gc.finite) {
    r.skipped = true;
    ++skipped_steps_;
    ++consecutive_skips_;
    LOG(WARNING) << "step " << step_ << ": non-finite "
                 << (!std::isfinite(loss) ? "loss (" + std::to_string(loss) + ")"
                                          : "gradient in " + gc.first_bad)
                 << "; update skipped (" << consecutive_skips_ << " in a row, "
                 << skipped_steps_ << " total)";
    if (consecutive_skips_ >= t.max_consecutive_skips()) {
      Fail("training diverged: ", consecutive_skips_,
           " consecutive steps with a non-finite loss or gradient (last: ",
           gc.finite ? std::string("loss") : gc.first_bad,
           "); lower train.lr or check the data (train.max_consecutive_skips = ",
           t.max_consecutive_skips(), ")");
    }
  } else {
    consecutive_skips_ = 0;
    AdamWOptions o;
    o.beta1 = t.adam_beta1();
    o.beta2 = t.adam_beta2();
    o.eps = t.adam_eps();
    o.weight_decay = t.weight_decay();
    o.grad_clip = t.grad_clip();
    AdamWStep(&store, o, r.lr, step_ - skipped_steps_ + 1, gc.norm);
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  consumed_samples_ += t.global_batch();
  ++step_;
  history_.push_back(r);
  window_seconds_ += seconds;
  window_tokens_ += tokens;
  window_flops_ += flops;
  run_seconds_ += seconds;
  ++run_steps_;
  if (step_ % t.log_every() == 0 || step_ == t.steps()) LogStep(r, seconds, tokens);
  return r;
}

void Trainer::LogStep(const StepResult& r, double, int64_t) {
  const auto& t = cfg_.train();
  double tok_s = window_seconds_ > 0 ? window_tokens_ / window_seconds_ : 0;
  double gflops = window_seconds_ > 0 ? window_flops_ / window_seconds_ / 1e9 : 0;
  double mfu = opt_.gemm_peak_gflops > 0 ? gflops / opt_.gemm_peak_gflops : 0;
  double eta = run_steps_ > 0 ? (t.steps() - step_) * (run_seconds_ / run_steps_) : 0;
  if (!opt_.quiet) {
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "step %lld/%lld loss %.4f mlm %.4f acc %.3f sop %.4f acc %.3f lr %.3g gnorm %.3f "
                  "tok/s %.0f %.1f GFLOP/s mfu %.1f%% eta %s",
                  static_cast<long long>(step_), static_cast<long long>(t.steps()), r.loss,
                  r.mlm_loss, r.mlm_acc, r.sop_loss, r.sop_acc, r.lr, r.grad_norm, tok_s, gflops,
                  100 * mfu, FormatDuration(eta).c_str());
    LOG(INFO) << buf;
  }
  Record({{"step", static_cast<double>(step_)}, {"loss", r.loss}, {"mlm_loss", r.mlm_loss},
          {"mlm_acc", r.mlm_acc}, {"sop_loss", r.sop_loss}, {"sop_acc", r.sop_acc}, {"lr", r.lr},
          {"grad_norm", r.grad_norm}, {"tokens_per_s", tok_s}, {"gflops", gflops}, {"mfu", mfu},
          {"skipped_steps", static_cast<double>(skipped_steps_)},
          {"consumed_samples", static_cast<double>(consumed_samples_)}});
  window_seconds_ = 0;
  window_tokens_ = 0;
  window_flops_ = 0;
}

EvalResult Trainer::Evaluate() {
  const auto& t = cfg_.train();
  EvalResult e;
  int64_t n = std::min<int64_t>(t.eval_samples(), data_->eval_samples_available());
  if (n <= 0) return e;
  double mlm_sum = 0, sop_sum = 0;
  int64_t mlm_n = 0, mlm_ok = 0, sop_n = 0, sop_ok = 0;
  Batch b;
  for (int64_t first = 0; first < n; first += t.micro_batch()) {
    int count = static_cast<int>(std::min<int64_t>(t.micro_batch(), n - first));
    data_->Fill(first, count, /*eval=*/true, &b);
    LossStats s = model_->ForwardBackward(b, DropoutContext{}, /*backward=*/false);
    mlm_sum += s.mlm_loss * s.mlm_count;
    sop_sum += s.sop_loss * s.sop_count;
    mlm_n += s.mlm_count;
    mlm_ok += s.mlm_correct;
    sop_n += s.sop_count;
    sop_ok += s.sop_correct;
    e.sequences += count;
  }
  e.mlm_loss = mlm_n ? mlm_sum / mlm_n : 0;
  e.mlm_acc = mlm_n ? static_cast<double>(mlm_ok) / mlm_n : 0;
  e.sop_loss = sop_n ? sop_sum / sop_n : 0;
  e.sop_acc = sop_n ? static_cast<double>(sop_ok) / sop_n : 0;
  if (!opt_.quiet) {
    char buf[256];
    std::snprintf(buf, sizeof(buf), "eval step %lld: mlm loss %.4f acc %.4f sop loss %.4f acc %.4f (%lld seqs)",
                  static_cast<long long>(step_), e.mlm_loss, e.mlm_acc, e.sop_loss, e.sop_acc,
                  static_cast<long long>(e.sequences));
    LOG(INFO) << buf;
  }
  Record({{"step", static_cast<double>(step_)}, {"eval_mlm_loss", e.mlm_loss},
          {"eval_mlm_acc", e.mlm_acc}, {"eval_sop_loss", e.sop_loss}, {"eval_sop_acc", e.sop_acc},
          {"eval_sequences", static_cast<double>(e.sequences)}});
  return e;
}

void Trainer::Run(int64_t max_steps) {
  const auto& t = cfg_.train();
  int64_t stop = t.steps();
  if (max_steps >= 0) stop = std::min<int64_t>(stop, step_ + max_steps);
  if (step_ == 0 && t.eval_every() > 0) Evaluate();
  while (step_ < stop) {
    Step();
    if (t.eval_every() > 0 && step_ % t.eval_every() == 0 && step_ != t.steps()) Evaluate();
    if (cfg_.checkpoint().every() > 0 && step_ % cfg_.checkpoint().every() == 0) SaveCheckpointNow();
  }
  if (step_ == t.steps() && stop == t.steps()) {
    Evaluate();
    SaveCheckpointNow();
  }
}

void Trainer::SaveCheckpointNow() {
  if (opt_.checkpoint_dir.empty()) return;
  const auto& t = cfg_.train();
  TrainState st;
  st.step = step_;
  st.consumed_samples = consumed_samples_;
  st.seed = t.seed();
  st.lr = history_.empty() ? 0.0 : history_.back().lr;
  st.warmup_steps = t.warmup_steps();
  st.total_steps = t.steps();
  st.skipped_steps = skipped_steps_;
  st.adam_step = step_ - skipped_steps_;
  SaveOptions so;
  so.keep = cfg_.checkpoint().keep();
  so.vocab = opt_.vocab;
  auto t0 = std::chrono::steady_clock::now();
  std::string dir = SaveCheckpoint(opt_.checkpoint_dir, model_->store(), cfg_, st, so);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!opt_.quiet) LOG(INFO) << "checkpoint " << dir << " (" << s << " s)";
}

bool Trainer::ResumeFromLatest() {
  if (opt_.checkpoint_dir.empty()) return false;
  std::string dir = FindLatestCheckpoint(opt_.checkpoint_dir);
  if (dir.empty()) return false;
  LoadedCheckpoint ck = LoadCheckpoint(dir, /*with_optimizer=*/true);
  RestoreInto(ck, &model_->store(), /*with_optimizer=*/true);
  if (ck.state.seed != cfg_.train().seed()) {
    LOG(WARNING) << "resuming " << dir << " saved with train.seed " << ck.state.seed
                 << " under train.seed " << cfg_.train().seed()
                 << ": the data order and dropout continue with the new seed";
  }
  step_ = ck.state.step;
  consumed_samples_ = ck.state.consumed_samples;
  skipped_steps_ = ck.state.skipped_steps;
  if (!opt_.quiet) {
    LOG(INFO) << "resumed from " << dir << " at step " << step_ << " (" << consumed_samples_
              << " samples consumed)";
  }
  return true;
}

void Trainer::Record(const std::vector<std::pair<std::string, double>>& fields) {
  if (opt_.run_dir.empty()) return;
  std::string line = "{";
  for (size_t i = 0; i < fields.size(); ++i) {
    line += (i ? ",\"" : "\"") + fields[i].first + "\":" + JsonNumber(fields[i].second);
  }
  line += "}\n";
  std::ofstream out(opt_.run_dir + "/metrics.jsonl", std::ios::app);
  if (!out) Fail(opt_.run_dir, "/metrics.jsonl: cannot open for writing");
  out << line;
  if (tensorboard_) {
    for (size_t i = 1; i < fields.size(); ++i) {
      const std::string& k = fields[i].first;
      std::string tag = k.rfind("eval_", 0) == 0 ? "eval/" + k.substr(5) : "train/" + k;
      if (std::isfinite(fields[i].second)) {
        tensorboard_->AddScalar(tag, step_, static_cast<float>(fields[i].second));
      }
    }
    tensorboard_->Flush();
  }
}

}  // namespace roformer
