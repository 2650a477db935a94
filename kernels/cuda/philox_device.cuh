// Philox4x32-10 usable from device and host code, bit-identical to runtime/philox.h (which stays
// the reference and is not changed): a dropout keep bit drawn here equals the CPU backend's for
// the same (key, stream, logical index), so masks match across backends, TP layouts and
// recomputation. tests/gpu/cuda_host_test.cc checks the host path of this file against
// runtime/philox.h; tests/gpu/op_parity.cu checks the device path against the CPU dropout kernel.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define ROFORMER_HD __host__ __device__ __forceinline__
#else
#define ROFORMER_HD inline
#endif

namespace roformer::cuda {

struct PhiloxWords {
  uint32_t w[4];
};

ROFORMER_HD uint32_t MulHi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// Same word order as roformer::Philox4x32(counter_hi, counter_lo, key).
ROFORMER_HD PhiloxWords PhiloxBlock(uint64_t counter_hi, uint64_t counter_lo, uint64_t key) {
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi0 = MulHi32(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = MulHi32(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return PhiloxWords{{c0, c1, c2, c3}};
}

// runtime/philox.h's U32ToUniform01f: 24 bits -> [0, 1), exact in float.
ROFORMER_HD float WordToUniform(uint32_t x) { return static_cast<float>(x >> 8) * 0x1.0p-24f; }

// Element `index` of stream `stream`: word index % 4 of block (stream, index / 4), as
// runtime/philox.h's WordFromCounter.
ROFORMER_HD uint32_t WordAt(uint64_t key, uint64_t stream, uint64_t index) {
  const PhiloxWords b = PhiloxBlock(stream, index >> 2, key);
  return b.w[index & 3];
}

ROFORMER_HD bool KeepAt(uint64_t key, uint64_t stream, uint64_t index, float p) {
  return WordToUniform(WordAt(key, stream, index)) >= p;
}

// The dropout kernels' unit of work: Philox block j of the stream covers logical indices
// 4j .. 4j+3; of those, the ones inside local row r (logical [base, base + cols) with base =
// r * cols_global + col_offset) are served with f(local col, keep). Blocks first..last of
// DropoutRowBlocks cover a row exactly once; a row may start and end mid-block (any cols_global,
// col_offset), so neighbouring rows can share a block and each draws it for its own words.
struct DropoutRowBlocks {
  uint64_t base, first, last;
};
ROFORMER_HD DropoutRowBlocks RowBlocks(int64_t row, int64_t cols, int64_t cols_global,
                                       int64_t col_offset) {
  const uint64_t base = static_cast<uint64_t>(row * cols_global + col_offset);
  return {base, base >> 2, (base + static_cast<uint64_t>(cols) - 1) >> 2};
}
template <typename F>
ROFORMER_HD void ForBlockElements(uint64_t key, uint64_t stream, float p, uint64_t base,
                                  int64_t cols, uint64_t j, F&& f) {
  const PhiloxWords words = PhiloxBlock(stream, j, key);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int w = 0; w < 4; ++w) {
    const uint64_t idx = 4 * j + static_cast<uint64_t>(w);
    if (idx < base || idx >= base + static_cast<uint64_t>(cols)) continue;
    f(static_cast<int64_t>(idx - base), WordToUniform(words.w[w]) >= p);
  }
}

}  // namespace roformer::cuda
