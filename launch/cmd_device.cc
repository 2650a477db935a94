// `roformer device`: which compute backends this build has and what devices they see.
#include <iostream>
#include <string>

#include "launch/command.h"
#include "model/device_model.h"
#ifdef ROFORMER_HAVE_CUDA
#include "kernels/cuda/device_query.h"
#endif

namespace roformer {
namespace {

int RunDevice(int, char**) {
  std::cout << "cpu: available\n";
  std::string backends = "cpu";
  for (const std::string& n : RegisteredDeviceModels()) backends += ", " + n;
  std::cout << "train.device backends in this build: " << backends << "\n";
#ifdef ROFORMER_HAVE_CUDA
  std::string devices = cuda::DescribeDevices();
  if (!devices.empty() && devices.back() != '\n') devices += '\n';
  std::cout << "cuda: built in: " << cuda::BuildInfo() << "\n" << devices;
  if (cuda::DeviceCount() > 0)
    std::cout << "axpy self-test max error: " << cuda::AxpySelfTest(1 << 20) << "\n";
  // The CUDA ops are verified by the GPU suite, not here (docs/cuda.md).
  std::cout << "cuda checks: bash tests/gpu/run.sh (op parity vs the CPU kernels, NCCL, benchmark)"
            << "\n";
#else
  std::cout << "cuda: not built (nvcc was not found at configure time)\n";
#endif
  return 0;
}

RegisterCommand reg("device", "list compute backends and devices", "roformer device", &RunDevice);

}  // namespace
}  // namespace roformer
