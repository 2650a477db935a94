// The four Megatron tensor-parallel primitives — the only way model code communicates across the
// TP group (anchors-distributed.md §1.2):
//   CopyToRegion      f: forward identity,   backward all-reduce  (input of a column-parallel layer)
//   ReduceFromRegion  g: forward all-reduce, backward identity    (output of a row-parallel layer)
//   ScatterToRegion     forward split last dim, backward gather
//   GatherFromRegion    forward gather last dim, backward split
// Each has a Forward and a Backward half so an op's backward calls the matching half. With no
// communicator (tp = 1) every primitive is the identity.
#pragma once

#include <cstdint>
#include <span>

namespace roformer {

class Communicator;  // runtime/comm.h (typed collectives; MPI now, NCCL later)

class TpRegion {
 public:
  TpRegion() = default;  // tp = 1
  explicit TpRegion(Communicator* tp_comm);

  int rank() const { return rank_; }
  int size() const { return size_; }

  void CopyToRegionForward(std::span<float>) {}
  void CopyToRegionBackward(std::span<float> grad) { AllReduceSum(grad); }
  void ReduceFromRegionForward(std::span<float> x) { AllReduceSum(x); }
  void ReduceFromRegionBackward(std::span<float>) {}
  // x: rows x (cols*size) full tensor -> local rows x cols slice (out).
  void ScatterToRegionForward(std::span<const float> full, std::span<float> local, int64_t rows);
  void ScatterToRegionBackward(std::span<const float> local_grad, std::span<float> full_grad,
                               int64_t rows);
  void GatherFromRegionForward(std::span<const float> local, std::span<float> full, int64_t rows);
  void GatherFromRegionBackward(std::span<const float> full_grad, std::span<float> local_grad,
                                int64_t rows);

  // Reductions the vocab-parallel cross-entropy needs (max and sum of per-row statistics).
  void AllReduceSum(std::span<float> x);
  void AllReduceMax(std::span<float> x);

 private:
  Communicator* comm_ = nullptr;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace roformer
