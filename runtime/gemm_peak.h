// Measures this process's sgemm throughput (GFLOP/s) with the BLAS the build links, so MFU is
// reported against a peak measured in the same run on the same threads, not a datasheet number.
#pragma once

namespace roformer {

// Best-of-`reps` GFLOP/s of an n x n x n sgemm (after one warm-up). Takes ~0.2-1 s for n=1024.
double MeasureSgemmPeakGflops(int n = 1024, int reps = 5);

}  // namespace roformer
