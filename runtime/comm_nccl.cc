// NCCL communicator (runtime/comm_nccl.h). The whole file is inside ROFORMER_HAVE_NCCL: the core
// library's runtime/*.cc glob compiles it empty, and the roformer_nccl target (CMake's CUDA block)
// compiles it with NCCL.
#ifdef ROFORMER_HAVE_NCCL

#include "runtime/comm_nccl.h"

#include <glog/logging.h>

#include <cstring>
#include <mutex>

#include "runtime/comm_task.h"
#include "runtime/error.h"

namespace roformer {
namespace {

#define ROFORMER_NCCL_CHECK(expr)                                         \
  do {                                                                    \
    const ncclResult_t r_ = (expr);                                       \
    CHECK_EQ(r_, ncclSuccess) << #expr << ": " << ncclGetErrorString(r_); \
  } while (0)
#define ROFORMER_CUDART_CHECK(expr)                                       \
  do {                                                                    \
    const cudaError_t e_ = (expr);                                        \
    CHECK_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorString(e_); \
  } while (0)

ncclDataType_t ToNccl(DType t) {
  switch (t) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kF64:
      return ncclFloat64;
    case DType::kI32:
      return ncclInt32;
    case DType::kI64:
      return ncclInt64;
    case DType::kU8:
      return ncclUint8;
    case DType::kU64:
      return ncclUint64;
  }
  return ncclFloat32;
}

ncclRedOp_t ToNccl(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  return ncclSum;
}

// Host callback at the end of a collective on the stream: marks the task done. Runs on a CUDA
// driver thread, which must not call CUDA; it only touches the task's mutex and condition.
void MarkDone(void* arg) {
  auto* holder = static_cast<std::shared_ptr<CommTask>*>(arg);
  {
    std::lock_guard<std::mutex> lock((*holder)->mu);
    (*holder)->done = true;
  }
  (*holder)->cv.notify_all();
  delete holder;
}

void CheckDevicePointer(const void* p, const std::string& name) {
  if (!p) return;
  cudaPointerAttributes attr{};
  ROFORMER_CUDART_CHECK(cudaPointerGetAttributes(&attr, p));
  CHECK(attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged)
      << "NcclCommunicator '" << name << "' needs device buffers; got a host pointer";
}

}  // namespace

int SelectLocalCudaDevice() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
    Fail("no CUDA device is visible to this process (NCCL backend)");
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &local);
  int local_rank = 0, local_size = 1;
  MPI_Comm_rank(local, &local_rank);
  MPI_Comm_size(local, &local_size);
  MPI_Comm_free(&local);
  if (local_size > devices) {
    LOG(WARNING) << local_size << " ranks on this node share " << devices
                 << " GPUs: NCCL needs one GPU per rank, so communicator creation will fail";
  }
  const int device = local_rank % devices;
  ROFORMER_CUDART_CHECK(cudaSetDevice(device));
  return device;
}

NcclCommunicator::NcclCommunicator(MPI_Comm comm, std::string name, int stream_priority)
    : comm_(comm), name_(std::move(name)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  MPI_Group world_group, group;
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  MPI_Comm_group(comm_, &group);
  std::vector<int> mine(size_);
  ranks_.resize(size_);
  for (int i = 0; i < size_; ++i) mine[i] = i;
  MPI_Group_translate_ranks(group, size_, mine.data(), world_group, ranks_.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  // One unique id per sub-communicator, from its own rank 0, over its own MPI communicator.
  ncclUniqueId id;
  if (rank_ == 0) ROFORMER_NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm_);
  ROFORMER_NCCL_CHECK(ncclCommInitRank(&nccl_, size_, id, rank_));
  ROFORMER_CUDART_CHECK(
      cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, stream_priority));
}

NcclCommunicator::~NcclCommunicator() {
  if (stream_) cudaStreamSynchronize(stream_);
  if (nccl_) ncclCommDestroy(nccl_);
  if (stream_) cudaStreamDestroy(stream_);
  if (comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_NULL) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
}

void NcclCommunicator::AllReduceDevice(const void* in, void* out, size_t count, ncclDataType_t type,
                                       ncclRedOp_t op, cudaStream_t stream) {
  ++seq_;
  ROFORMER_NCCL_CHECK(ncclAllReduce(in, out, count, type, op, nccl_, stream ? stream : stream_));
}

