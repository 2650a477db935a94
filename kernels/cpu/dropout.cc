#include "kernels/cpu/dropout.h"

// GCC 12 reports its own AVX-512 intrinsics (_mm512_undefined_*) as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "runtime/philox.h"

namespace roformer {

uint64_t DropoutStreamId(uint64_t step, uint32_t micro, uint32_t layer, uint32_t op) {
  uint64_t h = MixStream(0x64726F706F7574ull /* "dropout" */, step);
  h = MixStream(h, micro);
  h = MixStream(h, layer);
  return MixStream(h, op);
}

bool DropoutKeep(const DropoutSpec& s, int64_t row, int64_t col) {
  const uint64_t idx = static_cast<uint64_t>(row * s.cols_global + s.col_offset + col);
  return UniformFromCounter(s.key, s.stream, idx) >= s.p;
}

namespace {

#if defined(__AVX512F__)
// 32 x 32 -> 64-bit products of each 32-bit lane of a with the constant m (broadcast).
inline void MulHiLo(__m512i a, __m512i m, __m512i* hi, __m512i* lo) {
  const __m512i even = _mm512_mul_epu32(a, m);                        // lanes 0, 2, ... as 64 bits
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);  // lanes 1, 3, ...
  *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

// Philox4x32-10 of the 16 counters (lo = j0 + lane, hi = stream): the words of block j0 + lane
// land in out[4 * lane .. 4 * lane + 3], exactly as Philox4x32(stream, j0 + lane, key).
inline void Philox16(uint64_t stream, uint64_t j0, uint64_t key, uint32_t* out) {
  alignas(64) uint32_t lo32[16], hi32[16];
  for (int i = 0; i < 16; ++i) {
    const uint64_t j = j0 + static_cast<uint64_t>(i);
    lo32[i] = static_cast<uint32_t>(j);
    hi32[i] = static_cast<uint32_t>(j >> 32);
  }
  __m512i c0 = _mm512_load_si512(lo32), c1 = _mm512_load_si512(hi32);
  __m512i c2 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream)));
  __m512i c3 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream >> 32)));
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  for (int round = 0; round < 10; ++round) {
    __m512i hi0, lo0, hi1, lo1;
    MulHiLo(c0, m0, &hi0, &lo0);
    MulHiLo(c2, m1, &hi1, &lo1);
    const __m512i n0 =
        _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(static_cast<int>(k0)));
    const __m512i n2 =
        _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int>(k1)));
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  // 4 x 16 (word-major) -> 16 x 4 (block-major).
  const __m512i t0 = _mm512_unpacklo_epi32(c0, c1);  // per 128-bit lane: a0 b0 a1 b1
  const __m512i t1 = _mm512_unpackhi_epi32(c0, c1);  // a2 b2 a3 b3
  const __m512i t2 = _mm512_unpacklo_epi32(c2, c3);  // c0 d0 c1 d1
  const __m512i t3 = _mm512_unpackhi_epi32(c2, c3);  // c2 d2 c3 d3
  const __m512i u0 = _mm512_unpacklo_epi64(t0, t2);  // a0 b0 c0 d0 (blocks 0, 4, 8, 12)
  const __m512i u1 = _mm512_unpackhi_epi64(t0, t2);  // blocks 1, 5, 9, 13
  const __m512i u2 = _mm512_unpacklo_epi64(t1, t3);  // blocks 2, 6, 10, 14
  const __m512i u3 = _mm512_unpackhi_epi64(t1, t3);  // blocks 3, 7, 11, 15
  // Lane q (128 bits) of u_r holds block 4q + r: out block order 0..15.
  const __m512i v0 = _mm512_shuffle_i32x4(u0, u1, 0x44);  // u0.q0 u0.q1 u1.q0 u1.q1
  const __m512i v1 = _mm512_shuffle_i32x4(u2, u3, 0x44);
  const __m512i v2 = _mm512_shuffle_i32x4(u0, u1, 0xEE);  // u0.q2 u0.q3 u1.q2 u1.q3
  const __m512i v3 = _mm512_shuffle_i32x4(u2, u3, 0xEE);
  // v0 = blocks 0, 4, 1, 5; v1 = 2, 6, 3, 7; v2 = 8, 12, 9, 13; v3 = 10, 14, 11, 15.
  const __m512i idx = _mm512_set_epi32(15, 14, 13, 12, 7, 6, 5, 4, 11, 10, 9, 8, 3, 2, 1, 0);
  const __m512i w0 = _mm512_permutexvar_epi32(idx, v0);  // blocks 0, 1, 4, 5 -> want 0, 1, 2, 3
  const __m512i w1 = _mm512_permutexvar_epi32(idx, v1);  // blocks 2, 3, 6, 7
  const __m512i w2 = _mm512_permutexvar_epi32(idx, v2);  // 8, 9, 12, 13
  const __m512i w3 = _mm512_permutexvar_epi32(idx, v3);  // 10, 11, 14, 15
  _mm512_storeu_si512(out + 0, _mm512_shuffle_i32x4(w0, w1, 0x44));   // 0 1 2 3
  _mm512_storeu_si512(out + 16, _mm512_shuffle_i32x4(w0, w1, 0xEE));  // 4 5 6 7
  _mm512_storeu_si512(out + 32, _mm512_shuffle_i32x4(w2, w3, 0x44));  // 8 9 10 11
  _mm512_storeu_si512(out + 48, _mm512_shuffle_i32x4(w2, w3, 0xEE));  // 12 13 14 15
}
#endif

