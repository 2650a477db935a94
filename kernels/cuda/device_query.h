// CUDA backend entry points available so far (compiled only when nvcc is found).
#pragma once

#include <string>

namespace roformer::cuda {

// "CUDA runtime 13.0 (built with 13.0), cuBLAS 13.1.0, code for sm_90": needs no device.
std::string BuildInfo();

// Number of visible CUDA devices (0 when no driver/device is present; never throws).
int DeviceCount();

// One line per device: name, compute capability, memory; or the CUDA error text.
std::string DescribeDevices();

// Smoke kernel: y = a*x + y on the first device, checked against the host. Returns the max abs
// error, or -1 when no device is present.
double AxpySelfTest(int n);

}  // namespace roformer::cuda
