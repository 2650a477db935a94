#if defined(ROFORMER_HAVE_CUDA_MODEL) && defined(ROFORMER_HAVE_NCCL)

#include "model/cuda/cuda_grad_reducer.h"

#include <glog/logging.h>

#include <algorithm>

#include "runtime/error.h"

namespace roformer::cuda {
namespace {

void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) Fail("CUDA error in ", what, ": ", cudaGetErrorString(e));
}

}  // namespace

CudaGradReducer::CudaGradReducer(const std::vector<ParamInfo>& infos, float* grads,
                                 cudaStream_t compute, NcclCommunicator* dp, int64_t bucket_bytes,
                                 int64_t first_bucket_bytes, cudaStream_t comm_stream)
    : grads_(grads), compute_(compute), dp_(dp), comm_(comm_stream ? comm_stream : dp->stream()) {
  CHECK(grads_ != nullptr && dp_ != nullptr);
  buckets_ = PlanGradBuckets(infos, bucket_bytes, first_bucket_bytes);
  tensor_buckets_ = BucketsOfTensors(buckets_, infos.size());
  ready_.assign(infos.size(), 0);
  pending_.resize(buckets_.size());
  for (size_t b = 0; b < buckets_.size(); ++b)
    pending_[b] = static_cast<int>(buckets_[b].pieces.size());
  ready_events_.resize(buckets_.size());
  for (cudaEvent_t& e : ready_events_)
    Check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  Check(cudaEventCreate(&backward_done_), "cudaEventCreate");
  Check(cudaEventCreate(&reduced_), "cudaEventCreate");
  int64_t largest = 0;
  for (const GradBucket& bk : buckets_) largest = std::max(largest, bk.end - bk.begin);
  LOG(INFO) << "GPU grad reducer: " << buckets_.size() << " buckets (largest " << largest
            << " elements), dp " << dp_->size() << ", NCCL all-reduce (avg) on the "
            << (comm_ == dp_->stream() ? "DP side stream" : "TP stream");
}

CudaGradReducer::~CudaGradReducer() {
  // Collectives of an abandoned step may still read the buffer: let the DP stream drain first.
  cudaStreamSynchronize(comm_);
  for (cudaEvent_t e : ready_events_) cudaEventDestroy(e);
  cudaEventDestroy(backward_done_);
  cudaEventDestroy(reduced_);
}

void CudaGradReducer::MarkReady(size_t index) {
  CHECK_LT(index, ready_.size());
  CHECK(!ready_[index]) << "MarkReady twice in one step: tensor " << index;
  ready_[index] = 1;
  for (int b : tensor_buckets_[index]) --pending_[b];
  LaunchReady();
}

void CudaGradReducer::LaunchReady() {
  while (next_launch_ < num_buckets() && pending_[next_launch_] == 0) Launch(next_launch_++);
}

void CudaGradReducer::Launch(int b) {
  const GradBucket& bk = buckets_[b];
  // The bucket's last gradient kernel is already on the compute stream: the DP stream starts the
  // all-reduce once the compute stream reaches this point, and the compute stream goes on.
  Check(cudaEventRecord(ready_events_[b], compute_), "cudaEventRecord");
  Check(cudaStreamWaitEvent(comm_, ready_events_[b], 0), "cudaStreamWaitEvent");
  float* g = grads_ + bk.begin;
  dp_->AllReduceDevice(g, g, static_cast<size_t>(bk.end - bk.begin), ncclFloat32, ncclAvg, comm_);
}

void CudaGradReducer::FinishBackward() {
  if (timing_pending_) exposed_seconds();  // fold the previous step's events in first
  while (next_launch_ < num_buckets()) Launch(next_launch_++);
  Check(cudaEventRecord(backward_done_, compute_), "cudaEventRecord");
  Check(cudaEventRecord(reduced_, comm_), "cudaEventRecord");
  Check(cudaStreamWaitEvent(compute_, reduced_, 0), "cudaStreamWaitEvent");
  timing_pending_ = true;
  next_launch_ = 0;
  std::fill(ready_.begin(), ready_.end(), 0);
  for (size_t b = 0; b < buckets_.size(); ++b)
    pending_[b] = static_cast<int>(buckets_[b].pieces.size());
}

double CudaGradReducer::exposed_seconds() {
  if (timing_pending_) {
    Check(cudaEventSynchronize(backward_done_), "cudaEventSynchronize");
    Check(cudaEventSynchronize(reduced_), "cudaEventSynchronize");
    float ms = 0;
    // Positive when the last all-reduce ended after the backward: communication not hidden.
    Check(cudaEventElapsedTime(&ms, backward_done_, reduced_), "cudaEventElapsedTime");
    exposed_s_ += std::max(0.0f, ms) / 1e3;
    timing_pending_ = false;
  }
  return exposed_s_;
}

}  // namespace roformer::cuda

#endif