// Applies f(i, scale_or_zero) to each local element of one row.
template <typename F>
inline void ForEachMaskedRow(const DropoutSpec& s, int64_t row, int64_t cols, float scale, F&& f) {
  const uint64_t base = static_cast<uint64_t>(row * s.cols_global + s.col_offset);
  alignas(64) uint32_t words[kDropoutChunk];
  for (int64_t c0 = 0; c0 < cols; c0 += kDropoutChunk) {
    const int64_t n = std::min<int64_t>(kDropoutChunk, cols - c0);
    DropoutWords(s, base + static_cast<uint64_t>(c0), n, words);
    for (int64_t i = 0; i < n; ++i) f(c0 + i, U32ToUniform01f(words[i]) >= s.p ? scale : 0.0f);
  }
}

}  // namespace

void DropoutWords(const DropoutSpec& s, uint64_t base, int64_t n, uint32_t* words) {
  if (n <= 0) return;
  const uint64_t first = base >> 2, last = (base + static_cast<uint64_t>(n) - 1) >> 2;
  const int skip = static_cast<int>(base & 3);
  int64_t out = 0;
  for (uint64_t j = first; j <= last;) {
#if defined(__AVX512F__)
    if (last - j + 1 >= 16) {
      alignas(64) uint32_t blk[64];
      Philox16(s.stream, j, s.key, blk);
      const int from = j == first ? skip : 0;
      const int64_t take = std::min<int64_t>(64 - from, n - out);
      std::memcpy(words + out, blk + from, sizeof(uint32_t) * take);
      out += take;
      j += 16;
      continue;
    }
#endif
    const auto blk = Philox4x32(s.stream, j, s.key);
    for (int w = j == first ? skip : 0; w < 4 && out < n; ++w) words[out++] = blk[w];
    ++j;
  }
}

void DropoutRange(const DropoutSpec& s, uint64_t base, int64_t n, const float* in, float* out) {
  const float scale = 1.0f / (1.0f - s.p);
  alignas(64) uint32_t words[kDropoutChunk];
  for (int64_t c0 = 0; c0 < n; c0 += kDropoutChunk) {
    const int64_t m = std::min<int64_t>(kDropoutChunk, n - c0);
    DropoutWords(s, base + static_cast<uint64_t>(c0), m, words);
    const float* x = in + c0;
    float* y = out + c0;
    for (int64_t i = 0; i < m; ++i) y[i] = U32ToUniform01f(words[i]) >= s.p ? x[i] * scale : 0.0f;
  }
}

void DropoutForward(const DropoutSpec& s, const float* x, float* y, int64_t rows, int64_t cols) {
  if (s.p <= 0.0f) {
    if (x != y) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < rows * cols; ++i) y[i] = x[i];
    }
    return;
  }
  // torch's fused dropout multiplies by a float mask/(1-p).
  const float scale = 1.0f / (1.0f - s.p);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    ForEachMaskedRow(s, r, cols, scale, [&](int64_t c, float m) { yr[c] = xr[c] * m; });
  }
}

void DropoutBackward(const DropoutSpec& s, const float* dy, float* dx, int64_t rows, int64_t cols) {
  DropoutForward(s, dy, dx, rows, cols);
}

void BiasDropoutResidualForward(const DropoutSpec& s, float* y, const float* bias,
                                const float* residual, int64_t rows, int64_t cols) {
  const float scale = s.p > 0.0f ? 1.0f / (1.0f - s.p) : 1.0f;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * cols;
    const float* res = residual + r * cols;
    if (s.p <= 0.0f) {
      for (int64_t c = 0; c < cols; ++c) yr[c] = res[c] + (bias ? yr[c] + bias[c] : yr[c]);
    } else {
      ForEachMaskedRow(s, r, cols, scale, [&](int64_t c, float m) {
        yr[c] = res[c] + (bias ? yr[c] + bias[c] : yr[c]) * m;
      });
    }
  }
}

}  // namespace roformer
