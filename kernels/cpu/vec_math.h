// Vectorised exp / erf over float arrays through glibc's libmvec (the AVX-512 variants
// _ZGVeN16v_expf / _ZGVeN16v_erff, <= 1 ulp like torch's Sleef-based CPU kernels), with a scalar
// std:: fallback when the build is not AVX-512 or not glibc. The tail of an array is padded to a
// full vector, so every element goes through the same code whatever the thread partition or TP
// layout: results never depend on where a range starts.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__AVX512F__) && defined(__GLIBC__) && defined(__x86_64__)
#include <immintrin.h>
#define ROFORMER_VEC_MATH 1
extern "C" __m512 _ZGVeN16v_expf(__m512);
extern "C" __m512 _ZGVeN16v_erff(__m512);
#endif

namespace roformer {

#ifdef ROFORMER_VEC_MATH
// y[i] = F(a * x[i] + b) for i < n (y may alias x).
template <bool kErf>
inline void VecMathAffine(const float* x, float* y, int64_t n, float a, float b) {
  const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), va, vb);
    _mm512_storeu_ps(y + i, kErf ? _ZGVeN16v_erff(v) : _ZGVeN16v_expf(v));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), va, vb);
    _mm512_mask_storeu_ps(y + i, m, kErf ? _ZGVeN16v_erff(v) : _ZGVeN16v_expf(v));
  }
}
#else
template <bool kErf>
inline void VecMathAffine(const float* x, float* y, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::fma(x[i], a, b);
    y[i] = kErf ? std::erf(v) : std::exp(v);
  }
}
#endif

// y = exp(x - shift), y = erf(x * scale).
inline void VecExp(const float* x, float* y, int64_t n, float shift = 0.0f) {
  VecMathAffine<false>(x, y, n, 1.0f, -shift);
}
inline void VecErf(const float* x, float* y, int64_t n, float scale = 1.0f) {
  VecMathAffine<true>(x, y, n, scale, 0.0f);
}

}  // namespace roformer
