// NCCL communicator check and all-reduce bandwidth (ctest label gpu, via nccl_allreduce.sh which
// starts one rank per visible GPU under mpirun). Correctness on every rank count: all-reduce
// (fp32 through the typed Communicator interface, bf16 through the stream API), all-gather,
// reduce-scatter and broadcast against values computed on the host. Bandwidth (bus bandwidth as
// nccl-tests defines it: algbw * 2 (n - 1) / n) only means something with >= 2 GPUs.
// Exit codes: 0 all passed, 1 a check failed, 77 no CUDA device (skipped).
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "runtime/comm_nccl.h"

namespace {

#define CK(expr)                                                       \
  do {                                                                 \
    const cudaError_t e_ = (expr);                                     \
    if (e_ != cudaSuccess) {                                           \
      std::fprintf(stderr, "%s: %s\n", #expr, cudaGetErrorString(e_)); \
      MPI_Abort(MPI_COMM_WORLD, 1);                                    \
    }                                                                  \
  } while (0)

int g_rank = 0, g_failures = 0;

void Expect(bool ok, const std::string& what) {
  int all_ok = ok ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (g_rank == 0) std::printf("%s  %s\n", all_ok ? "PASS" : "FAIL", what.c_str());
  if (!all_ok) ++g_failures;
}

template <typename T>
T* DeviceAlloc(size_t n) {
  void* p = nullptr;
  CK(cudaMalloc(&p, n * sizeof(T)));
  return static_cast<T*>(p);
}

void Correctness(roformer::NcclCommunicator& comm) {
  const int r = comm.rank(), n = comm.size();
  // All-reduce through the typed interface on a device span.
  const size_t count = (1 << 20) + 3;
  std::vector<float> h(count);
  for (size_t i = 0; i < count; ++i) h[i] = static_cast<float>(r + 1) + 1e-3f * (i % 97);
  float* d = DeviceAlloc<float>(count);
  CK(cudaMemcpy(d, h.data(), count * 4, cudaMemcpyHostToDevice));
  // The NCCL stream is non-blocking: it does not wait for the legacy stream's copies/memsets.
  CK(cudaDeviceSynchronize());
  comm.AllReduce(std::span<float>(d, count));
  CK(cudaMemcpy(h.data(), d, count * 4, cudaMemcpyDeviceToHost));
  double err = 0;
  for (size_t i = 0; i < count; ++i) {
    const double want = n * (n + 1) / 2.0 + n * 1e-3 * (i % 97);
    err = std::fmax(err, std::fabs(h[i] - want) / want);
  }
  Expect(err < 1e-6, "all-reduce f32 sum, Communicator interface (" + std::to_string(n) +
                         " ranks, max rel err " + std::to_string(err) + ")");

  // bf16 all-reduce on the stream API (small integers: exact in bf16).
  std::vector<__nv_bfloat16> hb(4096);
  for (size_t i = 0; i < hb.size(); ++i) hb[i] = __float2bfloat16(static_cast<float>(i % 8 + r));
  auto* db = DeviceAlloc<__nv_bfloat16>(hb.size());
  CK(cudaMemcpy(db, hb.data(), hb.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaDeviceSynchronize());
  comm.AllReduceDevice(db, db, hb.size(), ncclBfloat16, ncclSum);
  CK(cudaStreamSynchronize(comm.stream()));
  CK(cudaMemcpy(hb.data(), db, hb.size() * 2, cudaMemcpyDeviceToHost));
  bool ok = true;
  for (size_t i = 0; i < hb.size(); ++i)
    ok &= __bfloat162float(hb[i]) == static_cast<float>(n * (i % 8) + n * (n - 1) / 2);
  Expect(ok, "all-reduce bf16 sum, stream API");

  // All-gather and reduce-scatter of per-rank blocks.
  const size_t block = 1000;
  std::vector<float> mine(block, static_cast<float>(r)), all(block * n);
  float* din = DeviceAlloc<float>(block);
  float* dall = DeviceAlloc<float>(block * n);
  CK(cudaMemcpy(din, mine.data(), block * 4, cudaMemcpyHostToDevice));
  CK(cudaDeviceSynchronize());
  comm.AllGather(std::span<const float>(din, block), std::span<float>(dall, block * n));
  CK(cudaMemcpy(all.data(), dall, block * n * 4, cudaMemcpyDeviceToHost));
  ok = true;
  for (int t = 0; t < n; ++t)
    for (size_t i = 0; i < block; ++i) ok &= all[t * block + i] == static_cast<float>(t);
  Expect(ok, "all-gather f32");
  for (int t = 0; t < n; ++t)
    for (size_t i = 0; i < block; ++i) all[t * block + i] = static_cast<float>(t * 10 + r);
  CK(cudaMemcpy(dall, all.data(), block * n * 4, cudaMemcpyHostToDevice));
  CK(cudaDeviceSynchronize());
  comm.ReduceScatter(std::span<const float>(dall, block * n), std::span<float>(din, block));
  CK(cudaMemcpy(mine.data(), din, block * 4, cudaMemcpyDeviceToHost));
  ok = true;
  for (size_t i = 0; i < block; ++i)
    ok &= mine[i] == static_cast<float>(n * r * 10 + n * (n - 1) / 2);
  Expect(ok, "reduce-scatter f32");
  std::vector<float> b(block, static_cast<float>(r == n - 1 ? 42 : -1));
  CK(cudaMemcpy(din, b.data(), block * 4, cudaMemcpyHostToDevice));
  CK(cudaDeviceSynchronize());
  comm.Broadcast(std::span<float>(din, block), n - 1);
  CK(cudaMemcpy(b.data(), din, block * 4, cudaMemcpyDeviceToHost));
  ok = true;
  for (float v : b) ok &= v == 42.0f;
  Expect(ok, "broadcast f32 from the last rank");
  comm.Barrier();
  cudaFree(d);
  cudaFree(db);
  cudaFree(din);
  cudaFree(dall);
}

void Bandwidth(roformer::NcclCommunicator& comm) {
  const int n = comm.size();
  if (g_rank == 0) {
    std::printf("\nNCCL all-reduce bandwidth, %d ranks (bus bw = alg bw * 2(n-1)/n)%s\n", n,
                n < 2 ? ": one GPU, no bandwidth to measure (needs >= 2 GPUs)" : "");
  }
  if (n < 2) return;
  const size_t max_bytes = size_t{1} << 30;
  auto* buf = DeviceAlloc<__nv_bfloat16>(max_bytes / 2);
  CK(cudaMemset(buf, 0x3c, max_bytes));  // non-zero bf16 values (about 0.0115)
  CK(cudaDeviceSynchronize());
  cudaEvent_t t0, t1;
  CK(cudaEventCreate(&t0));
  CK(cudaEventCreate(&t1));
  if (g_rank == 0) std::printf("%12s %10s %12s %12s\n", "bytes", "dtype", "time_us", "busbw_GB/s");
  for (size_t bytes = size_t{1} << 20; bytes <= max_bytes; bytes <<= 2) {
    const size_t count = bytes / 2;
    // ncclAvg keeps the values where they are over repeated in-place reductions.
    for (int i = 0; i < 5; ++i) comm.AllReduceDevice(buf, buf, count, ncclBfloat16, ncclAvg);
    const int iters = bytes >= (size_t{256} << 20) ? 10 : 40;
    CK(cudaEventRecord(t0, comm.stream()));
    for (int i = 0; i < iters; ++i) comm.AllReduceDevice(buf, buf, count, ncclBfloat16, ncclAvg);
    CK(cudaEventRecord(t1, comm.stream()));
    CK(cudaEventSynchronize(t1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, t0, t1));
    const double sec = ms / 1e3 / iters;
    const double busbw = bytes / sec * 2.0 * (n - 1) / n / 1e9;
    if (g_rank == 0) std::printf("%12zu %10s %12.1f %12.1f\n", bytes, "bf16", sec * 1e6, busbw);
  }
  cudaFree(buf);
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&devices);
  if (argc > 1 && std::strcmp(argv[1], "--count-devices") == 0) {
    std::printf("%d\n", err == cudaSuccess ? devices : 0);
    return 0;
  }
  if (err != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "device count 0");
    return 77;
  }
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  {
    const int device = roformer::SelectLocalCudaDevice();
    MPI_Comm world;
    MPI_Comm_dup(MPI_COMM_WORLD, &world);
    roformer::NcclCommunicator comm(world, "world");
    if (g_rank == 0) std::printf("rank 0 on cuda:%d, %d ranks\n", device, comm.size());
    Correctness(comm);
    Bandwidth(comm);
  }
  if (g_rank == 0) std::printf("%d failures\n", g_failures);
  MPI_Finalize();
  return g_failures == 0 ? 0 : 1;
}
