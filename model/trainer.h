// The pretraining loop: micro-batch gradient accumulation, AdamW with warmup + decay, global
// grad-norm clipping, the non-finite guard, periodic held-out evaluation, progress logs and
// metrics.jsonl, periodic checkpoints and bit-identical resume.
//
// Resume is bit-identical because every input of a step is a pure function of saved state: samples
// of (seed, global sample index), dropout masks of (seed, step, micro, layer, op, element), the lr
// of the step, and the parameters/moments restored exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/batch.h"
#include "model/device_model.h"
#include "model/roformer_model.h"
#include "runtime/checkpoint.h"
#include "runtime/config.pb.h"

namespace roformer {

// Where batches come from (data/ provides the corpus-backed one; tests provide synthetic ones).
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Samples [first, first + count) of the training stream (eval = false) or of the held-out stream.
  virtual void Fill(int64_t first, int count, bool eval, Batch* out) = 0;
  // Number of distinct held-out samples available (0 = no held-out data).
  virtual int64_t eval_samples_available() const = 0;
};

struct TrainerOptions {
  std::string run_dir;          // metrics.jsonl goes here; "" = no files
  std::string checkpoint_dir;   // "" = no checkpoints
  double gemm_peak_gflops = 0;  // for MFU; 0 = not reported
  bool quiet = false;           // no INFO progress lines (tests)
  VocabIdentity vocab;          // recorded in checkpoints
  bool tensorboard = true;      // also write <run_dir>/tensorboard/events.out.tfevents.*
  // Process grid (runtime/grid.h). Null = a single process. The model must have been built with
  // TpRegion(tp). Every rank constructs a Trainer and calls the same methods in the same order;
  // only the rank given a run_dir writes files.
  Communicator* world = nullptr;
  Communicator* tp = nullptr;
  Communicator* dp = nullptr;
  // Staged schedules (model/growth/stage_schedule.h). growth_stage: the stage index written into
  // checkpoints (TrainState::growth_stage; a resumed checkpoint's larger index is kept, so
  // `roformer pretrain` after `roformer grow` carries it on). lr_schedule_start: the step the LR
  // schedule counts from: warmup restarts there and the decay spans train.steps - it. Adam's
  // bias-correction count is not affected (it keeps running across stages).
  int32_t growth_stage = 0;
  int64_t lr_schedule_start = 0;
};

// train.device != "cpu": the steps run on a DeviceModel (model/device_model.h) built by the
// Trainer from the registered backend; the RoFormerModel passed in is the host copy of the state.
// Not combined (Fail at construction): multitask.weighting = "gradnorm" and
// optimizer.zero_stage = 1.

struct EvalResult {
  double mlm_loss = 0, mlm_acc = 0, sop_loss = 0, sop_acc = 0;
  int64_t sequences = 0;
};

struct StepResult {
  int64_t step = 0;  // 0-based index of the optimizer step just taken
  // loss: the objective whose gradient was followed (MLM + SOP by default; with another
  // multitask.weighting, LossWeighting::CombinedLoss, e.g. log L_mlm + log L_sop for realtime).
  double loss = 0, mlm_loss = 0, mlm_acc = 0, sop_loss = 0, sop_acc = 0;
  double lr = 0, grad_norm = 0;
  // Effective multi-task weights w_i (∇ = Σ w_i ∇L_i) and, for gradnorm, the per-task gradient
  // norms over the shared (encoder) parameters (0 otherwise).
  double w_mlm = 1, w_sop = 1, gnorm_mlm = 0, gnorm_sop = 0;
  bool skipped = false;
};

class TensorBoardWriter;
class GradReducer;
class LossWeighting;

class Trainer {
 public:
  Trainer(const config::Config& cfg, RoFormerModel* model, BatchSource* data, TrainerOptions opt);
  ~Trainer();

  // Restores model, optimizer state and counters from the newest complete checkpoint under
  // checkpoint_dir. Returns false when there is none.
  bool ResumeFromLatest();

  // Runs optimizer steps until cfg.train.steps (or `max_steps` more, whichever first; -1 = all).
  void Run(int64_t max_steps = -1);

  // One optimizer step over global_batch / dp sequences (this process's share).
  StepResult Step();

  EvalResult Evaluate();

