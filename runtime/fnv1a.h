// FNV-1a 64-bit hash: names → RNG streams (initialisation, growth splits) and cheap fingerprints
// of raw buffers (TP replication checks). Stable across platforms, so it may key saved state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace roformer {

inline constexpr uint64_t kFnv1aOffset = 0xcbf29ce484222325ull;

// Continues hash `h` over `n` bytes.
inline uint64_t Fnv1a64(const void* data, size_t n, uint64_t h = kFnv1aOffset) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

inline uint64_t Fnv1a64(std::string_view s) { return Fnv1a64(s.data(), s.size()); }

}  // namespace roformer
