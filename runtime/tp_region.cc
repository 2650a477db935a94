#include "runtime/tp_region.h"

#include <glog/logging.h>

#include <algorithm>

namespace roformer {

// Communicator arrives with the distributed-training work; until then only tp = 1 exists.
TpRegion::TpRegion(Communicator* tp_comm) : comm_(tp_comm) {
  CHECK(tp_comm == nullptr) << "tensor parallelism needs runtime/comm.h (not built yet)";
}

void TpRegion::AllReduceSum(std::span<float>) { CHECK_EQ(size_, 1); }
void TpRegion::AllReduceMax(std::span<float>) { CHECK_EQ(size_, 1); }

void TpRegion::ScatterToRegionForward(std::span<const float> full, std::span<float> local,
                                      int64_t) {
  CHECK_EQ(size_, 1);
  std::copy(full.begin(), full.end(), local.begin());
}
void TpRegion::ScatterToRegionBackward(std::span<const float> local_grad,
                                       std::span<float> full_grad, int64_t) {
  CHECK_EQ(size_, 1);
  std::copy(local_grad.begin(), local_grad.end(), full_grad.begin());
}
void TpRegion::GatherFromRegionForward(std::span<const float> local, std::span<float> full,
                                       int64_t) {
  CHECK_EQ(size_, 1);
  std::copy(local.begin(), local.end(), full.begin());
}
void TpRegion::GatherFromRegionBackward(std::span<const float> full_grad,
                                        std::span<float> local_grad, int64_t) {
  CHECK_EQ(size_, 1);
  std::copy(full_grad.begin(), full_grad.end(), local_grad.begin());
}

}  // namespace roformer
