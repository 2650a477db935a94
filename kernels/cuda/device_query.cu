#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <vector>

#include "kernels/cuda/device_query.h"
#include "kernels/cuda/ops.h"

namespace roformer::cuda {
namespace {

__global__ void AxpyKernel(int n, float a, const float* x, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

}  // namespace

std::string BuildInfo() {
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  int major = 0, minor = 0, patch = 0;
  cublasGetProperty(MAJOR_VERSION, &major);
  cublasGetProperty(MINOR_VERSION, &minor);
  cublasGetProperty(PATCH_LEVEL, &patch);
  std::ostringstream os;
  os << "CUDA runtime " << runtime / 1000 << "." << (runtime % 1000) / 10 << " (built with "
     << CUDART_VERSION / 1000 << "." << (CUDART_VERSION % 1000) / 10 << "), cuBLAS " << major << "."
     << minor << "." << patch;
#ifdef ROFORMER_CUDA_ARCHS
  os << ", code for sm_" << ROFORMER_CUDA_ARCHS;
#endif
  return os.str();
}

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

std::string DescribeDevices() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) return std::string("no CUDA device: ") + cudaGetErrorString(err);
  std::ostringstream os;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, i);
    os << "cuda:" << i << " " << p.name << " sm_" << p.major << p.minor << " "
       << (p.totalGlobalMem >> 20) << " MiB\n";
  }
  return os.str();
}

double AxpySelfTest(int n) {
  if (DeviceCount() == 0) return -1;
  std::vector<float> x(n), y(n), ref(n);
  for (int i = 0; i < n; ++i) {
    x[i] = std::sin(0.1f * i);
    y[i] = std::cos(0.07f * i);
    ref[i] = 1.5f * x[i] + y[i];
  }
  float *dx = nullptr, *dy = nullptr;
  cudaMalloc(&dx, n * sizeof(float));
  cudaMalloc(&dy, n * sizeof(float));
  cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(dy, y.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  AxpyKernel<<<(n + 255) / 256, 256>>>(n, 1.5f, dx, dy);
  cudaMemcpy(y.data(), dy, n * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(dx);
  cudaFree(dy);
  double err = 0;
  for (int i = 0; i < n; ++i) err = std::fmax(err, std::fabs(y[i] - ref[i]));
  return err;
}

}  // namespace roformer::cuda

namespace roformer::cuda {

void CheckCuda(cudaError_t err, const char* what, const char* file, int line) {
  if (err == cudaSuccess) return;
  std::fprintf(stderr, "CUDA error at %s:%d: %s: %s (%s)\n", file, line, what,
               cudaGetErrorString(err), cudaGetErrorName(err));
  std::abort();
}

}  // namespace roformer::cuda
