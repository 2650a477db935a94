// GEMMs through oneDNN's matmul primitive (Debian libdnnl-dev):
//  * fp32: the default top-level GEMM when oneDNN is present. Its brgemm kernels use the full
//    AVX-512 width; Debian's OpenBLAS runs a narrower kernel on Zen 4 and measured ~1.7x slower on
//    the BERT-base shapes (docs/benchmarks.md). ROFORMER_GEMM=openblas switches back.
//  * bf16 x bf16 -> fp32 (model.precision = "bf16"): AMX tiles on CPUs with AMX-BF16, vdpbf16ps dot
//    products on AVX512-BF16 CPUs such as Zen 4 / Cooper Lake.
#include <glog/logging.h>
// GCC 12 reports its own AVX-512 intrinsics (_mm512_undefined_*) as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <omp.h>

#include <atomic>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>

#include "kernels/cpu/gemm.h"

#ifdef ROFORMER_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace roformer {

namespace {
std::atomic<int> g_precision{static_cast<int>(GemmPrecision::kFp32)};

inline uint16_t F32ToBf16Bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Row-by-row conversion of a stored [rows, cols] fp32 matrix (row stride ld) to a compact bf16 one.
[[maybe_unused]] void ConvertToBf16(const float* src, int64_t rows, int64_t cols, int64_t ld,
                                    uint16_t* dst) {
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = src + r * ld;
    uint16_t* d = dst + r * cols;
    int64_t c = 0;
#if defined(__AVX512BF16__)
    for (; c + 16 <= cols; c += 16) {
      const __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(s + c));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + c), reinterpret_cast<const __m256i&>(v));
    }
#endif
    for (; c < cols; ++c) d[c] = F32ToBf16Bits(s[c]);
  }
}
}  // namespace

GemmPrecision CurrentGemmPrecision() {
  return static_cast<GemmPrecision>(g_precision.load(std::memory_order_relaxed));
}

ScopedGemmPrecision::ScopedGemmPrecision(GemmPrecision p) : saved_(CurrentGemmPrecision()) {
  g_precision.store(static_cast<int>(p), std::memory_order_relaxed);
}
ScopedGemmPrecision::~ScopedGemmPrecision() {
  g_precision.store(static_cast<int>(saved_), std::memory_order_relaxed);
}

float RoundToBf16(float x) {
  const uint32_t u = static_cast<uint32_t>(F32ToBf16Bits(x)) << 16;
  float y;
  std::memcpy(&y, &u, 4);
  return y;
}

#ifdef ROFORMER_HAVE_DNNL

namespace {

struct Key {
  bool bf16;  // compact bf16 operand copies; fp32 reads A and B in place (lda, ldb)
  int m, n, k;
  bool ta, tb;
  int lda, ldb, ldc;
  float alpha, beta;
  auto Tie() const { return std::tie(bf16, m, n, k, ta, tb, lda, ldb, ldc, alpha, beta); }
  bool operator<(const Key& o) const { return Tie() < o.Tie(); }
};

// A cached primitive with its memory objects: a call only re-points the three data handles and
// executes through the C API with a stack argument array, so a GEMM allocates nothing once its
// shape has been seen (the C++ execute() builds a vector from an unordered_map on every call).
struct Entry {
  dnnl::matmul mm;
  dnnl::memory a, b, c;
};

struct Dnnl {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  std::map<Key, Entry> cache;
};

// Per calling thread: primitives, memories and the stream are not shared, so no lock is needed.
// Leaked on purpose: it must outlive the static destructors of callers.
Dnnl& Ctx() {
  thread_local Dnnl* ctx = new Dnnl();
  return *ctx;
}

void Execute(Entry& e, const void* a, const void* b, float* c) {
  Dnnl& ctx = Ctx();
  auto set = [](dnnl::memory& m, const void* p) {
    dnnl::error::wrap_c_api(dnnl_memory_set_data_handle(m.get(), const_cast<void*>(p)),
                            "could not set a memory handle");
  };
  set(e.a, a);
  set(e.b, b);
  set(e.c, c);
  const dnnl_exec_arg_t args[3] = {
      {DNNL_ARG_SRC, e.a.get()}, {DNNL_ARG_WEIGHTS, e.b.get()}, {DNNL_ARG_DST, e.c.get()}};
  dnnl::error::wrap_c_api(dnnl_primitive_execute(e.mm.get(), ctx.strm.get(), 3, args),
                          "could not execute a matmul");
  ctx.strm.wait();
}

Entry& GetMatmul(const Key& key) {
  Dnnl& ctx = Ctx();
  auto it = ctx.cache.find(key);
  if (it != ctx.cache.end()) return it->second;
  // Masked-row counts (MLM head) vary per batch, so M varies; oneDNN's runtime-M matmul falls back
  // to a slower kernel, so shapes are cached one by one and the cache is bounded.
  if (ctx.cache.size() >= 1024) ctx.cache.clear();
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
  const int64_t m = key.m, n = key.n, k = key.k;
  // op(A) [m, k] is A [m, k] or A^T of a stored [k, m]; op(B) [k, n] is B [k, n] or B^T of a
  // stored [n, k]; oneDNN takes both as strides. bf16 operands are compact copies (ld = the stored
  // row length), fp32 ones the caller's buffers with their own strides.
  const dt type = key.bf16 ? dt::bf16 : dt::f32;
  const int64_t lda = key.bf16 ? (key.ta ? m : k) : key.lda;
  const int64_t ldb = key.bf16 ? (key.tb ? k : n) : key.ldb;
  dnnl::memory::desc a({m, k}, type, key.ta ? dims{1, lda} : dims{lda, 1});
  dnnl::memory::desc b({k, n}, type, key.tb ? dims{1, ldb} : dims{ldb, 1});
  dnnl::memory::desc c({m, n}, dt::f32, dims{key.ldc, 1});
  dnnl::primitive_attr attr;
  if (key.alpha != 1.0f) attr.set_output_scales(0, {key.alpha});
  if (key.beta != 0.0f) {
    dnnl::post_ops po;
    po.append_sum(key.beta);
    attr.set_post_ops(po);
  }
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, ctx.eng);
  VLOG(1) << (key.bf16 ? "bf16" : "fp32") << " matmul " << m << "x" << n << "x" << k << ": "
          << pd.impl_info_str();
  Entry e{dnnl::matmul(pd), dnnl::memory(a, ctx.eng, DNNL_MEMORY_NONE),
          dnnl::memory(b, ctx.eng, DNNL_MEMORY_NONE), dnnl::memory(c, ctx.eng, DNNL_MEMORY_NONE)};
  return ctx.cache.emplace(key, std::move(e)).first->second;
}

