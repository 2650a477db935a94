#include "model/trainer.h"

#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

#include "model/flops.h"
#include "model/loss_weighting.h"
#include "model/lr_schedule.h"
#include "model/multitask.h"
#include "model/optimizer.h"
#include "runtime/comm_task.h"
#include "runtime/error.h"
#include "runtime/gemm_peak.h"
#include "runtime/grad_reducer.h"
#include "runtime/tensorboard.h"

namespace roformer {
namespace {

// `start`: TrainerOptions::lr_schedule_start (a schedule stage's LR counts from its first step).
LrSchedule MakeSchedule(const config::TrainConfig& t, int64_t start) {
  LrSchedule s;
  s.peak = t.lr();
  s.warmup_steps = t.warmup_steps();
  s.total_steps = t.steps() - start;
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

double Trainer::dp_exposed_seconds() const {
  return device_ ? device_->dp_exposed_seconds() : reducer_->total_exposed_comm_seconds();
}
double Trainer::dp_comm_seconds() const {
  // A device reducer's busy time is not measured (only its exposed part, from events).
  return device_ ? 0.0 : reducer_->total_comm_seconds();
}

Trainer::Trainer(const config::Config& cfg, RoFormerModel* model, BatchSource* data,
                 TrainerOptions opt)
    : cfg_(cfg), model_(model), data_(data), opt_(std::move(opt)) {
  const auto& t = cfg_.train();
  const int dp = cfg_.parallel().dp();
  if (t.global_batch() % (t.micro_batch() * dp) != 0) {
    Fail("train.global_batch = ", t.global_batch(), " must be a multiple of train.micro_batch (",
         t.micro_batch(), ") x parallel.dp (", dp, ")");
  }
  world_ = opt_.world;
  tp_ = opt_.tp;
  dp_ = opt_.dp;
  if (!world_) world_ = (local_world_ = MakeLocalCommunicator("world", 0)).get();
  if (!tp_) tp_ = (local_tp_ = MakeLocalCommunicator("tp", 0)).get();
  if (!dp_) dp_ = (local_dp_ = MakeLocalCommunicator("dp", 0)).get();
  if (dp_->size() != dp) {
    Fail("parallel.dp = ", dp, " but the data-parallel communicator has ", dp_->size(), " ranks");
  }
  GradReducerOptions ro;
  ro.bucket_bytes = static_cast<int64_t>(cfg_.parallel().dp_bucket_mb()) << 20;
  ro.zero_stage = cfg_.optimizer().zero_stage();
  reducer_ = std::make_unique<GradReducer>(&model_->store(), dp_, ro);
  progress_line_ = !opt_.quiet && !opt_.run_dir.empty() && isatty(STDERR_FILENO);
  num_tasks_ = t.sop() ? 2 : 1;
  if (!IsUnitFixedWeighting(cfg_.multitask())) {
    // Tasks: MLM (K = vocab) and SOP (K = 2). The "prior" scheme counts the labels of the first
    // training sequences (the same samples on every rank).
    std::vector<int> classes = {model_->dims().vocab, 2};
    std::vector<std::vector<double>> priors;
    if (cfg_.multitask().weighting() == "prior") {
      priors.assign(2, {});
      priors[0].assign(model_->dims().vocab, 0.0);
      priors[1].assign(2, 0.0);
      const int64_t want = cfg_.multitask().prior_samples() > 0 ? cfg_.multitask().prior_samples()
                                                                : t.eval_samples();
      Batch b;
      for (int64_t first = 0; first < want; first += t.micro_batch()) {
        data_->Fill(first, static_cast<int>(std::min<int64_t>(t.micro_batch(), want - first)),
                    false, &b);
        for (int32_t l : b.mlm_labels) priors[0][l] += 1;
        for (int32_t l : b.sop_labels) priors[1][l] += 1;
      }
    }
    classes.resize(num_tasks_);
    priors.resize(priors.empty() ? 0 : num_tasks_);
    weighting_ = std::make_unique<LossWeighting>(
        num_tasks_, MakeLossWeightingOptions(cfg_.multitask(), num_tasks_, classes, priors));
    task_losses_.assign(num_tasks_, 0.0);
    task_norms_.assign(num_tasks_, 0.0);
    const auto& infos = model_->store().infos();
    shared_.assign(infos.size(), 0);
    for (size_t i = 0; i < infos.size(); ++i)
      shared_[i] = infos[i].name.rfind("roformer.", 0) == 0 ? 1 : 0;
    if (weighting_->NeedsGradNorms()) {
      // One reduced gradient per task, sized once (a training step allocates nothing).
      task_grads_.assign(num_tasks_, std::vector<float>(model_->store().grads().size()));
    }
  }
  if (t.device() != "cpu") {
    if (weighting_ && weighting_->NeedsGradNorms()) {
      // gradnorm keeps one reduced gradient per task and their shared-parameter norms on the
      // host (GradNormBackward): not ported to a device.
      Fail("multitask.weighting = \"", cfg_.multitask().weighting(),
           "\" is not supported with train.device = \"", t.device(),
           "\" yet (every other weighting scheme is)");
    }
    if (cfg_.optimizer().zero_stage() != 0) {
      Fail("optimizer.zero_stage = ", cfg_.optimizer().zero_stage(),
           " is not supported with train.device = \"", t.device(),
           "\" yet (every GPU keeps the full Adam state)");
    }
    DeviceModelContext ctx;
    ctx.cfg = &cfg_;
    ctx.host = model_;
    ctx.world = world_;
    ctx.tp = tp_;
    ctx.dp = dp_;
    device_ = MakeDeviceModel(t.device(), ctx);
    // MFU on a device is a fraction of the device's peak, not of the host's SGEMM.
    opt_.gemm_peak_gflops = device_->PeakGflops();
    if (!opt_.quiet) LOG(INFO) << "training on " << device_->Describe();
  }
  if (!opt_.run_dir.empty() && opt_.tensorboard) {
    tensorboard_ = std::make_unique<TensorBoardWriter>(opt_.run_dir + "/tensorboard");
  }
}

void Trainer::SyncToHost() {
  if (device_) device_->DownloadState(&model_->store());
}

DropoutContext Trainer::LoadMicroBatch(int k, int num_local) {
  // DP rank r owns rows [r*G/R, (r+1)*G/R) of the global batch; its k-th micro-batch is the
  // single-process micro-batch r*num_local + k, so samples and dropout masks are identical.
  const int micro = cfg_.train().micro_batch();
  const int global_micro = dp_->rank() * num_local + k;
  const auto td = std::chrono::steady_clock::now();
  data_->Fill(consumed_samples_ + static_cast<int64_t>(global_micro) * micro, micro, false,
              &batch_);
  timer_data_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - td).count();
  DropoutContext drop;
  drop.enabled = true;
  drop.seed = cfg_.train().seed();
  drop.step = static_cast<uint64_t>(step_);
  drop.micro = static_cast<uint32_t>(global_micro);
  return drop;
}

void Trainer::AccumulateMicroBatches(float mlm_scale, float sop_scale, bool ready_hook,
                                     double* sums, int64_t* tokens_out, double* flops_out) {
  const auto& t = cfg_.train();
  const int num_local = t.global_batch() / (t.micro_batch() * dp_->size());
  int64_t tokens = 0;
  double flops = 0;
  for (int k = 0; k < num_local; ++k) {
    const DropoutContext drop = LoadMicroBatch(k, num_local);
    if (device_) {
      LossStats s = device_->ForwardBackward(batch_, drop, /*backward=*/true, 1.0f / num_local,
                                             mlm_scale, sop_scale,
                                             /*last_micro_batch=*/ready_hook && k == num_local - 1);
      timer_fwd_ += s.forward_seconds;
      timer_bwd_ += s.backward_seconds;
      AddMicroBatchStats(s, num_local, sums, &tokens, &flops);
      continue;
    }
    if (ready_hook && k == num_local - 1) {
      // Last micro-batch: gradients become final layer by layer, so DP buckets can start early.
      model_->SetGradReadyHook([this](const std::vector<size_t>& ix) {
        for (size_t i : ix) reducer_->MarkReady(i);
      });
    }
    const double tp_before = model_->tp().blocked_seconds();
    LossStats s = model_->ForwardBackward(batch_, drop, /*backward=*/true, 1.0f / num_local,
                                          mlm_scale, sop_scale);
    timer_fwd_ += s.forward_seconds;
    timer_bwd_ += s.backward_seconds;
    timer_tp_ += model_->tp().blocked_seconds() - tp_before;
    model_->SetGradReadyHook({});
    AddMicroBatchStats(s, num_local, sums, &tokens, &flops);
  }
  *tokens_out += tokens;
  *flops_out += flops;
}

void Trainer::AddMicroBatchStats(const LossStats& s, int num_local, double* sums, int64_t* tokens,
                                 double* flops) const {
  sums[0] += s.loss / num_local;
  sums[1] += s.mlm_loss / num_local;
  sums[2] += s.sop_loss / num_local;
  sums[3] += s.mlm_count;
  sums[4] += s.mlm_correct;
  sums[5] += s.sop_count;
  sums[6] += s.sop_correct;
  *tokens += static_cast<int64_t>(batch_.batch) * batch_.seq_len;
  *flops += batch_.batch * TrainFlopsPerSequence(model_->dims(), batch_.seq_len,
                                                 static_cast<double>(s.mlm_count) / batch_.batch,
                                                 !batch_.sop_labels.empty());
}

void Trainer::GradNormBackward(double* sums, int64_t* tokens, double* flops, StepResult* r) {
  // Per-task backward (seeds.md §8 scheme 7): task i's gradient alone, reduced over TP and DP,
  // its norm over the shared encoder parameters, then Σ_i g_i / ‖g_i‖ (heads included: each head
  // only receives its own task's gradient). Costs one forward + backward + DP reduction per task
  // per step, and one gradient buffer per task.
  using Clock = std::chrono::steady_clock;
  ParamStore& store = model_->store();
  const int R = dp_->size();
  const bool sharded_dp = cfg_.optimizer().zero_stage() == 1 && R > 1;
  for (int i = 0; i < num_tasks_; ++i) {
    store.ZeroGrads();
    double other[7] = {0, 0, 0, 0, 0, 0, 0};
    int64_t tok = 0;
    double fl = 0;
    // Both heads run forward every pass (a scale of 0 skips only the backward), so the first
    // pass's sums hold every task's loss.
    AccumulateMicroBatches(i == 0 ? 1.0f : 0.0f, i == 1 ? 1.0f : 0.0f, /*ready_hook=*/false,
                           i == 0 ? sums : other, &tok, &fl);
    if (i == 0) *tokens += tok;
    *flops += fl;
    model_->FinishGradientsTp();
    auto tr = Clock::now();
    reducer_->FinishBackward();
    timer_dp_ += std::chrono::duration<double>(Clock::now() - tr).count();
    task_norms_[i] =
        SharedGradNorm(store, shared_, *reducer_, sharded_dp, dp_, tp_->size() > 1 ? tp_ : nullptr);
    std::copy(store.grads().begin(), store.grads().end(), task_grads_[i].begin());
  }
  double global[3] = {sums[1], sums[2], 0};
  dp_->AllReduce(std::span<double>(global, 2));
  bool finite = true;
  for (int i = 0; i < num_tasks_; ++i) {
    task_losses_[i] = global[i] / R;
    finite = finite && std::isfinite(task_losses_[i]) && std::isfinite(task_norms_[i]);
  }
  r->gnorm_mlm = task_norms_[0];
  r->gnorm_sop = num_tasks_ > 1 ? task_norms_[1] : 0.0;
  float* g = store.grads().data();
  const size_t n = store.grads().size();
  if (!finite) {
    // Leave a non-finite gradient so the step is skipped like any other non-finite step.
    std::fill(g, g + n, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  const std::vector<double>& w = weighting_->Step(task_losses_, task_norms_);
  r->w_mlm = w[0];
  r->w_sop = num_tasks_ > 1 ? w[1] : 0.0;
  const float w0 = static_cast<float>(w[0]);
  const float* g0 = task_grads_[0].data();
  if (num_tasks_ == 1) {
    for (size_t j = 0; j < n; ++j) g[j] = w0 * g0[j];
  } else {
    const float w1 = static_cast<float>(w[1]);
    const float* g1 = task_grads_[1].data();
    for (size_t j = 0; j < n; ++j) g[j] = w0 * g0[j] + w1 * g1[j];
  }
}

StepResult Trainer::Step() {
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  const auto& t = cfg_.train();
  const int R = dp_->size();
  const int num_local = t.global_batch() / (t.micro_batch() * R);
  ParamStore& store = model_->store();
  if (device_) {
    device_->ZeroGrads();
  } else {
    store.ZeroGrads();
  }

  StepResult r;
  r.step = step_;
  // Per-rank sums, all-reduced over DP below: loss, mlm_loss, sop_loss (each the mean over this
  // rank's micro-batches), counts.
  double sums[7] = {0, 0, 0, 0, 0, 0, 0};
  int64_t tokens = 0;
  double flops = 0;
  auto t0 = Clock::now();
  if (!weighting_) {
    AccumulateMicroBatches(1.0f, 1.0f, /*ready_hook=*/true, sums, &tokens, &flops);
  } else if (weighting_->NeedsGradNorms()) {
    GradNormBackward(sums, &tokens, &flops, &r);
  } else {
    // The weights multiply each task's loss gradient. Schemes whose weights depend on this step's
    // losses (realtime, genmean, init while estimating) first run a forward-only pass over the
    // same samples and dropout masks (+1 forward per step): the losses it sees are the ones the
    // backward pass then differentiates.
    std::vector<double>& l = task_losses_;
    const std::vector<double>* w = nullptr;
    if (weighting_->NeedsCurrentLosses()) {
      double pre[2] = {0, 0};
      for (int k = 0; k < num_local; ++k) {
        const DropoutContext drop = LoadMicroBatch(k, num_local);
        LossStats s = device_ ? device_->ForwardBackward(batch_, drop, /*backward=*/false, 1.0f,
                                                         1.0f, 1.0f, /*last_micro_batch=*/false)
                              : model_->ForwardBackward(batch_, drop, /*backward=*/false);
        timer_fwd_ += s.forward_seconds + s.backward_seconds;
        pre[0] += s.mlm_loss / num_local;
        pre[1] += s.sop_loss / num_local;
      }
      dp_->AllReduce(std::span<double>(pre, 2));
      bool finite = true;
      for (int i = 0; i < num_tasks_; ++i) {
        l[i] = pre[i] / R;
        finite = finite && std::isfinite(l[i]);
      }
      // A non-finite loss makes the step non-finite anyway (skipped below); any weight will do.
      static const std::vector<double> kOnes = {1.0, 1.0};
      w = finite ? &weighting_->Weights(l) : &kOnes;
    } else {
      w = &weighting_->LossFreeWeights();
    }
    r.w_mlm = (*w)[0];
    r.w_sop = num_tasks_ > 1 ? (*w)[1] : 0.0;
    AccumulateMicroBatches(static_cast<float>(r.w_mlm),
                           num_tasks_ > 1 ? static_cast<float>(r.w_sop) : 1.0f,
                           /*ready_hook=*/true, sums, &tokens, &flops);
  }
  double norm = 0;
  if (device_) {
    // FinishBackward only enqueues; the host first waits for the DP reduction in CheckGradients,
    // so the DP timer spans both (the norm itself is one small kernel).
    auto tr = Clock::now();
    device_->FinishBackward();
    const GradCheck gc = device_->CheckGradients();
    timer_dp_ += since(tr);
    norm = gc.finite ? gc.norm : std::numeric_limits<double>::quiet_NaN();
    device_bad_tensor_ = gc.finite ? "" : gc.first_bad;
  } else {
    if (!weighting_ || !weighting_->NeedsGradNorms()) {
      model_->FinishGradientsTp();
      auto tr = Clock::now();
      reducer_->FinishBackward();
      timer_dp_ += since(tr);
    }
    norm = reducer_->GlobalGradNorm(tp_->size() > 1 ? tp_ : nullptr);
  }
  dp_->AllReduce(std::span<double>(sums, 7));
  r.loss = sums[0] / R;
  r.mlm_loss = sums[1] / R;
  r.sop_loss = sums[2] / R;
  r.mlm_acc = sums[3] > 0 ? sums[4] / sums[3] : 0;
  r.sop_acc = sums[5] > 0 ? sums[6] / sums[5] : 0;
  if (weighting_) {
    task_losses_[0] = r.mlm_loss;
    if (num_tasks_ > 1) task_losses_[1] = r.sop_loss;
    bool finite = true;
    for (double v : task_losses_) finite = finite && std::isfinite(v);
    if (weighting_->NeedsGradNorms())
      for (double v : task_norms_) finite = finite && std::isfinite(v);
    if (finite) {
      // Advances the scheme's state (init estimate, uncertainty's log-variances) with the step's
      // global losses; gradnorm already stepped in GradNormBackward.
      if (!weighting_->NeedsGradNorms()) weighting_->Step(task_losses_);
      r.loss = weighting_->CombinedLoss(task_losses_);
    } else {
      r.loss = std::numeric_limits<double>::quiet_NaN();
    }
  }
  r.lr = MakeSchedule(t, opt_.lr_schedule_start).At(step_ - opt_.lr_schedule_start);
  r.grad_norm = norm;
  tokens *= R;
  flops *= R;

  auto to = Clock::now();
  if (!std::isfinite(r.loss) || !std::isfinite(norm)) {
    r.skipped = true;
    ++skipped_steps_;
    ++consecutive_skips_;
    std::string what =
        !std::isfinite(r.loss) ? "loss (" + std::to_string(r.loss) + ")"
        : device_ ? "gradient in " + (device_bad_tensor_.empty() ? std::string("an unnamed tensor")
                                                                 : device_bad_tensor_)
        : reducer_->nonfinite_tensors().empty()
            ? std::string("gradient on another rank")
            : "gradient in " + reducer_->nonfinite_tensors().front();
    LOG(WARNING) << "step " << step_ << ": non-finite " << what << "; update skipped ("
                 << consecutive_skips_ << " in a row, " << skipped_steps_ << " total)";
    if (consecutive_skips_ >= t.max_consecutive_skips()) {
      Fail("training diverged: ", consecutive_skips_,
           " consecutive steps with a non-finite loss or gradient (last: ", what,
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
    const int64_t update = step_ - skipped_steps_ + 1;
    if (device_) {
      device_->ApplyAdamW(o, r.lr, update, norm);
    } else if (cfg_.optimizer().zero_stage() == 1) {
      reducer_->OptimizerStepZero1(o, r.lr, update, norm);
    } else {
      AdamWStep(&store, o, r.lr, update, norm);
    }
  }
  timer_opt_ += since(to);
  double seconds = since(t0);
  consumed_samples_ += t.global_batch();
  ++step_;
  history_.push_back(r);
  window_seconds_ += seconds;
  window_tokens_ += tokens;
  window_flops_ += flops;
  run_seconds_ += seconds;
  ++run_steps_;
  if (step_ % t.log_every() == 0 || step_ == t.steps()) {
    LogStep(r, seconds, tokens);
  } else if (progress_line_) {
    // Live line on a terminal between log lines (rewritten in place; plain logs when not a TTY).
    const double eta = (t.steps() - step_) * (run_seconds_ / run_steps_);
    std::fprintf(stderr, "\r  step %lld/%lld loss %.4f %.0f tok/s eta %s   ",
                 static_cast<long long>(step_), static_cast<long long>(t.steps()), r.loss,
                 tokens / seconds, FormatDuration(eta).c_str());
    std::fflush(stderr);
  }
  return r;
}

void Trainer::LogStep(const StepResult& r, double, int64_t) {
  const auto& t = cfg_.train();
  double tok_s = window_seconds_ > 0 ? window_tokens_ / window_seconds_ : 0;
  double gflops = window_seconds_ > 0 ? window_flops_ / window_seconds_ / 1e9 : 0;
  // gflops is the whole job's rate (every rank's FLOPs); the peak is one rank's.
  const int world = world_->size();
  if (!device_ && opt_.gemm_peak_gflops > 0 && gflops / world > opt_.gemm_peak_gflops) {
    // The start-up measurement ran while the machine was busy (the step beat it): measure again
    // and keep the best, so MFU stays a fraction of a peak this process actually reached.
    const double again = MeasureSgemmPeakGflops();
    opt_.gemm_peak_gflops = std::max({opt_.gemm_peak_gflops, again, gflops / world});
  }
  double mfu = opt_.gemm_peak_gflops > 0 ? gflops / (opt_.gemm_peak_gflops * world) : 0;
  double eta = run_steps_ > 0 ? (t.steps() - step_) * (run_seconds_ / run_steps_) : 0;
  if (progress_line_) std::fprintf(stderr, "\r%*s\r", 78, "");
  if (!opt_.quiet) {
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "step %lld/%lld loss %.4f mlm %.4f acc %.3f sop %.4f acc %.3f lr %.3g gnorm %.3f "
                  "tok/s %.0f %.1f GFLOP/s mfu %.1f%% eta %s",
                  static_cast<long long>(step_), static_cast<long long>(t.steps()), r.loss,
                  r.mlm_loss, r.mlm_acc, r.sop_loss, r.sop_acc, r.lr, r.grad_norm, tok_s, gflops,
                  100 * mfu, FormatDuration(eta).c_str());
    std::string line = buf;
    if (weighting_) {
      // Effective weights of this step (and, for gradnorm, the per-task shared-gradient norms).
      std::snprintf(buf, sizeof(buf), " | %s w_mlm %.4g w_sop %.4g",
                    WeightingSchemeName(weighting_->scheme()), r.w_mlm, r.w_sop);
      line += buf;
      if (weighting_->NeedsGradNorms()) {
        std::snprintf(buf, sizeof(buf), " gnorm_mlm %.4g gnorm_sop %.4g", r.gnorm_mlm, r.gnorm_sop);
        line += buf;
      }
    }
    LOG(INFO) << line;
  }
  // Per-rank phase timers since the last log line, min/max over all ranks (stragglers show as a
  // wide range).
  constexpr int kT = 6;
  double tmax[kT] = {timer_data_, timer_fwd_, timer_bwd_, timer_tp_, timer_dp_, timer_opt_};
  double tmin[kT];
  std::copy(tmax, tmax + kT, tmin);
  world_->AllReduce(std::span<double>(tmax, kT), ReduceOp::kMax);
  world_->AllReduce(std::span<double>(tmin, kT), ReduceOp::kMin);
  timer_data_ = timer_fwd_ = timer_bwd_ = timer_tp_ = timer_dp_ = timer_opt_ = 0;
  if (!opt_.quiet && world_->size() > 1) {
    char buf[320];
    std::snprintf(buf, sizeof(buf),
                  "  timers (s, min-max over %d ranks): data %.3f-%.3f fwd %.3f-%.3f bwd %.3f-%.3f "
                  "tp-comm %.3f-%.3f dp-exposed %.3f-%.3f optimizer %.3f-%.3f",
                  world_->size(), tmin[0], tmax[0], tmin[1], tmax[1], tmin[2], tmax[2], tmin[3],
                  tmax[3], tmin[4], tmax[4], tmin[5], tmax[5]);
    LOG(INFO) << buf;
  }
  std::vector<std::pair<std::string, double>> fields = {
      {"step", static_cast<double>(step_)},
      {"loss", r.loss},
      {"mlm_loss", r.mlm_loss},
      {"mlm_acc", r.mlm_acc},
      {"sop_loss", r.sop_loss},
      {"sop_acc", r.sop_acc},
      {"w_mlm", r.w_mlm},
      {"w_sop", r.w_sop},
      {"lr", r.lr},
      {"grad_norm", r.grad_norm},
      {"tokens_per_s", tok_s},
      {"gflops", gflops},
      {"mfu", mfu},
      {"skipped_steps", static_cast<double>(skipped_steps_)},
      {"consumed_samples", static_cast<double>(consumed_samples_)},
      {"time_data_max", tmax[0]},
      {"time_forward_max", tmax[1]},
      {"time_backward_max", tmax[2]},
      {"time_tp_comm_max", tmax[3]},
      {"time_dp_exposed_max", tmax[4]},
      {"time_optimizer_max", tmax[5]},
      {"time_forward_min", tmin[1]},
      {"time_backward_min", tmin[2]}};
  if (weighting_ && weighting_->NeedsGradNorms()) {
    fields.push_back({"gnorm_mlm", r.gnorm_mlm});
    fields.push_back({"gnorm_sop", r.gnorm_sop});
  }
  if (weighting_ && weighting_->scheme() == WeightingScheme::kUncertainty) {
    fields.push_back({"log_var_mlm", weighting_->log_var()[0]});
    if (num_tasks_ > 1) fields.push_back({"log_var_sop", weighting_->log_var()[1]});
  }
  Record(fields);
  window_seconds_ = 0;
  window_tokens_ = 0;
  window_flops_ = 0;
}

EvalResult Trainer::Evaluate() {
  const auto& t = cfg_.train();
  EvalResult e;
  int64_t n = std::min<int64_t>(t.eval_samples(), data_->eval_samples_available());
  if (n <= 0) return e;
  // Micro-batches are dealt round-robin over DP ranks; sums are all-reduced (TP ranks of a group
  // evaluate the same rows together).
  double acc[6] = {0, 0, 0, 0, 0, 0};  // mlm loss sum, mlm n, mlm correct, sop loss sum, n, correct
  Batch b;
  int64_t index = 0;
  for (int64_t first = 0; first < n; first += t.micro_batch(), ++index) {
    if (index % dp_->size() != dp_->rank()) continue;
    int count = static_cast<int>(std::min<int64_t>(t.micro_batch(), n - first));
    data_->Fill(first, count, /*eval=*/true, &b);
    LossStats s = device_ ? device_->ForwardBackward(b, DropoutContext{}, /*backward=*/false, 1.0f,
                                                     1.0f, 1.0f, /*last_micro_batch=*/false)
                          : model_->ForwardBackward(b, DropoutContext{}, /*backward=*/false);
    acc[0] += s.mlm_loss * s.mlm_count;
    acc[1] += s.mlm_count;
    acc[2] += s.mlm_correct;
    acc[3] += s.sop_loss * s.sop_count;
    acc[4] += s.sop_count;
    acc[5] += s.sop_correct;
  }
  dp_->AllReduce(std::span<double>(acc, 6));
  const double mlm_sum = acc[0], mlm_n = acc[1], mlm_ok = acc[2];
  const double sop_sum = acc[3], sop_n = acc[4], sop_ok = acc[5];
  e.sequences = n;
  e.mlm_loss = mlm_n ? mlm_sum / mlm_n : 0;
  e.mlm_acc = mlm_n ? mlm_ok / mlm_n : 0;
  e.sop_loss = sop_n ? sop_sum / sop_n : 0;
  e.sop_acc = sop_n ? sop_ok / sop_n : 0;
  if (!opt_.quiet) {
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "eval step %lld: mlm loss %.4f acc %.4f sop loss %.4f acc %.4f (%lld seqs)",
                  static_cast<long long>(step_), e.mlm_loss, e.mlm_acc, e.sop_loss, e.sop_acc,
                  static_cast<long long>(e.sequences));
    LOG(INFO) << buf;
  }
  Record({{"step", static_cast<double>(step_)},
          {"eval_mlm_loss", e.mlm_loss},
          {"eval_mlm_acc", e.mlm_acc},
          {"eval_sop_loss", e.sop_loss},
          {"eval_sop_acc", e.sop_acc},
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
    // An async save commits at the first step after every rank's writer is done (one collective
    // flag round per step while it is in flight; see AsyncCheckpointer).
    if (async_ckpt_ && async_ckpt_->pending()) {
      std::string dir = async_ckpt_->TryCommit();
      if (!dir.empty() && !opt_.quiet) LOG(INFO) << "checkpoint " << dir << " committed";
    }
    if (t.eval_every() > 0 && step_ % t.eval_every() == 0 && step_ != t.steps()) Evaluate();
    if (cfg_.checkpoint().every() > 0 && step_ % cfg_.checkpoint().every() == 0)
      SaveCheckpointNow();
  }
  if (step_ == t.steps() && stop == t.steps()) {
    Evaluate();
    SaveCheckpointNow();
  }
  WaitForCheckpoint();
  SyncToHost();
}

void Trainer::WaitForCheckpoint() {
  if (!async_ckpt_ || !async_ckpt_->pending()) return;
  auto t0 = std::chrono::steady_clock::now();
  std::string dir = async_ckpt_->Wait();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!opt_.quiet) LOG(INFO) << "checkpoint " << dir << " committed (waited " << s << " s)";
}

void Trainer::SaveCheckpointNow() {
  if (opt_.checkpoint_dir.empty() || last_saved_step_ == step_) return;
  last_saved_step_ = step_;
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
  st.growth_stage = opt_.growth_stage;
  SaveOptions so;
  so.keep = cfg_.checkpoint().keep();
  so.vocab = opt_.vocab;
  so.rank = world_->rank();
  so.world = world_->size();
  so.tp = tp_->size();
  so.zero_stage = cfg_.optimizer().zero_stage();
  // The weighting scheme's evolving state (uncertainty's log-variances, init's estimate), so a
  // resumed run continues it exactly.
  if (weighting_) so.metadata["multitask_state"] = weighting_->SerializeState();
  if (so.world > 1) {
    so.all_ok = [this](bool ok) {
      int32_t flag = ok ? 1 : 0;
      world_->AllReduce(std::span<int32_t>(&flag, 1), ReduceOp::kMin);
      return flag != 0;
    };
  }
  // ZeRO-1 keeps Adam state only on each rank's share; DP rank 0 writes it, so gather first.
  reducer_->GatherOptimizerState();
  SyncToHost();
  auto t0 = std::chrono::steady_clock::now();
  auto since = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  if (cfg_.checkpoint().async()) {
    if (!async_ckpt_) async_ckpt_ = std::make_unique<AsyncCheckpointer>();
    if (async_ckpt_->pending()) {
      std::string prev = async_ckpt_->Wait();
      if (!opt_.quiet)
        LOG(INFO) << "checkpoint " << prev << " committed (waited " << since() << " s)";
      t0 = std::chrono::steady_clock::now();
    }
    async_ckpt_->Start(opt_.checkpoint_dir, model_->store(), cfg_, st, so);
    if (!opt_.quiet) {
      LOG(INFO) << "checkpoint " << CheckpointStepDir(opt_.checkpoint_dir, st.step)
                << ": snapshot in " << since() << " s, writing in the background";
    }
    return;
  }
  std::string dir = SaveCheckpoint(opt_.checkpoint_dir, model_->store(), cfg_, st, so);
  if (!opt_.quiet) LOG(INFO) << "checkpoint " << dir << " (" << since() << " s)";
}

bool Trainer::ResumeFromLatest() {
  if (opt_.checkpoint_dir.empty()) return false;
  std::string dir = FindLatestCheckpoint(opt_.checkpoint_dir);
  if (dir.empty()) return false;
  LoadedCheckpoint ck = LoadCheckpoint(dir, /*with_optimizer=*/true);
  RestoreInto(ck, &model_->store(), /*with_optimizer=*/true);
  if (device_) device_->UploadState(model_->store());
  if (ck.state.seed != cfg_.train().seed()) {
    LOG(WARNING) << "resuming " << dir << " saved with train.seed " << ck.state.seed
                 << " under train.seed " << cfg_.train().seed()
                 << ": the data order and dropout continue with the new seed";
  }
  if (weighting_) {
    const auto& meta = ck.manifest.metadata();
    auto it = meta.find("multitask_state");
    if (it != meta.end()) {
      weighting_->RestoreState(it->second);
    } else {
      LOG(WARNING) << dir << " has no multitask weighting state (saved with another "
                   << "multitask.weighting?): the " << WeightingSchemeName(weighting_->scheme())
                   << " scheme starts fresh";
    }
  }
  step_ = ck.state.step;
  consumed_samples_ = ck.state.consumed_samples;
  skipped_steps_ = ck.state.skipped_steps;
  opt_.growth_stage = std::max(opt_.growth_stage, ck.state.growth_stage);
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
