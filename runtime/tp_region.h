// The four Megatron tensor-parallel primitives — the only way model code communicates across the
// TP group (anchors-distributed.md §1.2):
//   CopyToRegion      f: forward identity,   backward all-reduce  (input of a column-parallel
//   layer) ReduceFromRegion  g: forward all-reduce, backward identity    (output of a row-parallel
//   layer) ScatterToRegion     forward split last dim, backward gather GatherFromRegion    forward
//   gather last dim, backward split
// Each has a Forward and a Backward half so an op's backward calls the matching half. With no
// communicator, or a communicator of size 1, every primitive is the identity and nothing is
// submitted (so tp = 1 runs never touch MPI).
//
// All TP collectives run on the TP communicator's FIFO worker, so every TP rank issues the same
// sequence by construction as long as model code calls these unconditionally (never only on the
// ranks that "have work": a rank whose vocab shard is all padding still joins every collective).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/comm.h"

namespace roformer {

class ParamStore;

class TpRegion {
 public:
  TpRegion() = default;  // tp = 1
  // `tp_comm` (may be null = tp 1) must outlive every model built on this region.
  explicit TpRegion(Communicator* tp_comm);

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool active() const { return size_ > 1; }

  void CopyToRegionForward(std::span<float>) {}
  void CopyToRegionBackward(std::span<float> grad) { AllReduceSum(grad); }
  // Asynchronous f backward: Megatron launches the dgrad all-reduce before the wgrad GEMM so they
  // overlap; the caller must Wait() the handle before reading `grad` (an invalid handle when
  // tp = 1: Wait is then a no-op).
  CommHandle CopyToRegionBackwardAsync(std::span<float> grad);
  // Waits for an asynchronous TP collective, counting the wait as exposed TP communication.
  void Wait(CommHandle& handle);
  // Seconds this rank has spent blocked in TP collectives (synchronous calls and Wait), i.e. TP
  // communication not hidden behind compute. Monotonic; callers take differences.
  double blocked_seconds() const { return blocked_s_; }
  void ReduceFromRegionForward(std::span<float> x) { AllReduceSum(x); }
  void ReduceFromRegionBackward(std::span<float>) {}
  // full: rows x (cols * size) row-major -> local: rows x cols (this rank's column block).
  void ScatterToRegionForward(std::span<const float> full, std::span<float> local, int64_t rows);
  void ScatterToRegionBackward(std::span<const float> local_grad, std::span<float> full_grad,
                               int64_t rows);
  // local: rows x cols -> full: rows x (cols * size), rank r's block at columns [r*cols,
  // (r+1)*cols).
  void GatherFromRegionForward(std::span<const float> local, std::span<float> full, int64_t rows);
  void GatherFromRegionBackward(std::span<const float> full_grad, std::span<float> local_grad,
                                int64_t rows);

  // Raw reductions and gathers for fused statistics (vocab-parallel cross-entropy, grad norms).
  void AllReduceSum(std::span<float> x);
  void AllReduceSum(std::span<double> x);
  void AllReduceMax(std::span<float> x);
  // out.size() == in.size() * size(); rank r's block lands at out[r * in.size()].
  void AllGather(std::span<const float> in, std::span<float> out);
  void AllGather(std::span<const double> in, std::span<double> out);
  void AllGather(std::span<const uint64_t> in, std::span<uint64_t> out);

 private:
  template <typename T>
  void AllGatherTyped(std::span<const T> in, std::span<T> out);
  double blocked_s_ = 0;
  Communicator* comm_ = nullptr;
  int rank_ = 0;
  int size_ = 1;
  std::vector<float> scratch_;  // gather staging (grows once; Infer and tests only)
};

// Sum of squares (double, fixed order) of `values` (a flat buffer laid out like `store`: its grads
// or params) over the whole TP group, counting every logical element once: sharded tensors
// contribute their local shard on every rank (all-reduced), replicated tensors contribute once
// (they are identical on every TP rank). Identical on every TP rank. This is what the global grad
// norm for clipping needs under TP.
double TpGlobalSumSquares(const ParamStore& store, std::span<const float> values, TpRegion& tp);

}  // namespace roformer
