// A training model whose parameters, gradients and optimizer state live on an accelerator (the
// CUDA backend registers "cuda"). The Trainer keeps the CPU RoFormerModel as the host copy of the
// state: checkpoints, resume and evaluation summaries go through it, and the device model is only
// synchronised with it at those points (UploadState after a restore, DownloadState before a save
// and at the end of Run), so a step never crosses the host-device boundary for parameters.
//
// The backend does the data-parallel gradient reduction itself (NCCL on the GPU): gradients of
// the last micro-batch of a step may start reducing while its backward still runs, and
// FinishBackward completes it. The trainer's CPU GradReducer is not used for a device model.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/batch.h"
#include "model/optimizer.h"
#include "model/roformer_model.h"
#include "runtime/comm.h"
#include "runtime/config.pb.h"
#include "runtime/param_store.h"

namespace roformer {

class DeviceModel {
 public:
  virtual ~DeviceModel() = default;

  // One line for logs: backend, device, precision.
  virtual std::string Describe() const = 0;
  // Dense peak of the device for the model's precision (GFLOP/s), the MFU denominator; 0 = unknown.
  virtual double PeakGflops() const = 0;

  // Weights and, when the store holds them, the Adam moments: host -> device.
  virtual void UploadState(const ParamStore& store) = 0;
  // Device -> host: weights and the Adam moments (zeros before the first update).
  virtual void DownloadState(ParamStore* store) = 0;

  virtual void ZeroGrads() = 0;
  // As RoFormerModel::ForwardBackward: gradients accumulate (+=) on the device, scaled by
  // grad_scale, with mlm_scale / sop_scale weighting the two losses (multitask.weighting; 0 skips
  // that backward). `last_micro_batch`: the step's final micro-batch, whose backward may start the
  // data-parallel reduction of each gradient bucket as soon as that bucket is final.
  virtual LossStats ForwardBackward(const Batch& batch, const DropoutContext& dropout,
                                    bool backward, float grad_scale, float mlm_scale,
                                    float sop_scale, bool last_micro_batch) = 0;
  // Completes the data-parallel reduction: afterwards every DP rank holds the gradients averaged
  // over DP (and TP fix-ups are done).
  virtual void FinishBackward() = 0;
  // Global fp64 L2 norm of the reduced gradients and the first non-finite tensor; identical on
  // every rank. A rank whose local gradient was non-finite makes the norm non-finite everywhere.
  virtual GradCheck CheckGradients() = 0;
  // AdamW (model/optimizer.cc's math) with the clip factor of `grad_norm`.
  virtual void ApplyAdamW(const AdamWOptions& opt, double lr, int64_t step, double grad_norm) = 0;
  // Seconds spent waiting for data-parallel collectives after backward (not hidden), cumulative.
  virtual double dp_exposed_seconds() const { return 0; }
};

// What a backend's factory gets: the resolved config, the host model (its store is the layout and
// the initial state; it is built with the run's TP region), and the CPU communicators of the grid.
struct DeviceModelContext {
  const config::Config* cfg = nullptr;
  RoFormerModel* host = nullptr;
  Communicator* world = nullptr;
  Communicator* tp = nullptr;
  Communicator* dp = nullptr;
};

// The config of the host RoFormerModel for `cfg`: cfg.model(), except that with a device the host
// model never computes, so it is built in fp32 (model.precision = "bf16" would otherwise demand
// bf16 GEMMs of the host CPU). The Trainer and checkpoints keep the real cfg.
config::ModelConfig HostModelConfig(const config::Config& cfg);

using DeviceModelFactory =
    std::function<std::unique_ptr<DeviceModel>(const DeviceModelContext& context)>;

// A backend library registers itself once at start-up (the CUDA build: launch/main.cc calls
// cuda::RegisterCudaDeviceModel). Registering a name twice replaces the factory.
void RegisterDeviceModel(const std::string& device, DeviceModelFactory factory);
// Names registered so far ("cpu" is always valid and never registered: it is the host path).
std::vector<std::string> RegisteredDeviceModels();
// Fail (naming train.device and the registered backends) when this build has no backend called
// `device`: commands call it right after resolving the config, before writing anything.
void RequireDeviceModel(const std::string& device);
// Builds the model for train.device = `device`; Fail as RequireDeviceModel when this build has no
// such backend.
std::unique_ptr<DeviceModel> MakeDeviceModel(const std::string& device,
                                             const DeviceModelContext& context);

}  // namespace roformer
