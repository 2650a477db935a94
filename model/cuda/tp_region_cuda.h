// The Megatron tensor-parallel primitives on the GPU (anchors-distributed.md §1.2): the only way
// the CUDA model (model/cuda/roformer_model_cuda.h) communicates across its TP group, as
// runtime/tp_region.h is for the CPU model. Same four operators, same halves:
//   CopyToRegion      f: forward identity, backward all-reduce (column-parallel input)
//   ReduceFromRegion  g: forward all-reduce, backward identity (row-parallel output)
//   ScatterToRegion   forward split last dim, backward all-gather last dim
//   GatherFromRegion  forward all-gather last dim, backward split last dim
// plus raw all-reduce / all-gather for fused statistics (vocab-parallel cross-entropy, grad norm).
//
// Streams. Every collective runs on the TP communicator's own stream (MakeNcclGrid gives TP the
// highest-priority stream) through NcclCommunicator's stream-ordered *Device calls, and is ordered
// against the model's compute stream with two events created once and reused (llm.c's pattern,
// anchors §2.2), never with a host synchronisation:
//   cudaEventRecord(ready, compute); cudaStreamWaitEvent(tp, ready)   // inputs are written
//   nccl collective on tp
//   cudaEventRecord(done, tp); cudaStreamWaitEvent(compute, done)     // outputs may be read
// The synchronous-looking calls below enqueue all of that and return at once: later work on the
// compute stream sees the result. cudaStreamWaitEvent captures the event's most recent record at
// the time of the call, so re-recording the same event for the next collective is safe.
//
// Overlap (Megatron's async dgrad all-reduce, §1.2): CopyToRegionBackwardAsync enqueues the
// all-reduce on the TP stream WITHOUT making the compute stream wait, so the compute stream runs
// the weight-gradient GEMM concurrently; Wait(pending) then makes the compute stream wait for
// that all-reduce (its own event, from a small ring) before the input gradient is read. Between
// the async call and Wait, the compute stream must neither read nor write the buffer.
//
// Every TP rank must call the same primitives in the same order with the same counts (the model
// calls them unconditionally, never only on ranks that "have work"). With no communicator, or a
// communicator of size 1, every primitive is the identity (a local copy for scatter/gather when
// the buffers differ) and nothing of NCCL, and no event, is created or touched.
//
// Element types: float, __nv_bfloat16 (ncclBfloat16: bf16 activations are reduced in bf16),
// double and int32_t (statistics, indices).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace roformer {
class NcclCommunicator;  // runtime/comm_nccl.h (only defined in builds with NCCL)
}

namespace roformer::cuda {

enum class TpReduce { kSum, kMax, kMin };

// An all-reduce enqueued by CopyToRegionBackwardAsync and not yet waited for. Wait() it exactly
// once (it is then reset); a default one (tp inactive) waits for nothing.
struct TpPending {
  int slot = -1;
};

class CudaTpRegion {
 public:
  CudaTpRegion() = default;  // tp = 1
  ~CudaTpRegion();
  CudaTpRegion(const CudaTpRegion&) = delete;
  CudaTpRegion& operator=(const CudaTpRegion&) = delete;

  // Binds the region to `comm` (null or size 1: tp = 1) and the compute stream. Once, before any
  // primitive. `comm` and `compute` must outlive the region; the current device must be the one
  // both belong to. Fails (roformer::Error) with a communicator of size > 1 in a build without
  // NCCL (cannot happen: NcclCommunicator only exists with NCCL).
  void Init(NcclCommunicator* comm, cudaStream_t compute);

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool active() const { return size_ > 1; }
  cudaStream_t compute_stream() const { return compute_; }
  // The TP communicator's stream (null when inactive).
  cudaStream_t tp_stream() const { return tp_; }

  // f (column-parallel input).
  template <typename T>
  void CopyToRegionForward(T*, int64_t) {}
  template <typename T>
  void CopyToRegionBackward(T* grad, int64_t n) {
    AllReduce(grad, n, TpReduce::kSum);
  }
  // f backward, overlapped: see the header comment. At most kPendingSlots outstanding.
  template <typename T>
  TpPending CopyToRegionBackwardAsync(T* grad, int64_t n);
  void Wait(TpPending& pending);

  // g (row-parallel output).
  template <typename T>
  void ReduceFromRegionForward(T* x, int64_t n) {
    AllReduce(x, n, TpReduce::kSum);
  }
  template <typename T>
  void ReduceFromRegionBackward(T*, int64_t) {}

  // Split / gather of the last dimension. full: [rows, cols * size()] row-major; local: [rows,
  // cols], this rank's column block [rank * cols, (rank + 1) * cols). The split is a local strided
  // copy on the compute stream; the gather all-gathers into a staging buffer owned by the region
  // (grown on demand) and rearranges it on the TP stream.
  template <typename T>
  void ScatterToRegionForward(const T* full, T* local, int64_t rows, int64_t cols);
  template <typename T>
  void ScatterToRegionBackward(const T* local_grad, T* full_grad, int64_t rows, int64_t cols);
  template <typename T>
  void GatherFromRegionForward(const T* local, T* full, int64_t rows, int64_t cols);
  template <typename T>
  void GatherFromRegionBackward(const T* full_grad, T* local_grad, int64_t rows, int64_t cols);

  // In place over the TP group, stream-ordered as above.
  template <typename T>
  void AllReduce(T* x, int64_t n, TpReduce op = TpReduce::kSum);
  // out: [size() * n], rank r's block at out + r * n (in may not alias out).
  template <typename T>
  void AllGather(const T* in, T* out, int64_t n);

  // Host waits until everything enqueued on the TP stream finished (before freeing buffers it
  // may still read or write). No-op when inactive.
  void Synchronize();

  static constexpr int kPendingSlots = 4;

 private:
  void Begin();  // the TP stream waits for the compute stream's work so far
  void End();    // the compute stream waits for the TP stream's work so far
  void* Staging(size_t bytes);

  NcclCommunicator* comm_ = nullptr;
  cudaStream_t compute_ = nullptr, tp_ = nullptr;
  int rank_ = 0, size_ = 1;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  cudaEvent_t pending_[kPendingSlots] = {};
  bool busy_[kPendingSlots] = {};
  void* staging_ = nullptr;
  size_t staging_bytes_ = 0;
};

}  // namespace roformer::cuda