void NcclCommunicator::AllGatherDevice(const void* in, void* out, size_t count, ncclDataType_t type,
                                       cudaStream_t stream) {
  ++seq_;
  ROFORMER_NCCL_CHECK(ncclAllGather(in, out, count, type, nccl_, stream ? stream : stream_));
}

void NcclCommunicator::ReduceScatterDevice(const void* in, void* out, size_t count,
                                           ncclDataType_t type, ncclRedOp_t op,
                                           cudaStream_t stream) {
  ++seq_;
  ROFORMER_NCCL_CHECK(
      ncclReduceScatter(in, out, count, type, op, nccl_, stream ? stream : stream_));
}

void NcclCommunicator::BroadcastDevice(void* buf, size_t count, ncclDataType_t type, int root,
                                       cudaStream_t stream) {
  ++seq_;
  ROFORMER_NCCL_CHECK(ncclBroadcast(buf, buf, count, type, root, nccl_, stream ? stream : stream_));
}

void NcclCommunicator::GroupStart() { ROFORMER_NCCL_CHECK(ncclGroupStart()); }
void NcclCommunicator::GroupEnd() { ROFORMER_NCCL_CHECK(ncclGroupEnd()); }

CommHandle NcclCommunicator::Submit(CollectiveOp op, DType dtype, ReduceOp reduce, void* in,
                                    void* out, int64_t count, int root) {
  CHECK(root >= 0 && root < size_) << "root " << root << " out of range on " << name_;
  auto task = std::make_shared<CommTask>();
  task->op = op;
  task->dtype = dtype;
  task->reduce = reduce;
  task->in = in;
  task->out = out;
  task->count = count;
  task->root = root;
  task->seq = seq_;
  if (op == CollectiveOp::kBarrier) {
    ++seq_;
    ROFORMER_CUDART_CHECK(cudaStreamSynchronize(stream_));
    MPI_Barrier(comm_);
    task->done = true;
    return CommHandle(task);
  }
  CheckDevicePointer(in, name_);
  CheckDevicePointer(out, name_);
  const size_t n = static_cast<size_t>(count);
  const ncclDataType_t type = ToNccl(dtype);
  switch (op) {
    case CollectiveOp::kAllReduce:
      AllReduceDevice(in, out, n, type, ToNccl(reduce));
      break;
    case CollectiveOp::kBroadcast:
      BroadcastDevice(out, n, type, root);
      break;
    case CollectiveOp::kAllGather:
      AllGatherDevice(in, out, n, type);
      break;
    case CollectiveOp::kReduceScatter:
      ReduceScatterDevice(in, out, n, type, ToNccl(reduce));
      break;
    case CollectiveOp::kBarrier:
      break;
  }
  ROFORMER_CUDART_CHECK(
      cudaLaunchHostFunc(stream_, &MarkDone, new std::shared_ptr<CommTask>(task)));
  return CommHandle(task);
}

NcclGrid MakeNcclGrid(int tp, int dp) {
  NcclGrid g;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) Fail("MakeNcclGrid: MPI is not initialised (start under mpirun)");
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (tp <= 0 || dp <= 0 || world_size != tp * dp)
    Fail("MakeNcclGrid: world size ", world_size, " != tp (", tp, ") x dp (", dp, ")");
  g.device = SelectLocalCudaDevice();
  int least = 0, greatest = 0;  // numerically: least = lowest priority, greatest = highest
  ROFORMER_CUDART_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  MPI_Comm world_dup, tp_comm, dp_comm;
  MPI_Comm_dup(MPI_COMM_WORLD, &world_dup);
  MPI_Comm_split(MPI_COMM_WORLD, world_rank / tp, world_rank % tp, &tp_comm);
  MPI_Comm_split(MPI_COMM_WORLD, world_rank % tp, world_rank / tp, &dp_comm);
  g.world = std::make_unique<NcclCommunicator>(world_dup, "world", least);
  g.tp = std::make_unique<NcclCommunicator>(tp_comm, "tp", greatest);
  g.dp = std::make_unique<NcclCommunicator>(dp_comm, "dp", least);
  return g;
}

}  // namespace roformer

#endif  // ROFORMER_HAVE_NCCL