bool CpuHasAmxBf16() {
  unsigned a, b, c, d;
  __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
  return (d >> 22) & 1u;
}

}  // namespace

std::string Bf16GemmIsa() {
  const unsigned isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const unsigned amx = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_amx);
  const unsigned bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  if ((isa & amx) == amx) return "AMX-BF16";
  if ((isa & bf16) == bf16)
    return CpuHasAmxBf16() ? "AVX512-BF16 (AMX present but not enabled)" : "AVX512-BF16 (no AMX)";
  return "";
}

std::string Bf16GemmUnavailableReason() {
  if (!Bf16GemmIsa().empty()) return "";
  return "this CPU has neither AVX512-BF16 nor AMX-BF16 (oneDNN's effective ISA is below "
         "avx512_core_bf16), so bf16 GEMMs would run in emulation; use model.precision: \"fp32\"";
}

void Bf16Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
              const float* b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // no products: Sgemm's beta-scaling contract, before any precision routing
    Sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const std::string why = Bf16GemmUnavailableReason();
  CHECK(why.empty()) << why;
  // Grow-once operand buffers (per calling thread); primitives and memories are cached (Entry).
  thread_local std::vector<uint16_t> abuf, bbuf;
  const int64_t an = static_cast<int64_t>(m) * k, bn = static_cast<int64_t>(k) * n;
  if (static_cast<int64_t>(abuf.size()) < an) abuf.resize(an);
  if (static_cast<int64_t>(bbuf.size()) < bn) bbuf.resize(bn);
  if (trans_a) {
    ConvertToBf16(a, k, m, lda, abuf.data());
  } else {
    ConvertToBf16(a, m, k, lda, abuf.data());
  }
  if (trans_b) {
    ConvertToBf16(b, n, k, ldb, bbuf.data());
  } else {
    ConvertToBf16(b, k, n, ldb, bbuf.data());
  }
  const Key key{true, m, n, k, trans_a, trans_b, 0, 0, ldc, alpha, beta};
  try {
    Execute(GetMatmul(key), abuf.data(), bbuf.data(), c);
  } catch (const dnnl::error& e) {
    LOG(FATAL) << "oneDNN bf16 matmul " << m << "x" << n << "x" << k << " failed: " << e.what();
  }
}

void OneDnnSgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  const Key key{false, m, n, k, trans_a, trans_b, lda, ldb, ldc, alpha, beta};
  try {
    Execute(GetMatmul(key), a, b, c);
  } catch (const dnnl::error& e) {
    LOG(FATAL) << "oneDNN fp32 matmul " << m << "x" << n << "x" << k << " failed: " << e.what();
  }
}

bool OneDnnAvailable() { return true; }

#else  // !ROFORMER_HAVE_DNNL

std::string Bf16GemmIsa() { return ""; }

std::string Bf16GemmUnavailableReason() {
  return "this build has no oneDNN (install libdnnl-dev, e.g. launch/install-deps.sh, and "
         "re-run cmake)";
}

void Bf16Gemm(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*,
              int) {
  LOG(FATAL) << "Bf16Gemm: " << Bf16GemmUnavailableReason();
}

void OneDnnSgemm(bool, bool, int, int, int, float, const float*, int, const float*, int, float,
                 float*, int) {
  LOG(FATAL) << "OneDnnSgemm: this build has no oneDNN";
}

bool OneDnnAvailable() { return false; }

#endif

}  // namespace roformer
