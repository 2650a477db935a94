// RoFormerModel (model/roformer_model.h) on one GPU: the same forward/backward op sequence, op for
// op, with the CUDA kernels (kernels/cuda/ops.h), so one pretraining step can be compared with
// the CPU model tensor by tensor (tests/gpu/model_parity.cc). Parameters, gradients and the
// layout are the CPU ParamStore's (same HF names and offsets, in device flat buffers): upload a
// CPU model's store, run a step, download the gradients.
//
// Scope of this first version: tensor parallel size 1 (TP/DP collectives through
// runtime/comm_nccl.h are not wired in), ForwardBackward only (no Infer, no encoder/head split),
// model.precision "fp32" (fp32 activations) or "bf16" (bf16 activations and GEMM operands, fp32
// master weights, gradients, statistics and accumulation). Deterministic: cuBLAS in deterministic
// mode, the embedding backward grouped by id, no float atomics on shared elements, so a step is
// bit-reproducible on one GPU.
//
// Built only with CUDA (target roformer_cuda_model); the .cc is wholly inside
// ROFORMER_HAVE_CUDA_MODEL so the core library's model/ glob compiles it empty.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "model/batch.h"
#include "model/optimizer.h"
#include "model/roformer_model.h"
#include "runtime/config.pb.h"
#include "runtime/param_store.h"

namespace roformer::cuda {

class CudaRoFormerModel {
 public:
  // `layout` is the store of a CPU RoFormerModel built from the same cfg with tp = 1: names,
  // offsets and current values are taken from it (Fail otherwise). `stream` must outlive the
  // model (the destructor synchronises it).
  CudaRoFormerModel(const config::ModelConfig& cfg, const ParamStore& layout, cudaStream_t stream);
  ~CudaRoFormerModel();
  CudaRoFormerModel(const CudaRoFormerModel&) = delete;
  CudaRoFormerModel& operator=(const CudaRoFormerModel&) = delete;

  // Device master weights (and the bf16 copy) := host; the Adam moments too when the store has
  // them and the device holds them (after the first AdamWStep).
  void UploadParams(const ParamStore& store);
  void DownloadParams(ParamStore* store) const;  // weights, and the moments when both hold them
  void DownloadGrads(ParamStore* store) const;
  void ZeroGrads();

  // The optimizer on the device: model/optimizer.h's CheckGradients (global fp64 norm through a
  // fixed tree, first non-finite tensor) and, when finite, AdamWStep on the fp32 master weights
  // and moments (zero-initialised on the first call, as the CPU store's), refreshing the bf16
  // weight copy. `step` is the 1-based update count. Returns the CPU's GradCheck; no update when
  // a gradient is not finite (the trainer's skip rule).
  GradCheck AdamWStep(const AdamWOptions& opt, double lr, int64_t step);

  // As RoFormerModel::ForwardBackward: gradients ACCUMULATE (+=) into the device gradients,
  // scaled by grad_scale (mlm_scale / sop_scale weight the two losses; 0 skips that backward).
  // Returns after the step finished on the device (the loss is read back).
  LossStats ForwardBackward(const Batch& batch, const DropoutContext& dropout, bool backward,
                            float grad_scale = 1.0f, float mlm_scale = 1.0f,
                            float sop_scale = 1.0f);

  float* device_params();
  float* device_grads();
  int64_t size() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace roformer::cuda