  // Writes a checkpoint of the current state (no-op without checkpoint_dir, or when this step was
  // already saved). With checkpoint.async it only snapshots the state; the write finishes in the
  // background and commits at a later step, the next save, or WaitForCheckpoint().
  void SaveCheckpointNow();
  // Blocks until an async checkpoint in flight is committed (Run() calls it before returning);
  // re-throws its error. Collective under MPI, like SaveCheckpointNow.
  void WaitForCheckpoint();

  int64_t step() const { return step_; }
  int64_t consumed_samples() const { return consumed_samples_; }
  const std::vector<StepResult>& history() const { return history_; }
  // Copies a device model's weights and Adam moments into the host model (Run does it before it
  // returns; a no-op on the CPU).
  void SyncToHost();
  const DeviceModel* device() const { return device_.get(); }
  // Total seconds this rank waited for DP gradient collectives after backward (not hidden).
  double dp_exposed_seconds() const;
  // Total seconds the DP communicator spent on gradient collectives (0 on a device: not measured).
  double dp_comm_seconds() const;

 private:
  // Multi-task weighting (multitask.*): the micro-batch loop of one step with per-task loss
  // scales, and the gradnorm step (one reduced backward per task, model/multitask.h).
  // Fills batch_ with this DP rank's k-th of num_local micro-batches of the current step and
  // returns its dropout context.
  DropoutContext LoadMicroBatch(int k, int num_local);
  void AccumulateMicroBatches(float mlm_scale, float sop_scale, bool ready_hook, double* sums,
                              int64_t* tokens, double* flops);
  // Adds one micro-batch's losses and counts to the step sums (layout: see Step) and its tokens and
  // FLOPs.
  void AddMicroBatchStats(const LossStats& s, int num_local, double* sums, int64_t* tokens,
                          double* flops) const;
  void GradNormBackward(double* sums, int64_t* tokens, double* flops, StepResult* r);

  // One metrics record: a JSON line in metrics.jsonl and the same scalars in TensorBoard.
  void Record(const std::vector<std::pair<std::string, double>>& fields);
  void LogStep(const StepResult& r, double step_seconds, int64_t tokens);

  config::Config cfg_;
  RoFormerModel* model_;
  BatchSource* data_;
  TrainerOptions opt_;
  int64_t step_ = 0;
  int64_t consumed_samples_ = 0;
  int64_t skipped_steps_ = 0;
  int consecutive_skips_ = 0;
  std::vector<StepResult> history_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  std::unique_ptr<Communicator> local_world_, local_tp_, local_dp_;  // when not distributed
  Communicator* world_ = nullptr;
  Communicator* tp_ = nullptr;
  Communicator* dp_ = nullptr;
  std::unique_ptr<GradReducer> reducer_;
  std::unique_ptr<DeviceModel> device_;  // train.device != "cpu"
  std::string device_bad_tensor_;        // first non-finite gradient of the last device step
  std::unique_ptr<AsyncCheckpointer> async_ckpt_;  // checkpoint.async
  int64_t last_saved_step_ = -1;
  bool progress_line_ = false;  // stderr is a terminal: show a live progress line
  // Per-rank seconds since the last log line: data, forward, backward, exposed TP communication
  // (inside forward/backward), exposed DP communication, optimizer. Reported as min/max over ranks.
  double timer_data_ = 0, timer_fwd_ = 0, timer_bwd_ = 0, timer_tp_ = 0, timer_dp_ = 0,
         timer_opt_ = 0;
  Batch batch_;
  // Multi-task weighting of MLM (task 0) and SOP (task 1, when train.sop). Null when the config
  // is the default unit-weight sum: the step then runs the historical single pass.
  std::unique_ptr<LossWeighting> weighting_;
  int num_tasks_ = 1;
  std::vector<char> shared_;                    // store index -> encoder ("roformer.*") tensor
  std::vector<std::vector<float>> task_grads_;  // gradnorm: reduced gradient of each task
  std::vector<double> task_losses_, task_norms_;
  // Progress accounting between log lines.
  double window_seconds_ = 0;
  int64_t window_tokens_ = 0;
  double window_flops_ = 0;
  double run_seconds_ = 0;
  int64_t run_steps_ = 0;
};

}  // namespace roformer
