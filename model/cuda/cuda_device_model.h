// train.device = "cuda": the Trainer's DeviceModel (model/device_model.h) on one GPU per rank.
// The CudaRoFormerModel holds the weights, gradients and Adam state in device flat buffers; TP
// collectives go through the model's NCCL TP communicator (high-priority stream) and the DP
// gradient reduction through CudaGradReducer on the DP side stream. A single-rank run needs
// neither MPI nor NCCL. Built only with the CUDA backend (target roformer_cuda_model).
#pragma once

namespace roformer::cuda {

// Registers the "cuda" backend with RegisterDeviceModel (called once from launch/main.cc).
void RegisterCudaDeviceModel();

}  // namespace roformer::cuda
