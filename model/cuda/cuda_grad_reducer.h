// Data-parallel gradient reduction on the GPU: the CPU GradReducer's bucket layout
// (runtime/grad_buckets.h) with each bucket all-reduced by NCCL (ncclAvg) on the DP
// communicator's low-priority side stream while the rest of the backward keeps the compute stream
// busy (anchors-distributed.md §1.2, §2.2: llm.c's per-layer reduce on a side stream).
//
// Ordering is by events only, the host never waits inside backward: MarkReady is called after the
// kernels that finish a tensor's gradient were ENQUEUED on the compute stream; when a bucket is
// complete an event is recorded on the compute stream and the DP stream waits on it before the
// all-reduce. Buckets launch strictly in bucket order on every rank whatever order MarkReady comes
// in, so every rank issues the same NCCL sequence. FinishBackward launches the rest and makes the
// compute stream wait for the DP stream, so the optimizer (and the next step's ZeroGrads) see the
// averaged gradients.
//
// A non-finite local gradient is not detected before the collective (that would need a host
// round trip per bucket): ncclAvg spreads it to every rank, so the trainer's norm check skips the
// step everywhere, naming the tensor as seen after the reduction.
//
// Built only with CUDA and NCCL (the file is inside ROFORMER_HAVE_CUDA_MODEL and
// ROFORMER_HAVE_NCCL).
#pragma once

#if defined(ROFORMER_HAVE_CUDA_MODEL) && defined(ROFORMER_HAVE_NCCL)

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "runtime/comm_nccl.h"
#include "runtime/grad_buckets.h"
#include "runtime/param_store.h"

namespace roformer::cuda {

class CudaGradReducer {
 public:
  // `grads`: the device flat gradient buffer laid out as `infos`; `compute`: the stream backward
  // runs on; `dp`: the NCCL data-parallel communicator; `comm_stream`: where the all-reduces run
  // (null = dp's own side stream; parallel.gpu_dp_on_tp_stream passes the TP stream). All must
  // outlive the reducer.
  CudaGradReducer(const std::vector<ParamInfo>& infos, float* grads, cudaStream_t compute,
                  NcclCommunicator* dp, int64_t bucket_bytes, int64_t first_bucket_bytes,
                  cudaStream_t comm_stream = nullptr);
  ~CudaGradReducer();
  CudaGradReducer(const CudaGradReducer&) = delete;
  CudaGradReducer& operator=(const CudaGradReducer&) = delete;

  // Backward has enqueued the last write to this tensor's gradient (index into infos).
  void MarkReady(size_t index);
  // Launches what is left (tensors never marked count as ready), then orders the compute stream
  // after every all-reduce. Returns without waiting on the host.
  void FinishBackward();
  // GPU time the compute stream had to wait for the DP stream after the last backward, summed over
  // steps (read from events, so it synchronises on the previous step's events only).
  double exposed_seconds();
  int num_buckets() const { return static_cast<int>(buckets_.size()); }

 private:
  void LaunchReady();
  void Launch(int b);

  float* grads_;
  cudaStream_t compute_;
  NcclCommunicator* dp_;
  cudaStream_t comm_;  // the stream the all-reduces run on
  std::vector<GradBucket> buckets_;
  std::vector<std::vector<int>> tensor_buckets_;
  std::vector<int> pending_;               // per bucket: pieces not yet ready this step
  std::vector<char> ready_;                // per tensor
  std::vector<cudaEvent_t> ready_events_;  // per bucket, timing disabled
  cudaEvent_t backward_done_ = nullptr, reduced_ = nullptr;  // timed
  int next_launch_ = 0;
  bool timing_pending_ = false;
  double exposed_s_ = 0;
};

}  // namespace roformer::cuda

#endif
