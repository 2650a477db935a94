// NCCL implementation of the typed collectives (runtime/comm.h) for DEVICE buffers, plus
// stream-ordered entry points the CUDA model uses directly (no host synchronisation). Built only
// when CMake finds CUDA and NCCL (target roformer_nccl, ROFORMER_HAVE_NCCL).
//
// Bootstrap as llm.c (anchors §2.2): one ncclUniqueId per sub-communicator, created by its rank 0
// and broadcast over the MATCHING MPI communicator (world, tp or dp), then ncclCommInitRank. One
// GPU per rank: the device is the node-local rank (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED))
// modulo the visible device count.
//
// Streams: each communicator owns one stream, created with a priority, so TP collectives can run
// on a high-priority stream and DP bucket reductions on a low-priority side stream that overlaps
// the rest of the backward (anchors §1.2, §2.2). Ordering against compute is the caller's job
// (cudaEventRecord on the compute stream, cudaStreamWaitEvent on stream()), as in llm.c.
#pragma once

#ifdef ROFORMER_HAVE_NCCL

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "runtime/comm.h"

namespace roformer {

// Node-local rank (shared-memory split of MPI_COMM_WORLD) modulo the device count; calls
// cudaSetDevice on it and returns it. Fails (roformer::Error) when no device is visible.
int SelectLocalCudaDevice();

class NcclCommunicator : public Communicator {
 public:
  // Call SelectLocalCudaDevice() first: the NCCL communicator and its stream bind to the current
  // device. Collective over the members of `comm`, which this object takes over (freed in the
  // destructor unless it is MPI_COMM_WORLD). priority: cudaStreamCreateWithPriority's (lower = more
  // urgent; cudaDeviceGetStreamPriorityRange gives the range).
  NcclCommunicator(MPI_Comm comm, std::string name, int stream_priority = 0);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  const std::vector<int>& world_ranks() const override { return ranks_; }
  int64_t sequence() const override { return seq_; }

  cudaStream_t stream() const { return stream_; }
  ncclComm_t nccl() const { return nccl_; }

  // Stream-ordered collectives on device buffers (counts in elements; AllGather/ReduceScatter
  // count per rank block). `stream` null = this communicator's stream. They return at once.
  void AllReduceDevice(const void* in, void* out, size_t count, ncclDataType_t type, ncclRedOp_t op,
                       cudaStream_t stream = nullptr);
  void AllGatherDevice(const void* in, void* out, size_t count, ncclDataType_t type,
                       cudaStream_t stream = nullptr);
  void ReduceScatterDevice(const void* in, void* out, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, cudaStream_t stream = nullptr);
  void BroadcastDevice(void* buf, size_t count, ncclDataType_t type, int root,
                       cudaStream_t stream = nullptr);
  // Brackets several *Device calls into one NCCL launch (per-layer gradient buckets).
  static void GroupStart();
  static void GroupEnd();

 protected:
  // The Communicator interface on device buffers: enqueued on stream(); the handle completes when
  // the stream reaches the end of the collective (cudaLaunchHostFunc), so Wait() also means the
  // data may be read back. Barrier = stream synchronise + MPI_Barrier.
  CommHandle Submit(CollectiveOp op, DType dtype, ReduceOp reduce, void* in, void* out,
                    int64_t count, int root) override;

 private:
  MPI_Comm comm_;
  std::string name_;
  int rank_ = 0, size_ = 1;
  std::vector<int> ranks_;
  int64_t seq_ = 0;
  ncclComm_t nccl_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

// The grid's communicators on NCCL, split exactly as runtime/grid.h (TP innermost: world rank =
// dp_rank * tp + tp_rank). TP gets the highest-priority stream, DP the lowest. MPI must be
// initialised (Grid::Create does it under mpirun). Selects the local device first.
struct NcclGrid {
  int device = -1;
  std::unique_ptr<NcclCommunicator> world, tp, dp;
};
NcclGrid MakeNcclGrid(int tp, int dp);

}  // namespace roformer

#endif  // ROFORMER_HAVE_NCCL
