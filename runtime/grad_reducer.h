// Data-parallel gradient reduction with compute/communication overlap, and ZeRO-1 (sharded
// optimizer step). See docs/distributed.md for the design.
//
// Buckets are contiguous ranges of the ParamStore's flat grad buffer taken in REVERSE declaration
// order (the model declares tensors in forward order, so backward finishes the last ones first).
// Bucket 0 is small (first_bucket_bytes, PyTorch DDP's 1 MiB idea) so communication starts early;
// the rest hold up to bucket_bytes. A tensor is split across buckets only when it alone is larger
// than bucket_bytes.
//
// Per step, on the thread that runs backward:
//   reducer.MarkReady("...")  for each tensor whose gradient is final (any order);
//   reducer.FinishBackward(); // launches what is left, waits, accounts exposed comm time
//   double norm = reducer.GlobalGradNorm();   // non-finite on EVERY rank if any rank had a NaN/Inf
//   if (std::isfinite(norm)) {
//     zero_stage 0: AdamWStep(store, opt, lr, step, norm);      // grads are already averaged
//     zero_stage 1: reducer.OptimizerStepZero1(opt, lr, step, norm);
//   }
// Collectives are launched strictly in bucket order whatever order MarkReady is called in, so every
// rank issues the same collective sequence on the DP communicator (a prerequisite for correctness
// and for not hanging). With gradient accumulation, call MarkReady/FinishBackward on the last
// micro-batch only (the grad buffer accumulates locally before that).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/optimizer.h"
#include "runtime/comm.h"
#include "runtime/grad_buckets.h"
#include "runtime/param_store.h"

namespace roformer {

struct GradReducerOptions {
  int64_t bucket_bytes = 25 << 20;       // PyTorch DDP's kDefaultBucketBytesCap
  int64_t first_bucket_bytes = 1 << 20;  // DDP's kDefaultFirstBucketBytes
  int zero_stage = 0;                    // 0: all-reduce grads; 1: reduce-scatter + sharded AdamW
  bool average = true;                   // divide by the DP size (pre-scaled, see grad_reducer.cc)
};

// A flat-buffer element range [begin, end).
struct FlatRange {
  int64_t begin = 0;
  int64_t end = 0;
};

class GradReducer {
 public:
  // `store` must be allocated; `dp` is the data-parallel communicator (size 1 is fine: no
  // collectives are issued). Both must outlive the reducer. All methods are called from one thread.
  GradReducer(ParamStore* store, Communicator* dp, GradReducerOptions options = {});
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // Backward finished this tensor's gradient (it must not be written again this step). Launches
  // every bucket that is now complete and whose predecessors have all been launched. Marking a
  // tensor twice in one step is a programmer error (CHECK).
  void MarkReady(const std::string& tensor_name);
  void MarkReady(size_t info_index);  // index into store->infos()

  // Launches the remaining buckets (tensors never marked count as ready: unused parameters), waits
  // for all collectives and resets the per-step state. Afterwards, zero_stage 0: every rank holds
  // the averaged (or summed) gradients in store->grads(); zero_stage 1: only the OwnedRanges() of
  // store->grads() hold the reduced gradients, the rest is scratch.
  void FinishBackward();

  // Global gradient L2 norm of the reduced gradients, identical on every DP rank. zero_stage 0:
  // computed locally (every rank holds the same gradients; bit-identical to CheckGradients().norm
  // when tp is null); zero_stage 1: sum of squares over the owned ranges, all-reduced over DP. With
  // `tp` (size > 1), TP-sharded tensors are summed over TP and replicated tensors counted once. It
  // is non-finite on every rank when any rank's gradients were: use it to decide a skipped step.
  double GlobalGradNorm(Communicator* tp = nullptr);

  // ZeRO-1: AdamW (model/optimizer.cc math) on the owned ranges only, then all-gathers the
  // parameters so every DP rank holds identical parameters. Adam m/v are only maintained on the
  // owned ranges. CHECK-fails unless zero_stage == 1 and FinishBackward() ran.
  void OptimizerStepZero1(const AdamWOptions& opt, double lr, int64_t step, double grad_norm);

  // ZeRO-1: all-gathers Adam m and v so every DP rank holds the full optimizer state, e.g. before a
  // checkpoint save that writes m/v from DP rank 0 (after a load every rank holds full m/v and the
  // owned ranges are simply used). Collective over DP; no-op for zero_stage 0 or DP size 1.
  void GatherOptimizerState();

