// RoFormerModel (model/roformer_model.h) on the GPU: the same forward/backward op sequence, op for
// op, with the CUDA kernels (kernels/cuda/ops.h), so a pretraining step can be compared with the
// CPU model tensor by tensor (tests/gpu/model_parity.cc, tests/gpu/model_tp_parity.cc).
// Parameters, gradients and the layout are the CPU ParamStore's (same HF names and offsets, in
// device flat buffers): upload a CPU model's store, run a step, download the gradients.
//
// Tensor parallelism (Megatron, as the CPU model): pass the TP communicator (MakeNcclGrid's tp)
// and the store of a CPU RoFormerModel built with the same TP size and rank. This rank then holds
// its shards only: column-parallel Q/K/V and FFN1, row-parallel attention-out and FFN2, the
// vocab-parallel word embedding, the vocab-parallel tied MLM decoder and cross-entropy. Every
// collective goes through CudaTpRegion (model/cuda/tp_region_cuda.h): NCCL on the TP
// communicator's high-priority stream, ordered against the compute stream with events; the
// input-gradient all-reduce of each column-parallel backward overlaps its weight-gradient GEMM.
// Every TP rank must make the same calls in the same order with the same batch. Without a
// communicator (or with one of size 1) nothing of NCCL is touched.
//
// Scope: ForwardBackward only (no Infer, no encoder/head split); model.precision "fp32" (fp32
// activations) or "bf16" (bf16 activations and GEMM operands, and bf16 TP all-reduces of them;
// fp32 master weights, gradients, statistics and accumulation). Deterministic: cuBLAS in
// deterministic mode, the embedding backward grouped by id, no float atomics on shared elements,
// so a step is bit-reproducible on the same GPUs.
//
// Built only with CUDA (target roformer_cuda_model); the .cc files are wholly inside
// ROFORMER_HAVE_CUDA_MODEL so the core library's model/ glob compiles them empty.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/batch.h"
#include "model/optimizer.h"
#include "model/roformer_model.h"
#include "runtime/config.pb.h"
#include "runtime/param_store.h"

namespace roformer {
class NcclCommunicator;  // runtime/comm_nccl.h (builds with NCCL only)
}

namespace roformer::cuda {

class CudaRoFormerModel {
 public:
  // `layout` is the store of a CPU RoFormerModel built from the same cfg with the same TP size
  // and rank as `tp` (tp = 1 when `tp` is null or of size 1): names, offsets and current values
  // (and the Adam moments when the store has them, see UploadParams) are taken from it; Fail
  // otherwise. `stream` is the compute stream; it and `tp` must outlive the model (the destructor
  // synchronises both streams). The current device must be the one `stream` and `tp` live on.
  CudaRoFormerModel(const config::ModelConfig& cfg, const ParamStore& layout, cudaStream_t stream,
                    NcclCommunicator* tp = nullptr);
  ~CudaRoFormerModel();
  CudaRoFormerModel(const CudaRoFormerModel&) = delete;
  CudaRoFormerModel& operator=(const CudaRoFormerModel&) = delete;

  // Device master weights (and the bf16 copy) := host. When the store holds Adam moments
  // (adam_m/adam_v of size() elements) they are uploaded too, allocating the device moments
  // first if needed, so a model built from a checkpoint's store resumes with its m and v.
  void UploadParams(const ParamStore& store);
  // Weights, and the moments when both the device (after EnsureOptimizerState, UploadParams with
  // moments, or a step) and the store hold them. Synchronises the compute stream.
  void DownloadParams(ParamStore* store) const;
  void DownloadGrads(ParamStore* store) const;  // synchronises the compute stream
  // Zeroes the device gradients (stream-ordered) and starts a new step for the TP fix-up state.
  void ZeroGrads();

  // As RoFormerModel::ForwardBackward: gradients ACCUMULATE (+=) into the device gradients,
  // scaled by grad_scale (mlm_scale / sop_scale weight the two losses; 0 skips that backward).
  // Returns after the step finished on the device (the loss is read back).
  LossStats ForwardBackward(const Batch& batch, const DropoutContext& dropout, bool backward,
                            float grad_scale = 1.0f, float mlm_scale = 1.0f,
                            float sop_scale = 1.0f);

  // As RoFormerModel::SetGradReadyHook: during a ForwardBackward with backward, called on the
  // host thread with the store indices (infos()) of each group of tensors whose gradients are
  // final for this micro-batch, in the CPU model's groups and order: the heads (cls.*, sop.*),
  // the final LayerNorm (pre-LN), each layer from the top, the embeddings. It runs right after
  // the kernels that finish the group were ENQUEUED on stream(), not completed: a consumer on
  // another stream must order itself after them (cudaEventRecord on stream(), then
  // cudaStreamWaitEvent on its own). Set it for the last micro-batch of a step only; an empty
  // function disables it.
  // With TP > 1, gradients that are partial over TP (TpGradStateOf == kPartial) are summed over
  // TP for the group (one packed all-reduce, enqueued on stream() before the hook runs), so the
  // hook always sees TP-complete gradients; FinishGradientsTp then skips them. In the current
  // layout (no sequence parallelism) no tensor is partial, so this issues nothing.
  void SetGradReadyHook(std::function<void(const std::vector<size_t>& infos_indices)> hook);

  // RoFormerModel::FinishGradientsTp: once per optimizer step, after the last micro-batch and
  // before the DP reduction and the grad norm: sums over TP every gradient TpGradStateOf reports
  // partial (and that the grad-ready hook path has not summed already this step), packed in store
  // order into one all-reduce, stream-ordered on stream(). No-op with tp = 1, and (no tensor is
  // partial today) with any TP size; derived from the placements, so a new one is not forgotten.
  void FinishGradientsTp();

  // The optimizer on the device, in two halves the trainer can call separately (a DP reduction
  // may run in between):
  // CheckGradients: model/optimizer.h's CheckGradients over the device gradients: fp64 global
  // norm through a fixed tree, first non-finite tensor. With TP, the sharded tensors' sums of
  // squares are all-reduced over TP and the replicated ones counted once (runtime/tp_region.h's
  // TpGlobalSumSquares), and the first non-finite tensor is the lowest store index over the TP
  // group: the result is identical on every TP rank. Synchronises the compute stream.
  GradCheck CheckGradients();
  // AdamW (model/optimizer.cc: torch order, clip factor min(1, clip / (grad_norm + 1e-6)) from
  // the given norm) on the fp32 master weights and moments, refreshing the bf16 weight copy.
  // `step` is the 1-based update count. Enqueued on stream(); returns without waiting.
  void ApplyAdamW(const AdamWOptions& opt, double lr, int64_t step, double grad_norm);
  // CheckGradients, then ApplyAdamW when finite (no update otherwise: the trainer's skip rule).
  // Returns after the update finished on the device.
  GradCheck AdamWStep(const AdamWOptions& opt, double lr, int64_t step);
  // Allocates the device Adam moments (zero, as a fresh CPU store's) and the grad-norm state if
  // not allocated yet. ApplyAdamW, CheckGradients and UploadParams call it.
  void EnsureOptimizerState();

  const ModelDims& dims() const;
  // The layout's tensors (names, placements, offsets): the indices the grad-ready hook passes.
  const std::vector<ParamInfo>& infos() const;
  cudaStream_t stream() const;  // the compute stream
  float* device_params();
  float* device_grads();
  int64_t size() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace roformer::cuda
