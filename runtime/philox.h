// Philox4x32-10 counter-based RNG (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11; the generator behind cuRAND's Philox and JAX/PyTorch's CUDA RNG). A random value is a pure
// function of (key, counter), so any sample, rank or thread can produce its own stream without
// shared state: the data pipeline keys masking by (seed, sample index) and resumes from a counter.
// Known-answer vectors (Random123 kat_vectors) are checked in tests/unit/pretrain_samples_test.cc.
#pragma once

#include <array>
#include <cstdint>

namespace roformer {

// Raw block function: 4x32-bit counter, 2x32-bit key, 10 rounds.
inline std::array<uint32_t, 4> Philox4x32Raw(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kW0;
    k[1] += kW1;
  }
  return c;
}

// counter = (hi, lo) as a 128-bit value, key as 64 bits; words are little-endian
// (c[0] = low 32 bits of lo, ..., c[3] = high 32 bits of hi; k[0] = low 32 bits of key).
inline std::array<uint32_t, 4> Philox4x32(uint64_t counter_hi, uint64_t counter_lo, uint64_t key) {
  return Philox4x32Raw({static_cast<uint32_t>(counter_lo), static_cast<uint32_t>(counter_lo >> 32),
                        static_cast<uint32_t>(counter_hi), static_cast<uint32_t>(counter_hi >> 32)},
                       {static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)});
}

// 53 random bits -> [0, 1).
inline double Uniform01(uint64_t key, uint64_t counter_hi, uint64_t counter_lo) {
  const auto r = Philox4x32(counter_hi, counter_lo, key);
  const uint64_t bits = (static_cast<uint64_t>(r[0]) << 21) ^ (r[1] >> 11);
  return static_cast<double>(bits & ((uint64_t{1} << 53) - 1)) * 0x1.0p-53;
}
inline double Uniform01(uint64_t key, uint64_t counter) { return Uniform01(key, 0, counter); }

// A 32-bit word -> float in [0, 1) (24 bits), for kernels that draw one value per word.
inline float U32ToUniform01f(uint32_t x) { return static_cast<float>(x >> 8) * 0x1.0p-24f; }

// Element-indexed draws for kernels (dropout masks, weight init): element `index` of stream
// `stream` is word (index % 4) of block Philox4x32(counter = (stream, index / 4), key), so a
// thread, a TP shard or a recomputation can draw any element without drawing the ones before it.
inline uint32_t WordFromCounter(uint64_t key, uint64_t stream, uint64_t index) {
  return Philox4x32(stream, index >> 2, key)[index & 3];
}
inline float UniformFromCounter(uint64_t key, uint64_t stream, uint64_t index) {
  return U32ToUniform01f(WordFromCounter(key, stream, index));
}
inline float UniformFromCounter(uint64_t key, uint64_t index) {
  return UniformFromCounter(key, 0, index);
}

// SplitMix64 finaliser: combines stream coordinates (step, micro, layer, op, a name hash) into one
// 64-bit stream id; distinct coordinates collide with probability ~2^-64.
inline uint64_t MixStream(uint64_t h, uint64_t v) {
  uint64_t z = h ^ (v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A sequential stream over one (key, stream id) pair: block j of the stream is
// Philox4x32(counter = (stream, j), key). Cheap to create; deterministic in the number of draws.
class PhiloxStream {
 public:
  PhiloxStream(uint64_t key, uint64_t stream) : key_(key), stream_(stream) {}

  uint32_t NextU32() {
    if (used_ == 4) {
      block_ = Philox4x32(stream_, next_block_++, key_);
      used_ = 0;
    }
    return block_[used_++];
  }
  uint64_t NextU64() {
    const uint64_t hi = NextU32();
    return (hi << 32) | NextU32();
  }
  // [0, 1) with 53 bits.
  double NextDouble() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n), n > 0 (Lemire's multiply-shift with rejection: unbiased).
  uint64_t Below(uint64_t n) {
    if (n <= 1) return 0;
    if (n <= 0xFFFFFFFFull) {
      const uint32_t n32 = static_cast<uint32_t>(n);
      uint64_t m = static_cast<uint64_t>(NextU32()) * n32;
      uint32_t low = static_cast<uint32_t>(m);
      if (low < n32) {
        const uint32_t threshold = static_cast<uint32_t>(-n32) % n32;
        while (low < threshold) {
          m = static_cast<uint64_t>(NextU32()) * n32;
          low = static_cast<uint32_t>(m);
        }
      }
      return m >> 32;
    }
    // Rare 64-bit range: rejection on the smallest covering mask.
    uint64_t mask = n - 1;
    mask |= mask >> 1, mask |= mask >> 2, mask |= mask >> 4, mask |= mask >> 8;
    mask |= mask >> 16, mask |= mask >> 32;
    for (;;) {
      const uint64_t x = NextU64() & mask;
      if (x < n) return x;
    }
  }
  // Uniform integer in [lo, hi] (inclusive), lo <= hi.
  int64_t Range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1));
  }

 private:
  uint64_t key_, stream_;
  uint64_t next_block_ = 0;
  std::array<uint32_t, 4> block_{};
  int used_ = 4;
};

}  // namespace roformer
