#ifdef ROFORMER_HAVE_CUDA_MODEL

#include "model/cuda/cuda_device_model.h"

#include <cuda_runtime_api.h>
#include <glog/logging.h>

#include <memory>
#include <string>

#include "kernels/cuda/device_query.h"
#include "model/cuda/cuda_grad_reducer.h"
#include "model/cuda/roformer_model_cuda.h"
#include "model/device_model.h"
#include "runtime/error.h"
#ifdef ROFORMER_HAVE_NCCL
#include "runtime/comm_nccl.h"
#endif

namespace roformer {
class NcclCommunicator;  // runtime/comm_nccl.h (NCCL builds only)
}  // namespace roformer

namespace roformer::cuda {
namespace {

void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) Fail("train.device = \"cuda\": ", what, ": ", cudaGetErrorString(e));
}

// Dense datasheet peaks (GFLOP/s) for the MFU denominator: bf16 tensor cores, or plain fp32 (the
// fp32 GEMMs do not use TF32 unless asked). 0 = unknown device: MFU is then not reported.
double DatasheetPeakGflops(const cudaDeviceProp& p, bool bf16) {
  const std::string name = p.name;
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  // H100 PCIe has fewer SMs and lower clocks than the SXM parts (NVIDIA datasheet figures).
  if (has("H100") && has("PCIe")) return bf16 ? 756.5e3 : 51.2e3;
  if (has("H100") || has("H200") || has("GH200")) return bf16 ? 989.4e3 : 66.9e3;
  if (has("A100")) return bf16 ? 312e3 : 19.5e3;
  return 0;
}

class CudaDeviceModel final : public DeviceModel {
 public:
  explicit CudaDeviceModel(const DeviceModelContext& c) : cfg_(*c.cfg) {
    const int tp = c.tp->size(), dp = c.dp->size();
    if (DeviceCount() <= 0) {
      Fail("train.device = \"cuda\": no CUDA device is visible to this process (",
           DescribeDevices(), "); run on a GPU machine or set train.device = \"cpu\"");
    }
    if (tp * dp > 1) {
#ifdef ROFORMER_HAVE_NCCL
      grid_ = MakeNcclGrid(tp, dp);  // selects the node-local GPU
      device_ = grid_.device;
#else
      Fail("train.device = \"cuda\" with parallel.tp x parallel.dp = ", tp * dp,
           " ranks needs NCCL, and this build has none (nccl.h was not found at configure time)");
#endif
    } else {
      device_ = 0;
      Check(cudaSetDevice(device_), "cudaSetDevice");
    }
    Check(cudaGetDeviceProperties(&prop_, device_), "cudaGetDeviceProperties");
    int least = 0, greatest = 0;
    Check(cudaDeviceGetStreamPriorityRange(&least, &greatest), "cudaDeviceGetStreamPriorityRange");
    // Compute between the TP stream (greatest priority: a TP collective blocks compute) and the
    // DP side stream (least: bucket reductions fill the gaps). Numerically greatest <= least.
    Check(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, (least + greatest) / 2),
          "stream");
    // The destructor does not run when a constructor throws: own the stream until the end.
    struct StreamGuard {
      cudaStream_t* s;
      ~StreamGuard() {
        if (s && *s) cudaStreamDestroy(*s);
      }
    } guard{&stream_};
    NcclCommunicator* tp_comm = nullptr;
#ifdef ROFORMER_HAVE_NCCL
    tp_comm = tp > 1 ? grid_.tp.get() : nullptr;
#endif
    model_ = std::make_unique<CudaRoFormerModel>(cfg_.model(), c.host->store(), stream_, tp_comm);
#ifdef ROFORMER_HAVE_NCCL
    if (dp > 1) {
      reducer_ = std::make_unique<CudaGradReducer>(
          model_->infos(), model_->device_grads(), stream_, grid_.dp.get(),
          static_cast<int64_t>(cfg_.parallel().dp_bucket_mb()) << 20, int64_t{1} << 20,
          tp > 1 && cfg_.parallel().gpu_dp_on_tp_stream() ? grid_.tp->stream() : nullptr);
    }
#endif
    peak_ = DatasheetPeakGflops(prop_, cfg_.model().precision() == "bf16");
    guard.s = nullptr;
  }

  ~CudaDeviceModel() override {
#ifdef ROFORMER_HAVE_NCCL
    reducer_.reset();
#endif
    model_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string Describe() const override {
    return "cuda:" + std::to_string(device_) + " (" + prop_.name + ", " + cfg_.model().precision() +
           ")";
  }
  double PeakGflops() const override { return peak_; }
  void UploadState(const ParamStore& store) override { model_->UploadParams(store); }
  void DownloadState(ParamStore* store) override { model_->DownloadParams(store); }
  void ZeroGrads() override { model_->ZeroGrads(); }

  LossStats ForwardBackward(const Batch& batch, const DropoutContext& dropout, bool backward,
                            float grad_scale, float mlm_scale, float sop_scale,
                            bool last_micro_batch) override {
#ifdef ROFORMER_HAVE_NCCL
    if (backward && last_micro_batch && reducer_) {
      model_->SetGradReadyHook([this](const std::vector<size_t>& ix) {
        for (size_t i : ix) reducer_->MarkReady(i);
      });
    }
#endif
    LossStats s =
        model_->ForwardBackward(batch, dropout, backward, grad_scale, mlm_scale, sop_scale);
    model_->SetGradReadyHook({});
    return s;
  }

  void FinishBackward() override {
    // TP fix-ups of partial gradients the hooks did not cover, before the DP buckets they feed.
    model_->FinishGradientsTp();
#ifdef ROFORMER_HAVE_NCCL
    if (reducer_) reducer_->FinishBackward();
#endif
  }
  GradCheck CheckGradients() override { return model_->CheckGradients(); }
  void ApplyAdamW(const AdamWOptions& opt, double lr, int64_t step, double grad_norm) override {
    model_->ApplyAdamW(opt, lr, step, grad_norm);
  }
  double dp_exposed_seconds() const override {
#ifdef ROFORMER_HAVE_NCCL
    return reducer_ ? reducer_->exposed_seconds() : 0.0;
#else
    return 0.0;
#endif
  }

 private:
  config::Config cfg_;
  int device_ = 0;
  cudaDeviceProp prop_{};
  double peak_ = 0;
  cudaStream_t stream_ = nullptr;
#ifdef ROFORMER_HAVE_NCCL
  NcclGrid grid_;
  std::unique_ptr<CudaGradReducer> reducer_;
#endif
  std::unique_ptr<CudaRoFormerModel> model_;
};

}  // namespace

void RegisterCudaDeviceModel() {
  RegisterDeviceModel("cuda", [](const DeviceModelContext& c) -> std::unique_ptr<DeviceModel> {
    return std::make_unique<CudaDeviceModel>(c);
  });
}

}  // namespace roformer::cuda

#endif  // ROFORMER_HAVE_CUDA_MODEL
