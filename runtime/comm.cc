#include "runtime/comm.h"

#include <glog/logging.h>

#include <cstring>

#include "runtime/comm_task.h"
#include "runtime/error.h"

namespace roformer {

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kF64:
      return "f64";
    case DType::kI32:
      return "i32";
    case DType::kI64:
      return "i64";
    case DType::kU8:
      return "u8";
    case DType::kU64:
      return "u64";
  }
  return "?";
}

int64_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF64:
    case DType::kI64:
    case DType::kU64:
      return 8;
    case DType::kU8:
      return 1;
  }
  return 0;
}

const char* CollectiveName(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::kAllReduce:
      return "AllReduce";
    case CollectiveOp::kBroadcast:
      return "Broadcast";
    case CollectiveOp::kAllGather:
      return "AllGather";
    case CollectiveOp::kReduceScatter:
      return "ReduceScatter";
    case CollectiveOp::kBarrier:
      return "Barrier";
  }
  return "?";
}

void Communicator::CheckSizes(CollectiveOp op, size_t block, size_t total) const {
  CHECK_EQ(block * static_cast<size_t>(size()), total)
      << CollectiveName(op) << " on " << name() << ": buffer sizes " << block << " x " << size()
      << " != " << total;
}

void CommHandle::Wait() {
  if (!task_) return;
  std::unique_lock<std::mutex> lock(task_->mu);
  task_->cv.wait(lock, [&] { return task_->done; });
}

bool CommHandle::Done() const {
  if (!task_) return true;
  std::lock_guard<std::mutex> lock(task_->mu);
  return task_->done;
}

CommWorker::CommWorker(std::function<void(CommTask&)> run)
    : run_(std::move(run)), thread_([this] { Loop(); }) {}

CommWorker::~CommWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void CommWorker::Push(std::shared_ptr<CommTask> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void CommWorker::Loop() {
  for (;;) {
    std::shared_ptr<CommTask> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop requested and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    run_(*task);
    {
      std::lock_guard<std::mutex> lock(task->mu);
      task->done = true;
    }
    task->cv.notify_all();
  }
}

namespace {

class LocalCommunicator : public Communicator {
 public:
  LocalCommunicator(std::string name, int world_rank)
      : name_(std::move(name)), ranks_{world_rank} {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  const std::vector<int>& world_ranks() const override { return ranks_; }
  int64_t sequence() const override { return seq_; }

 protected:
  CommHandle Submit(CollectiveOp op, DType dtype, ReduceOp, void* in, void* out, int64_t count,
                    int root) override {
    CHECK(root == 0) << "root " << root << " out of range on " << name_;
    ++seq_;
    if (in != out && count > 0 && op != CollectiveOp::kBarrier) {
      std::memcpy(out, in, static_cast<size_t>(count * DTypeSize(dtype)));
    }
    return CommHandle();
  }

 private:
  std::string name_;
  std::vector<int> ranks_;
  int64_t seq_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> MakeLocalCommunicator(const std::string& name, int world_rank) {
  return std::make_unique<LocalCommunicator>(name, world_rank);
}

}  // namespace roformer