  // This rank's gradients were all finite before the last reduction (checked before each bucket's
  // collective, so the rank that produced a NaN/Inf is the one that reports it).
  bool local_grads_finite() const { return nonfinite_tensors_.empty(); }
  // Tensors with a non-finite local gradient in the last step (in bucket order).
  const std::vector<std::string>& nonfinite_tensors() const { return nonfinite_tensors_; }

  // Seconds the last FinishBackward() spent waiting for collectives (communication not hidden
  // behind backward compute), and the seconds the DP communicator was busy with this reducer's
  // collectives in the last step (launch/finish of each collective, FIFO-adjusted).
  double last_exposed_comm_seconds() const { return last_exposed_s_; }
  double last_comm_seconds() const { return last_comm_s_; }
  double total_exposed_comm_seconds() const { return total_exposed_s_; }
  double total_comm_seconds() const { return total_comm_s_; }
  // Seconds the last OptimizerStepZero1() spent in the parameter all-gather.
  double last_param_gather_seconds() const { return last_gather_s_; }

  // Layout introspection (tests, logs, checkpointing of ZeRO-1 optimizer state).
  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  FlatRange bucket_range(int b) const { return {buckets_[b].begin, buckets_[b].end}; }
  // Ranges whose reduced gradients and Adam state this DP rank owns, ascending. zero_stage 0: the
  // whole buffer. zero_stage 1: within every bucket of n elements, rank r owns
  // [r * ceil(n / dp), (r + 1) * ceil(n / dp)) clipped to the bucket (the bucket is padded to a
  // multiple of dp on the wire only, so no tensor needs to be divisible by dp).
  std::vector<FlatRange> OwnedRanges() const;
  // Bucket launch order of the last step (always 0, 1, 2, ...; recorded so tests can prove it).
  const std::vector<int>& last_launch_order() const { return launch_order_; }

 private:
  struct Bucket : GradBucket {  // layout: runtime/grad_buckets.h
    int total_tensors = 0;      // distinct tensors with a piece here
    int pending = 0;            // tensors not yet marked ready this step
    int64_t block = 0;          // ZeRO-1: ceil(n / dp), elements per rank on the wire
    int64_t send_offset = 0;    // ZeRO-1: offset of the padded (block * dp) send staging
    int64_t recv_offset = 0;    // ZeRO-1: offset of the (block) receive staging
    CommHandle handle;
    bool launched = false;
  };

  void BuildBuckets();
  void LaunchReady();
  void Launch(int b);
  FlatRange Owned(const Bucket& bk) const;
  void GatherOwned(float* data);  // all-gathers the owned ranges of a flat buffer over DP
  void ObserverLoop();

  ParamStore* store_;
  Communicator* dp_;
  GradReducerOptions opt_;
  int dp_size_ = 1, dp_rank_ = 0, world_rank_ = 0;
  std::vector<Bucket> buckets_;
  std::vector<std::vector<int>> tensor_buckets_;  // info index -> buckets holding a piece of it
  std::vector<char> ready_;                       // info index -> marked this step
  int next_launch_ = 0;
  bool reduced_ = false;  // FinishBackward ran and no optimizer step consumed the result yet
  std::vector<float> send_, recv_;  // ZeRO-1 staging, sized once
  std::vector<std::string> nonfinite_tensors_;
  std::vector<int> launch_order_;

  // Completion observer: a thread that waits on each launched collective in launch order and
  // timestamps its completion, so communication busy time is known even when the main thread never
  // had to wait for it.
  struct Launched {
    CommHandle handle;
    std::chrono::steady_clock::time_point launched;
  };
  std::mutex obs_mu_;
  std::condition_variable obs_cv_;
  std::vector<Launched> obs_items_;  // one slot per bucket, reused every step
  size_t obs_submitted_ = 0, obs_completed_ = 0;
  double obs_busy_s_ = 0;  // accumulated since the last FinishBackward
  std::chrono::steady_clock::time_point obs_last_done_;
  bool obs_stop_ = false;
  std::thread observer_;

  double last_exposed_s_ = 0, last_comm_s_ = 0, total_exposed_s_ = 0, total_comm_s_ = 0;
  double last_gather_s_ = 0;
};

}  // namespace roformer
