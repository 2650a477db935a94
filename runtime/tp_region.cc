#include "runtime/tp_region.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "runtime/param_store.h"

namespace roformer {

TpRegion::TpRegion(Communicator* tp_comm) : comm_(tp_comm) {
  if (comm_) {
    rank_ = comm_->rank();
    size_ = comm_->size();
  }
  CHECK_GE(size_, 1);
  CHECK(rank_ >= 0 && rank_ < size_) << "TP rank " << rank_ << " of " << size_;
}

CommHandle TpRegion::CopyToRegionBackwardAsync(std::span<float> grad) {
  if (!active()) return CommHandle();
  return comm_->AllReduceAsync(grad, ReduceOp::kSum);
}

namespace {
// Adds the scope's wall time to a counter (exposed TP communication).
class BlockedTimer {
 public:
  explicit BlockedTimer(double* acc) : acc_(acc), t0_(std::chrono::steady_clock::now()) {}
  ~BlockedTimer() {
    *acc_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
  double* acc_;
  std::chrono::steady_clock::time_point t0_;
};
}  // namespace

void TpRegion::Wait(CommHandle& handle) {
  if (!handle.valid()) return;
  BlockedTimer t(&blocked_s_);
  handle.Wait();
}

void TpRegion::AllReduceSum(std::span<float> x) {
  if (!active()) return;
  BlockedTimer t(&blocked_s_);
  comm_->AllReduce(x, ReduceOp::kSum);
}
void TpRegion::AllReduceSum(std::span<double> x) {
  if (!active()) return;
  BlockedTimer t(&blocked_s_);
  comm_->AllReduce(x, ReduceOp::kSum);
}
void TpRegion::AllReduceMax(std::span<float> x) {
  if (!active()) return;
  BlockedTimer t(&blocked_s_);
  comm_->AllReduce(x, ReduceOp::kMax);
}

// The typed all-gathers differ only in the element type.
template <typename T>
void TpRegion::AllGatherTyped(std::span<const T> in, std::span<T> out) {
  CHECK_EQ(out.size(), in.size() * static_cast<size_t>(size_));
  if (!active()) {
    std::copy(in.begin(), in.end(), out.begin());
    return;
  }
  BlockedTimer t(&blocked_s_);
  comm_->AllGather(in, out);
}

void TpRegion::AllGather(std::span<const float> in, std::span<float> out) {
  AllGatherTyped(in, out);
}
void TpRegion::AllGather(std::span<const double> in, std::span<double> out) {
  AllGatherTyped(in, out);
}
void TpRegion::AllGather(std::span<const uint64_t> in, std::span<uint64_t> out) {
  AllGatherTyped(in, out);
}

void TpRegion::ScatterToRegionForward(std::span<const float> full, std::span<float> local,
                                      int64_t rows) {
  CHECK_EQ(full.size(), local.size() * static_cast<size_t>(size_));
  if (rows == 0) return;
  CHECK_EQ(local.size() % static_cast<size_t>(rows), 0u);
  const int64_t cols = static_cast<int64_t>(local.size()) / rows;
  // Pure local slicing: the full tensor is replicated, so no communication.
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(local.data() + r * cols, full.data() + (r * size_ + rank_) * cols,
                sizeof(float) * cols);
  }
}

void TpRegion::ScatterToRegionBackward(std::span<const float> local_grad,
                                       std::span<float> full_grad, int64_t rows) {
  GatherFromRegionForward(local_grad, full_grad, rows);
}

void TpRegion::GatherFromRegionForward(std::span<const float> local, std::span<float> full,
                                       int64_t rows) {
  CHECK_EQ(full.size(), local.size() * static_cast<size_t>(size_));
  if (!active()) {
    std::copy(local.begin(), local.end(), full.begin());
    return;
  }
  if (rows == 0) return;
  CHECK_EQ(local.size() % static_cast<size_t>(rows), 0u);
  const int64_t cols = static_cast<int64_t>(local.size()) / rows;
  // The all-gather stacks whole rank blocks [size][rows][cols]; the last-dim layout needs
  // [rows][size][cols], so stage and transpose.
  scratch_.resize(full.size());
  comm_->AllGather(local, std::span<float>(scratch_));
  for (int t = 0; t < size_; ++t) {
    const float* src = scratch_.data() + static_cast<int64_t>(t) * rows * cols;
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(full.data() + (r * size_ + t) * cols, src + r * cols, sizeof(float) * cols);
    }
  }
}

void TpRegion::GatherFromRegionBackward(std::span<const float> full_grad,
                                        std::span<float> local_grad, int64_t rows) {
  ScatterToRegionForward(full_grad, local_grad, rows);
}

double TpGlobalSumSquares(const ParamStore& store, std::span<const float> values, TpRegion& tp) {
  CHECK_EQ(values.size(), static_cast<size_t>(store.size()));
  // [0]: sharded tensors (this rank's shard; summed over TP), [1]: replicated tensors (counted
  // once: identical on every TP rank, so the local value already is the global one).
  double acc[2] = {0, 0};
  for (const ParamInfo& info : store.infos()) {
    double s = 0;
    const float* p = values.data() + info.offset;
    for (int64_t i = 0; i < info.numel; ++i) s += static_cast<double>(p[i]) * p[i];
    acc[info.placement == Placement::kReplicated ? 1 : 0] += s;
  }
  tp.AllReduceSum(std::span<double>(acc, 1));
  return acc[0] + acc[1];
}

}  // namespace roformer
