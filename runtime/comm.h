// Typed collectives. Model and optimizer code never touch MPI (or, later, NCCL) directly: they call
// a Communicator whose methods take std::span<T>, so counts and datatypes cannot disagree with the
// buffers. Every communicator numbers its collectives; the watchdog (runtime/watchdog.h) names a
// stalled one, and the debug mode cross-checks (op, dtype, count) across ranks before each call.
//
// All collectives of one communicator run in FIFO order on that communicator's own worker thread:
// synchronous calls enqueue and wait; asynchronous calls return a handle. This gives real
// communication/compute overlap on the CPU backend (MPI progresses inside the worker's blocking
// call while the main thread keeps computing) and makes the per-communicator order identical on
// every rank by construction.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace roformer {

enum class DType : int { kF32 = 0, kF64 = 1, kI32 = 2, kI64 = 3, kU8 = 4, kU64 = 5 };
enum class ReduceOp : int { kSum = 0, kMax = 1, kMin = 2 };
enum class CollectiveOp : int {
  kAllReduce = 0,
  kBroadcast = 1,
  kAllGather = 2,
  kReduceScatter = 3,
  kBarrier = 4,
};

const char* DTypeName(DType t);
const char* CollectiveName(CollectiveOp op);
int64_t DTypeSize(DType t);

template <typename T>
constexpr DType DTypeOf() {
  if constexpr (std::is_same_v<T, float>)
    return DType::kF32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::kF64;
  else if constexpr (std::is_same_v<T, int32_t>)
    return DType::kI32;
  else if constexpr (std::is_same_v<T, int64_t>)
    return DType::kI64;
  else if constexpr (std::is_same_v<T, uint8_t>)
    return DType::kU8;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return DType::kU64;
  else
    static_assert(sizeof(T) == 0, "unsupported collective element type");
}

// Completion handle of an asynchronous collective. Wait() blocks until the collective finished.
class CommHandle {
 public:
  CommHandle() = default;
  explicit CommHandle(std::shared_ptr<struct CommTask> task) : task_(std::move(task)) {}
  void Wait();
  bool Done() const;
  bool valid() const { return task_ != nullptr; }

 private:
  std::shared_ptr<struct CommTask> task_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "world", "tp", "dp": used in logs and watchdog reports.
  virtual const std::string& name() const = 0;
  // World ranks of this communicator's members, index = rank in this communicator.
  virtual const std::vector<int>& world_ranks() const = 0;

  template <typename T>
  void AllReduce(std::span<T> data, ReduceOp op = ReduceOp::kSum) {
    AllReduceAsync(data, op).Wait();
  }
  template <typename T>
  CommHandle AllReduceAsync(std::span<T> data, ReduceOp op = ReduceOp::kSum) {
    return Submit(CollectiveOp::kAllReduce, DTypeOf<T>(), op, data.data(), data.data(),
                  static_cast<int64_t>(data.size()), 0);
  }
  template <typename T>
  void Broadcast(std::span<T> data, int root) {
    Submit(CollectiveOp::kBroadcast, DTypeOf<T>(), ReduceOp::kSum, data.data(), data.data(),
           static_cast<int64_t>(data.size()), root)
        .Wait();
  }
  // out.size() must be in.size() * size(); rank r's block lands at out[r * in.size()].
  template <typename T>
  void AllGather(std::span<const T> in, std::span<T> out) {
    AllGatherAsync(in, out).Wait();
  }
  template <typename T>
  CommHandle AllGatherAsync(std::span<const T> in, std::span<T> out) {
    CheckSizes(CollectiveOp::kAllGather, in.size(), out.size());
    return Submit(CollectiveOp::kAllGather, DTypeOf<T>(), ReduceOp::kSum, const_cast<T*>(in.data()),
                  out.data(), static_cast<int64_t>(in.size()), 0);
  }
  // in.size() must be out.size() * size(); rank r receives the reduction of block r.
  template <typename T>
  void ReduceScatter(std::span<const T> in, std::span<T> out, ReduceOp op = ReduceOp::kSum) {
    ReduceScatterAsync(in, out, op).Wait();
  }
  template <typename T>
  CommHandle ReduceScatterAsync(std::span<const T> in, std::span<T> out,
                                ReduceOp op = ReduceOp::kSum) {
    CheckSizes(CollectiveOp::kReduceScatter, out.size(), in.size());
    return Submit(CollectiveOp::kReduceScatter, DTypeOf<T>(), op, const_cast<T*>(in.data()),
                  out.data(), static_cast<int64_t>(out.size()), 0);
  }
  void Barrier() {
    Submit(CollectiveOp::kBarrier, DType::kU8, ReduceOp::kSum, nullptr, nullptr, 0, 0).Wait();
  }

  // Collectives issued so far (the sequence number of the next one).
  virtual int64_t sequence() const = 0;

 protected:
  // `count`: elements per rank block (AllGather: of `in`; ReduceScatter: of `out`).
  virtual CommHandle Submit(CollectiveOp op, DType dtype, ReduceOp reduce, void* in, void* out,
                            int64_t count, int root) = 0;

 private:
  void CheckSizes(CollectiveOp op, size_t block, size_t total) const;
};

}  // namespace roformer
