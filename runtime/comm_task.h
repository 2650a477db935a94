// Internal: one queued collective and the worker-thread machinery shared by the communicator
// implementations. Not for model code (use runtime/comm.h).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "runtime/comm.h"

namespace roformer {

struct CommTask {
  CollectiveOp op = CollectiveOp::kBarrier;
  DType dtype = DType::kU8;
  ReduceOp reduce = ReduceOp::kSum;
  void* in = nullptr;
  void* out = nullptr;
  int64_t count = 0;
  int root = 0;
  int64_t seq = 0;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
};

// Runs tasks in FIFO order on one thread. `run` executes a task (blocking).
class CommWorker {
 public:
  explicit CommWorker(std::function<void(CommTask&)> run);
  ~CommWorker();
  void Push(std::shared_ptr<CommTask> task);

 private:
  void Loop();
  std::function<void(CommTask&)> run_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<CommTask>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

// A single-process communicator (size 1): every collective is a local copy. Used when the program
// was not started by an MPI launcher, and as the TP or DP communicator of size 1.
std::unique_ptr<Communicator> MakeLocalCommunicator(const std::string& name, int world_rank);

}  // namespace roformer
