// Measures this process's sgemm throughput (GFLOP/s) with the GEMM backend in use
// (kernels/cpu/gemm.h: oneDNN or OpenBLAS), so MFU is
// reported against a peak measured in the same run on the same threads, not a datasheet number.
#pragma once

namespace roformer {

// Best-of-`reps` GFLOP/s of an n x n x n sgemm (after one warm-up). Takes ~0.2-1 s for n=1024;
// 20 reps so that at least one lands in a quiet moment on a shared machine.
double MeasureSgemmPeakGflops(int n = 1024, int reps = 20);

}  // namespace roformer
