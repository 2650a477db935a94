// GPU tensor-parallel primitives (model/cuda/tp_region_cuda.h). The whole file is inside
// ROFORMER_HAVE_CUDA_MODEL: the core library's model/**.cc glob compiles it empty and the
// roformer_cuda_model target compiles it for real. The NCCL calls are inside ROFORMER_HAVE_NCCL
// (the roformer_nccl target's public definition); without NCCL only tp = 1 exists.
#ifdef ROFORMER_HAVE_CUDA_MODEL

#include "model/cuda/tp_region_cuda.h"

#include <type_traits>

#include "kernels/cuda/ops.h"  // ROFORMER_CUDA_CHECK
#include "runtime/error.h"

#ifdef ROFORMER_HAVE_NCCL
#include "runtime/comm_nccl.h"
#endif

namespace roformer::cuda {

namespace {

#ifdef ROFORMER_HAVE_NCCL
template <typename T>
ncclDataType_t NcclType() {
  if constexpr (std::is_same_v<T, float>) {
    return ncclFloat32;
  } else if constexpr (std::is_same_v<T, double>) {
    return ncclFloat64;
  } else if constexpr (std::is_same_v<T, bf16>) {
    return ncclBfloat16;
  } else {
    static_assert(std::is_same_v<T, int32_t>, "unsupported TP collective element type");
    return ncclInt32;
  }
}

ncclRedOp_t NcclOp(TpReduce op) {
  switch (op) {
    case TpReduce::kSum:
      return ncclSum;
    case TpReduce::kMax:
      return ncclMax;
    case TpReduce::kMin:
      return ncclMin;
  }
  return ncclSum;
}
#endif

// Row-strided block copy: dst[r, 0:cols] = src[r, 0:cols] with row pitches in elements.
template <typename T>
void CopyBlock(T* dst, int64_t dst_pitch, const T* src, int64_t src_pitch, int64_t rows,
               int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  ROFORMER_CUDA_CHECK(cudaMemcpy2DAsync(dst, sizeof(T) * dst_pitch, src, sizeof(T) * src_pitch,
                                        sizeof(T) * cols, rows, cudaMemcpyDeviceToDevice, stream));
}

}  // namespace

CudaTpRegion::~CudaTpRegion() {
  if (!active()) return;
  cudaStreamSynchronize(tp_);
  for (cudaEvent_t e : pending_) cudaEventDestroy(e);
  cudaEventDestroy(ready_);
  cudaEventDestroy(done_);
  if (staging_) cudaFree(staging_);
}

void CudaTpRegion::Init(NcclCommunicator* comm, cudaStream_t compute) {
  if (comm_ || tp_) Fail("CudaTpRegion::Init called twice");
  compute_ = compute;
  if (!comm) return;
#ifdef ROFORMER_HAVE_NCCL
  if (comm->size() <= 1) return;  // tp = 1: nothing is created
  comm_ = comm;
  rank_ = comm->rank();
  size_ = comm->size();
  tp_ = comm->stream();
  ROFORMER_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  ROFORMER_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  for (cudaEvent_t& e : pending_)
    ROFORMER_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
#else
  Fail("CudaTpRegion: this build has no NCCL, so tensor parallelism on the GPU is unavailable");
#endif
}

void CudaTpRegion::Begin() {
  ROFORMER_CUDA_CHECK(cudaEventRecord(ready_, compute_));
  ROFORMER_CUDA_CHECK(cudaStreamWaitEvent(tp_, ready_, 0));
}

void CudaTpRegion::End() {
  ROFORMER_CUDA_CHECK(cudaEventRecord(done_, tp_));
  ROFORMER_CUDA_CHECK(cudaStreamWaitEvent(compute_, done_, 0));
}

void CudaTpRegion::Synchronize() {
  if (active()) ROFORMER_CUDA_CHECK(cudaStreamSynchronize(tp_));
}

void* CudaTpRegion::Staging(size_t bytes) {
  if (bytes > staging_bytes_) {
    // The old buffer may still be read by earlier gathers on the TP stream.
    ROFORMER_CUDA_CHECK(cudaStreamSynchronize(tp_));
    if (staging_) ROFORMER_CUDA_CHECK(cudaFree(staging_));
    staging_ = nullptr;
    ROFORMER_CUDA_CHECK(cudaMalloc(&staging_, bytes));
    staging_bytes_ = bytes;
  }
  return staging_;
}

template <typename T>
void CudaTpRegion::AllReduce(T* x, int64_t n, TpReduce op) {
  if (!active() || n <= 0) return;
#ifdef ROFORMER_HAVE_NCCL
  Begin();
  comm_->AllReduceDevice(x, x, static_cast<size_t>(n), NcclType<T>(), NcclOp(op), tp_);
  End();
#endif
}

template <typename T>
TpPending CudaTpRegion::CopyToRegionBackwardAsync(T* grad, int64_t n) {
  TpPending p;
  if (!active() || n <= 0) return p;
#ifdef ROFORMER_HAVE_NCCL
  for (int s = 0; s < kPendingSlots; ++s) {
    if (!busy_[s]) {
      p.slot = s;
      break;
    }
  }
  if (p.slot < 0) Fail("CudaTpRegion: more than ", kPendingSlots, " asynchronous all-reduces");
  Begin();
  comm_->AllReduceDevice(grad, grad, static_cast<size_t>(n), NcclType<T>(), ncclSum, tp_);
  ROFORMER_CUDA_CHECK(cudaEventRecord(pending_[p.slot], tp_));
  busy_[p.slot] = true;
#endif
  return p;
}

void CudaTpRegion::Wait(TpPending& pending) {
  if (pending.slot < 0) return;
  ROFORMER_CUDA_CHECK(cudaStreamWaitEvent(compute_, pending_[pending.slot], 0));
  busy_[pending.slot] = false;
  pending.slot = -1;
}

template <typename T>
void CudaTpRegion::AllGather(const T* in, T* out, int64_t n) {
  if (n <= 0) return;
  if (!active()) {
    if (in != out)
      ROFORMER_CUDA_CHECK(
          cudaMemcpyAsync(out, in, sizeof(T) * n, cudaMemcpyDeviceToDevice, compute_));
    return;
  }
#ifdef ROFORMER_HAVE_NCCL
  Begin();
  comm_->AllGatherDevice(in, out, static_cast<size_t>(n), NcclType<T>(), tp_);
  End();
#endif
}

template <typename T>
void CudaTpRegion::ScatterToRegionForward(const T* full, T* local, int64_t rows, int64_t cols) {
  // Local: no communication, on the compute stream.
  if (!active() && full == local) return;
  CopyBlock(local, cols, full + rank_ * cols, cols * size_, rows, cols, compute_);
}

template <typename T>
void CudaTpRegion::GatherFromRegionForward(const T* local, T* full, int64_t rows, int64_t cols) {
  if (!active()) {
    if (local != full) CopyBlock(full, cols, local, cols, rows, cols, compute_);
    return;
  }
#ifdef ROFORMER_HAVE_NCCL
  if (rows <= 0 || cols <= 0) return;
  const int64_t block = rows * cols;
  T* staging = static_cast<T*>(Staging(sizeof(T) * static_cast<size_t>(block * size_)));
  Begin();
  comm_->AllGatherDevice(local, staging, static_cast<size_t>(block), NcclType<T>(), tp_);
  // staging [size, rows, cols] -> full [rows, size * cols], on the TP stream (FIFO after the
  // gather), before the compute stream is released.
  for (int r = 0; r < size_; ++r)
    CopyBlock(full + r * cols, cols * size_, staging + r * block, cols, rows, cols, tp_);
  End();
#endif
}

template <typename T>
void CudaTpRegion::ScatterToRegionBackward(const T* local_grad, T* full_grad, int64_t rows,
                                           int64_t cols) {
  GatherFromRegionForward(local_grad, full_grad, rows, cols);
}

template <typename T>
void CudaTpRegion::GatherFromRegionBackward(const T* full_grad, T* local_grad, int64_t rows,
                                            int64_t cols) {
  ScatterToRegionForward(full_grad, local_grad, rows, cols);
}

#define ROFORMER_TP_INSTANTIATE(T)                                                        \
  template void CudaTpRegion::AllReduce<T>(T*, int64_t, TpReduce);                        \
  template void CudaTpRegion::AllGather<T>(const T*, T*, int64_t);                        \
  template TpPending CudaTpRegion::CopyToRegionBackwardAsync<T>(T*, int64_t);             \
  template void CudaTpRegion::ScatterToRegionForward<T>(const T*, T*, int64_t, int64_t);  \
  template void CudaTpRegion::ScatterToRegionBackward<T>(const T*, T*, int64_t, int64_t); \
  template void CudaTpRegion::GatherFromRegionForward<T>(const T*, T*, int64_t, int64_t); \
  template void CudaTpRegion::GatherFromRegionBackward<T>(const T*, T*, int64_t, int64_t);
ROFORMER_TP_INSTANTIATE(float)
ROFORMER_TP_INSTANTIATE(bf16)
ROFORMER_TP_INSTANTIATE(double)
ROFORMER_TP_INSTANTIATE(int32_t)
#undef ROFORMER_TP_INSTANTIATE

}  // namespace roformer::cuda

#endif  // ROFORMER_HAVE_CUDA_MODEL
