// GPU parity suite: every CUDA op (kernels/cuda/ops.h, gemm_cublas.h) against the CPU kernels it
// mirrors (kernels/cpu/*, model/optimizer.h), in fp32 (relative L2 error <= 1e-5) and bf16
// (<= 1e-2, the CPU fed the same bf16-rounded inputs), dropout masks bit-equal. Fresh random
// inputs from fixed seeds, every output buffer poisoned with NaN (0xFF bytes) before the GPU runs,
// so an unwritten element fails the check. Prints one line per check and a summary table; exits 0
// only if every check passed, 1 otherwise, and 77 ("SKIPPED: no CUDA device") when there is no
// device, which ctest reports as skipped (SKIP_RETURN_CODE), never as passed.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "kernels/cpu/activations.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/dropout.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/gemm_cublas.h"
#include "kernels/cuda/ops.h"
#include "model/optimizer.h"
#include "runtime/param_store.h"

namespace roformer::cuda {
namespace {

constexpr double kTolF32 = 1e-5;
constexpr double kTolBf16 = 1e-2;

// ---- host bf16 (round to nearest even), independent of cuda_bf16.h's host path ----
uint16_t Bf16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float Bf16ToFloat(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float RoundBf16(float f) { return Bf16ToFloat(Bf16Bits(f)); }

template <typename T>
constexpr bool kIsBf16 = std::is_same_v<T, bf16>;
template <typename T>
const char* TypeName() {
  return kIsBf16<T> ? "bf16" : "f32";
}
template <typename T>
double Tol() {
  return kIsBf16<T> ? kTolBf16 : kTolF32;
}

// Rounds to what a T tensor can hold (identity for float), so the CPU sees the GPU's inputs.
template <typename T>
void Q(std::vector<float>& v) {
  if (kIsBf16<T>)
    for (float& x : v) x = RoundBf16(x);
}

// ---- device buffers ----
template <typename T>
class Dev {
 public:
  explicit Dev(size_t n) : n_(n) {
    ROFORMER_CUDA_CHECK(
        cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)));
  }
  ~Dev() { cudaFree(p_); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  // 0xFF bytes: NaN in fp32 and bf16, 255 in a byte mask.
  void Poison() { ROFORMER_CUDA_CHECK(cudaMemset(p_, 0xFF, n_ * sizeof(T))); }

 private:
  T* p_ = nullptr;
  size_t n_;
};

template <typename T>
void Upload(Dev<T>& d, const std::vector<float>& h) {
  if constexpr (kIsBf16<T>) {
    std::vector<uint16_t> b(h.size());
    for (size_t i = 0; i < h.size(); ++i) b[i] = Bf16Bits(h[i]);
    ROFORMER_CUDA_CHECK(cudaMemcpy(d.get(), b.data(), b.size() * 2, cudaMemcpyHostToDevice));
  } else {
    ROFORMER_CUDA_CHECK(
        cudaMemcpy(d.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
}
template <typename T>
std::vector<float> Download(const Dev<T>& d) {
  ROFORMER_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> h(d.size());
  if constexpr (kIsBf16<T>) {
    std::vector<uint16_t> b(d.size());
    ROFORMER_CUDA_CHECK(cudaMemcpy(b.data(), d.get(), b.size() * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < b.size(); ++i) h[i] = Bf16ToFloat(b[i]);
  } else {
    ROFORMER_CUDA_CHECK(
        cudaMemcpy(h.data(), d.get(), h.size() * sizeof(T), cudaMemcpyDeviceToHost));
  }
  return h;
}
template <typename I>
void UploadRaw(Dev<I>& d, const std::vector<I>& h) {
  ROFORMER_CUDA_CHECK(cudaMemcpy(d.get(), h.data(), h.size() * sizeof(I), cudaMemcpyHostToDevice));
}
template <typename I>
std::vector<I> DownloadRaw(const Dev<I>& d) {
  ROFORMER_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<I> h(d.size());
  ROFORMER_CUDA_CHECK(cudaMemcpy(h.data(), d.get(), h.size() * sizeof(I), cudaMemcpyDeviceToHost));
  return h;
}

std::vector<float> Randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

// ---- report ----
struct Row {
  std::string op, dtype;
  double err, tol;
  bool pass;
  std::string note;
};
std::vector<Row> g_rows;

void Record(const std::string& op, const std::string& dtype, double err, double tol, bool pass,
            const std::string& note = "") {
  g_rows.push_back({op, dtype, err, tol, pass, note});
  std::printf("%s  %-34s %-5s err %.3e (tol %.0e)%s%s\n", pass ? "PASS" : "FAIL", op.c_str(),
              dtype.c_str(), err, tol, note.empty() ? "" : "  ", note.c_str());
  std::fflush(stdout);
}

// Relative L2 error ||got - ref|| / ||ref|| over the elements keep(i) selects; any NaN/Inf in got
// (an unwritten, still poisoned element) fails.
template <typename Keep>
void Compare(const std::string& op, const char* dtype, const std::vector<float>& got,
             const std::vector<float>& ref, double tol, Keep keep) {
  double num = 0, den = 0;
  int64_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!keep(i)) continue;
    if (!std::isfinite(got[i])) {
      ++bad;
      continue;
    }
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  const double err = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  Record(op, dtype, err, tol, bad == 0 && err <= tol,
         bad ? std::to_string(bad) + " non-finite (unwritten?) elements" : "");
}
void Compare(const std::string& op, const char* dtype, const std::vector<float>& got,
             const std::vector<float>& ref, double tol) {
  Compare(op, dtype, got, ref, tol, [](size_t) { return true; });
}

// ---- GEMMs ----
template <typename T, typename TC>
void CheckGemm(Blas& blas, bool ta, bool tb, int pad, uint32_t seed) {
  const int m = 96, n = 80, k = 72;
  const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
  const int arows = ta ? k : m, brows = tb ? n : k;
  auto a = Randn(static_cast<size_t>(arows) * lda, seed);
  auto b = Randn(static_cast<size_t>(brows) * ldb, seed + 1);
  Q<T>(a);
  Q<T>(b);
  for (float beta : {0.0f, 0.5f}) {
    auto c = Randn(static_cast<size_t>(m) * ldc, seed + 2);
    Q<TC>(c);
    Dev<T> da(a.size()), db(b.size());
    Dev<TC> dc(c.size());
    Upload(da, a);
    Upload(db, b);
    if (beta == 0.0f) {
      dc.Poison();
    } else {
      Upload(dc, c);
    }
    std::vector<float> ref = c;
    Sgemm(ta, tb, m, n, k, 0.75f, a.data(), lda, b.data(), ldb, beta, ref.data(), ldc);
    blas.Gemm<T, TC>(ta, tb, m, n, k, 0.75f, da.get(), lda, db.get(), ldb, beta, dc.get(), ldc);
    const std::string name = std::string("gemm ") + (ta ? "T" : "N") + (tb ? "T" : "N") + " ld+" +
                             std::to_string(pad) + " beta=" + (beta ? "0.5" : "0") +
                             (std::is_same_v<TC, float> && kIsBf16<T> ? " ->f32" : "");
    Compare(name, TypeName<T>(), Download(dc), ref, Tol<T>(),
            [&](size_t i) { return static_cast<int>(i % ldc) < n; });
  }
}

template <typename T>
void CheckBatchedGemm(Blas& blas) {
  const int B = 3, H = 4, L = 40, d = 16, ld = H * d + 8;
  const HeadStrides tok{static_cast<int64_t>(L) * ld, d};
  const HeadStrides sc{static_cast<int64_t>(H) * L * L, static_cast<int64_t>(L) * L};
  auto q = Randn(static_cast<size_t>(B) * L * ld, 11), k = Randn(q.size(), 12);
  Q<T>(q);
  Q<T>(k);
  std::vector<float> ref(static_cast<size_t>(B) * H * L * L);
  BatchedHeadSgemm(B, H, false, true, L, L, d, 1.0f, q.data(), ld, tok, k.data(), ld, tok, 0.0f,
                   ref.data(), L, sc);
  Dev<T> dq(q.size()), dk(k.size());
  Dev<float> ds(ref.size());
  Upload(dq, q);
  Upload(dk, k);
  ds.Poison();
  blas.BatchedHeadGemm<T, float>(B, H, false, true, L, L, d, 1.0f, dq.get(), ld, tok, dk.get(), ld,
                                 tok, 0.0f, ds.get(), L, sc);
  Compare("batched head gemm q k^T", TypeName<T>(), Download(ds), ref, Tol<T>());
}

// ---- activations ----
template <typename T>
void CheckActivations() {
  const int64_t n = 100003;
  auto x = Randn(n, 21, 2.0f), dy = Randn(n, 22);
  Q<T>(x);
  Q<T>(dy);
  Dev<T> dx_in(n), ddy(n), dout(n);
  Upload(dx_in, x);
  Upload(ddy, dy);
  std::vector<float> ref(n);

  ::roformer::GeluForward(x.data(), ref.data(), n);
  dout.Poison();
  GeluForward<T>(dx_in.get(), dout.get(), n, nullptr);
  Compare("gelu forward", TypeName<T>(), Download(dout), ref, Tol<T>());

  ::roformer::GeluBackward(dy.data(), x.data(), ref.data(), n);
  dout.Poison();
  GeluBackward<T>(ddy.get(), dx_in.get(), dout.get(), n, nullptr);
  Compare("gelu backward", TypeName<T>(), Download(dout), ref, Tol<T>());

  ::roformer::TanhForward(x.data(), ref.data(), n);
  dout.Poison();
  TanhForward<T>(dx_in.get(), dout.get(), n, nullptr);
  auto y_gpu = Download(dout);
  Compare("tanh forward", TypeName<T>(), y_gpu, ref, Tol<T>());

  // Backward from the saved output: feed both the same (T-rounded) y.
  std::vector<float> y = ref;
  Q<T>(y);
  Dev<T> dyv(n);
  Upload(dyv, y);
  ::roformer::TanhBackward(dy.data(), y.data(), ref.data(), n);
  dout.Poison();
  TanhBackward<T>(ddy.get(), dyv.get(), dout.get(), n, nullptr);
  Compare("tanh backward", TypeName<T>(), Download(dout), ref, Tol<T>());
}

// ---- layernorm ----
template <typename T>
void CheckLayerNorm(int rows, int dim) {
  const std::string tag = " " + std::to_string(rows) + "x" + std::to_string(dim);
  auto x = Randn(static_cast<size_t>(rows) * dim, 31, 3.0f);
  for (size_t i = 0; i < x.size(); ++i) x[i] += 0.5f;  // non-zero mean
  auto gamma = Randn(dim, 32), beta = Randn(dim, 33), dy = Randn(x.size(), 34);
  auto dx0 = Randn(x.size(), 35), dg0 = Randn(dim, 36), db0 = Randn(dim, 37);
  Q<T>(x);
  Q<T>(dy);
  Q<T>(dx0);
  std::vector<float> y(x.size()), mean(rows), rstd(rows);
  ::roformer::LayerNormForward(x.data(), gamma.data(), beta.data(), y.data(), mean.data(),
                               rstd.data(), rows, dim, 1e-12f);
  Dev<T> dxd(x.size()), dyd(x.size()), dout(x.size());
  Dev<float> dgamma(dim), dbeta(dim), dmean(rows), drstd(rows), dgg(dim), dgb(dim);
  Upload(dxd, x);
  Upload(dyd, dy);
  Upload(dgamma, gamma);
  Upload(dbeta, beta);
  dout.Poison();
  dmean.Poison();
  drstd.Poison();
  LayerNormForward<T>(dxd.get(), dgamma.get(), dbeta.get(), dout.get(), dmean.get(), drstd.get(),
                      rows, dim, 1e-12f, nullptr);
  Compare("layernorm forward y" + tag, TypeName<T>(), Download(dout), y, Tol<T>());
  Compare("layernorm forward mean" + tag, TypeName<T>(), Download(dmean), mean, Tol<T>());
  Compare("layernorm forward rstd" + tag, TypeName<T>(), Download(drstd), rstd, Tol<T>());

  // Backward from the CPU's statistics, so both see identical inputs.
  Upload(dmean, mean);
  Upload(drstd, rstd);
  Dev<char> ws(LayerNormBackwardWorkspaceBytes(dim));
  for (bool acc : {false, true}) {
    std::vector<float> dx = dx0, dg = dg0, db = db0;
    ::roformer::LayerNormBackward(dy.data(), x.data(), mean.data(), rstd.data(), gamma.data(),
                                  dx.data(), dg.data(), db.data(), rows, dim, acc);
    if (acc) {
      Upload(dout, dx0);
    } else {
      dout.Poison();
    }
    Upload(dgg, dg0);
    Upload(dgb, db0);
    LayerNormBackward<T>(dyd.get(), dxd.get(), dmean.get(), drstd.get(), dgamma.get(), dout.get(),
                         dgg.get(), dgb.get(), rows, dim, acc, ws.get(), nullptr);
    const std::string a = acc ? " (accumulate)" : "";
    Compare("layernorm backward dx" + tag + a, TypeName<T>(), Download(dout), dx, Tol<T>());
    Compare("layernorm backward dgamma" + tag + a, TypeName<T>(), Download(dgg), dg, Tol<T>());
    Compare("layernorm backward dbeta" + tag + a, TypeName<T>(), Download(dgb), db, Tol<T>());
  }
}

// ---- rope ----
template <typename T>
void CheckRope() {
  const int B = 2, L = 37, H = 3, d = 16;
  const int64_t ld = 3 * H * d;  // q inside a fused [tokens, 3 * hidden] QKV row
  auto table = RopeTable(64, d);
  auto x = Randn(static_cast<size_t>(B) * L * ld, 41);
  Q<T>(x);
  Dev<float> dtable(table.size());
  Upload(dtable, table);
  Dev<T> dx(x.size());
  for (bool inverse : {false, true}) {
    std::vector<float> ref = x;
    Upload(dx, x);  // in place: the untouched k/v columns must stay as they were
    if (inverse) {
      ::roformer::RopeBackward(ref.data(), table.data(), B, L, H, d, ld);
      RopeBackward<T>(dx.get(), dtable.get(), B, L, H, d, ld, nullptr);
    } else {
      ::roformer::RopeForward(ref.data(), table.data(), B, L, H, d, ld);
      RopeForward<T>(dx.get(), dtable.get(), B, L, H, d, ld, nullptr);
    }
    Compare(inverse ? "rope backward" : "rope forward", TypeName<T>(), Download(dx), ref, Tol<T>());
  }
}

// ---- dropout ----
DropoutSpec MakeSpec(float p, int64_t cols_global, int64_t col_offset, uint32_t layer) {
  DropoutSpec s;
  s.p = p;
  s.key = 0x5eedf00dcafe1234ull;
  s.stream = DropoutStreamId(1234, 1, layer, 2);
  s.cols_global = cols_global;
  s.col_offset = col_offset;
  return s;
}

void CheckDropoutMask(int64_t rows, int64_t cols, int64_t cols_global, int64_t col_offset) {
  const DropoutSpec s = MakeSpec(0.1f, cols_global, col_offset, 3);
  Dev<uint8_t> dm(static_cast<size_t>(rows * cols));
  dm.Poison();
  DropoutKeepMask(s, dm.get(), rows, cols, nullptr);
  auto got = DownloadRaw(dm);
  int64_t mismatches = 0, kept = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const bool ref = DropoutKeep(s, r, c);
      const uint8_t g = got[r * cols + c];
      mismatches += (g != (ref ? 1 : 0));
      kept += ref;
    }
  const std::string name = "dropout mask bit-equal " + std::to_string(rows) + "x" +
                           std::to_string(cols) + " of " + std::to_string(cols_global) + " @" +
                           std::to_string(col_offset);
  Record(name, "u8", static_cast<double>(mismatches), 0, mismatches == 0,
         "kept " + std::to_string(kept) + "/" + std::to_string(rows * cols));
}

template <typename T>
void CheckDropout() {
  const int64_t rows = 33, cols = 500;
  for (float p : {0.0f, 0.1f}) {
    const DropoutSpec s = MakeSpec(p, 1001, 3, 4);
    auto x = Randn(static_cast<size_t>(rows * cols), 51), res = Randn(x.size(), 52);
    auto bias = Randn(cols, 53);
    Q<T>(x);
    Q<T>(res);
    const std::string tag = p > 0 ? " p=0.1" : " p=0";
    std::vector<float> ref(x.size());
    ::roformer::DropoutForward(s, x.data(), ref.data(), rows, cols);
    Dev<T> dx(x.size()), dy(x.size()), dres(x.size());
    Dev<float> dbias(cols);
    Upload(dx, x);
    Upload(dres, res);
    Upload(dbias, bias);
    dy.Poison();
    DropoutForward<T>(s, dx.get(), dy.get(), rows, cols, nullptr);
    Compare("dropout forward" + tag, TypeName<T>(), Download(dy), ref, Tol<T>());
    dy.Poison();
    DropoutBackward<T>(s, dx.get(), dy.get(), rows, cols, nullptr);
    Compare("dropout backward" + tag, TypeName<T>(), Download(dy), ref, Tol<T>());

    ref = x;
    ::roformer::BiasDropoutResidualForward(s, ref.data(), bias.data(), res.data(), rows, cols);
    Upload(dy, x);
    BiasDropoutResidualForward<T>(s, dy.get(), dbias.get(), dres.get(), rows, cols, nullptr);
    Compare("bias+dropout+residual" + tag, TypeName<T>(), Download(dy), ref, Tol<T>());
  }
}

// ---- embedding ----
template <typename T>
void CheckEmbedding() {
  const int64_t rows = 300, local_rows = 50, row_start = 20;
  const int dim = 64;
  std::mt19937 g(61);
  std::vector<int32_t> ids(rows);
  for (auto& id : ids) id = static_cast<int32_t>(g() % 100);  // many outside this shard
  ids[0] = 25;                                                // the skipped padding id
  auto table = Randn(static_cast<size_t>(local_rows) * dim, 62);
  auto out0 = Randn(static_cast<size_t>(rows) * dim, 63), dout = Randn(out0.size(), 64);
  auto dt0 = Randn(table.size(), 65);
  Q<T>(table);
  Q<T>(out0);
  Q<T>(dout);
  Dev<int32_t> dids(ids.size());
  UploadRaw(dids, ids);
  Dev<T> dtable(table.size()), dout_t(out0.size()), ddout(dout.size());
  Upload(dtable, table);
  Upload(ddout, dout);
  for (bool acc : {false, true}) {
    std::vector<float> ref = out0;
    ::roformer::EmbeddingForward(ids.data(), table.data(), ref.data(), rows, dim, row_start,
                                 local_rows, acc);
    if (acc) {
      Upload(dout_t, out0);
    } else {
      dout_t.Poison();
    }
    EmbeddingForward<T>(dids.get(), dtable.get(), dout_t.get(), rows, dim, row_start, local_rows,
                        acc, nullptr);
    Compare(std::string("embedding forward") + (acc ? " (accumulate)" : ""), TypeName<T>(),
            Download(dout_t), ref, Tol<T>());
  }
  std::vector<float> ref = dt0;
  ::roformer::EmbeddingBackward(ids.data(), dout.data(), ref.data(), rows, dim, row_start,
                                local_rows, 25);
  Dev<float> ddt(dt0.size());
  for (bool det : {true, false}) {
    Upload(ddt, dt0);
    EmbeddingBackward<T>(dids.get(), ddout.get(), ddt.get(), rows, dim, row_start, local_rows, 25,
                         det, nullptr);
    // The gradient is fp32 whatever T: compare at fp32 tolerance (inputs are identical).
    Compare(std::string("embedding backward") + (det ? " (ordered)" : " (atomics)"), TypeName<T>(),
            Download(ddt), ref, kTolF32);
  }

  {
    // The grouped (host-built) path: same summation order as the CPU, so bit-equal here.
    EmbeddingGroups groups;
    BuildEmbeddingGroups(ids.data(), rows, row_start, local_rows, 25, &groups);
    Dev<int32_t> gi(groups.ids.size()), gs(groups.starts.size()), gr(groups.rows.size());
    UploadRaw(gi, groups.ids);
    UploadRaw(gs, groups.starts);
    UploadRaw(gr, groups.rows);
    Upload(ddt, dt0);
    EmbeddingBackwardGrouped<T>(gi.get(), gs.get(), gr.get(), static_cast<int>(groups.ids.size()),
                                ddout.get(), ddt.get(), dim, nullptr);
    const auto got = Download(ddt);
    const bool bit_equal = std::memcmp(got.data(), ref.data(), ref.size() * sizeof(float)) == 0;
    Compare(std::string("embedding backward (grouped)") + (bit_equal ? " bit-equal" : ""),
            TypeName<T>(), got, ref, kTolF32);
  }

  // Gather / scatter-add of rows of a [rows, dim] activation (MLM positions).
  const int64_t n = 40;
  std::vector<int32_t> index(n);
  for (int64_t i = 0; i < n; ++i) index[i] = static_cast<int32_t>((i * 7) % rows);
  Dev<int32_t> dindex(n);
  UploadRaw(dindex, index);
  std::vector<float> gref(static_cast<size_t>(n) * dim);
  ::roformer::GatherRows(out0.data(), index.data(), gref.data(), n, dim);
  Dev<T> dsrc(out0.size()), dg(gref.size());
  Upload(dsrc, out0);
  dg.Poison();
  GatherRows<T>(dsrc.get(), dindex.get(), dg.get(), n, dim, nullptr);
  Compare("gather rows", TypeName<T>(), Download(dg), gref, Tol<T>());
  // Repeated indices for the ordered path, unique ones for the atomic path.
  std::vector<int32_t> rep(n);
  for (int64_t i = 0; i < n; ++i) rep[i] = static_cast<int32_t>((i * 5) % 17);
  for (bool det : {true, false}) {
    const std::vector<int32_t>& idx = det ? rep : index;
    UploadRaw(dindex, idx);
    std::vector<float> sref = out0;
    ::roformer::ScatterAddRows(gref.data(), idx.data(), sref.data(), n, dim);
    Upload(dg, gref);
    Upload(dsrc, out0);
    ScatterAddRows<T>(dg.get(), dindex.get(), dsrc.get(), n, dim, det, nullptr);
    Compare(std::string("scatter-add rows") + (det ? " (ordered, repeats)" : " (atomics)"),
            TypeName<T>(), Download(dsrc), sref, Tol<T>());
  }
}

// ---- attention ----
struct AttnCase {
  const char* name;
  bool realformer, has_prev, log_n, masked, dropout, has_dcarry_in;
  float mean_div;
};

template <typename T>
void CheckAttention(Blas& blas, const AttnCase& ac, uint32_t seed) {
  AttentionDims dims;
  dims.batch = 3;
  dims.seq = 48;
  dims.heads = 3;
  dims.head_dim = 16;
  dims.ld = dims.heads * dims.head_dim + 8;  // padded rows: strided views as in the model
  const int B = dims.batch, L = dims.seq, NH = dims.heads;
  const int64_t LL = static_cast<int64_t>(L) * L, ld = dims.ld;
  const size_t tok_elems = static_cast<size_t>(B) * L * ld, sc_elems = B * NH * LL;
  AttentionParams p;
  p.realformer = ac.realformer;
  p.has_prev = ac.has_prev;
  p.mean_div = ac.mean_div;
  p.log_n = ac.log_n;
  if (ac.dropout) {
    // Tensor-parallel view: 6 heads in all, this rank holds heads 3..5.
    p.dropout = MakeSpec(0.1f, 6 * LL, 3 * LL, 5);
  }
  std::vector<int32_t> mask;
  if (ac.masked) {
    mask.assign(static_cast<size_t>(B) * L, 1);
    for (int j = 35; j < L; ++j) mask[L + j] = 0;      // row 1: 35 real keys
    for (int j = 10; j < L; ++j) mask[2 * L + j] = 0;  // row 2: 10 keys (< 16: log_n clamps)
  }
  auto q = Randn(tok_elems, seed, 1.5f), k = Randn(tok_elems, seed + 1, 1.5f);
  auto v = Randn(tok_elems, seed + 2), dctx = Randn(tok_elems, seed + 3);
  auto carry0 = Randn(sc_elems, seed + 4), dcarry0 = Randn(sc_elems, seed + 5, 0.1f);
  Q<T>(q);
  Q<T>(k);
  Q<T>(v);
  Q<T>(dctx);
  // CPU reference.
  std::vector<float> carry = carry0, probs(sc_elems), ctx(tok_elems, 0.0f);
  const int32_t* mp = ac.masked ? mask.data() : nullptr;
  ::roformer::AttentionForward(dims, p, q.data(), k.data(), v.data(), mp, carry.data(),
                               probs.data(), ctx.data());
  std::vector<float> dcarry = dcarry0, dq(tok_elems, 0.0f), dk(tok_elems, 0.0f),
                     dv(tok_elems, 0.0f);
  ::roformer::AttentionBackward(dims, p, dctx.data(), q.data(), k.data(), v.data(), mp,
                                probs.data(), dcarry.data(), ac.has_dcarry_in, dq.data(), dk.data(),
                                dv.data());
  // GPU.
  Dev<T> gq(tok_elems), gk(tok_elems), gv(tok_elems), gctx(tok_elems), gdctx(tok_elems);
  Dev<T> gdq(tok_elems), gdk(tok_elems), gdv(tok_elems), gprobs(sc_elems);
  Dev<float> gcarry(sc_elems), gdcarry(sc_elems);
  Dev<int32_t> gmask(std::max<size_t>(mask.size(), 1));
  Dev<char> ws(AttentionWorkspaceBytes<T>(dims, p));
  Upload(gq, q);
  Upload(gk, k);
  Upload(gv, v);
  Upload(gdctx, dctx);
  if (ac.masked) UploadRaw(gmask, mask);
  if (ac.realformer && ac.has_prev) {
    Upload(gcarry, carry0);
  } else {
    gcarry.Poison();
  }
  gprobs.Poison();
  gctx.Poison();
  ws.Poison();
  const int32_t* gm = ac.masked ? gmask.get() : nullptr;
  AttentionForward<T>(blas, dims, p, gq.get(), gk.get(), gv.get(), gm, gcarry.get(), gprobs.get(),
                      gctx.get(), ws.get());
  const std::string n = std::string("attention ") + ac.name + " ";
  auto in_head = [&](size_t i) { return static_cast<int64_t>(i % ld) < NH * dims.head_dim; };
  Compare(n + "probs", TypeName<T>(), Download(gprobs), probs, Tol<T>());
  Compare(n + "ctx", TypeName<T>(), Download(gctx), ctx, Tol<T>(), in_head);
  if (ac.realformer) Compare(n + "carry out", TypeName<T>(), Download(gcarry), carry, Tol<T>());

  if (ac.realformer && ac.has_dcarry_in) {
    Upload(gdcarry, dcarry0);
  } else {
    gdcarry.Poison();
  }
  gdq.Poison();
  gdk.Poison();
  gdv.Poison();
  ws.Poison();
  AttentionBackward<T>(blas, dims, p, gdctx.get(), gq.get(), gk.get(), gv.get(), gm, gprobs.get(),
                       gdcarry.get(), ac.has_dcarry_in, gdq.get(), gdk.get(), gdv.get(), ws.get());
  Compare(n + "dq", TypeName<T>(), Download(gdq), dq, Tol<T>(), in_head);
  Compare(n + "dk", TypeName<T>(), Download(gdk), dk, Tol<T>(), in_head);
  Compare(n + "dv", TypeName<T>(), Download(gdv), dv, Tol<T>(), in_head);
  if (ac.realformer) Compare(n + "dcarry", TypeName<T>(), Download(gdcarry), dcarry, Tol<T>());
}

// ---- attention recomputation (model.attention_recompute) ----
// Every element bit-equal (NaN poison included, so unwritten padding must match too).
void Identical(const std::string& op, const char* dtype, const std::vector<float>& got,
               const std::vector<float>& ref) {
  int64_t diff = got.size() == ref.size() ? 0 : 1;
  for (size_t i = 0; i < std::min(got.size(), ref.size()); ++i)
    diff += std::memcmp(&got[i], &ref[i], sizeof(float)) != 0;
  Record(op, dtype, static_cast<double>(diff), 0, diff == 0,
         diff ? std::to_string(diff) + " elements differ" : "bit-identical");
}

// A chain of N layers, forward then backward, once keeping every layer's probs and once
// recomputing them in the backward from q, k (and the carry). The forward does not change (ctx
// bit-identical); without RealFormer the gradients are bit-identical too; with RealFormer the
// carry is rebuilt downwards by subtraction, exact to fp32 rounding, so the gradients agree to
// the fp32 tolerance (bf16: to its own tolerance, as P is rounded to bf16 from a carry that may
// differ in the last fp32 bit).
template <typename T>
void CheckAttentionRecompute(Blas& blas, bool realformer, bool running_mean, uint32_t seed) {
  constexpr int N = 3;
  AttentionDims dims;
  dims.batch = 3;
  dims.seq = 48;
  dims.heads = 3;
  dims.head_dim = 16;
  dims.ld = dims.heads * dims.head_dim + 8;
  const int B = dims.batch, L = dims.seq, NH = dims.heads;
  const int64_t LL = static_cast<int64_t>(L) * L, ld = dims.ld;
  const size_t tok = static_cast<size_t>(B) * L * ld, sc = B * NH * LL;
  auto params = [&](int l, bool recompute) {
    AttentionParams p;
    p.realformer = realformer;
    p.has_prev = realformer && l > 0;
    p.mean_div = running_mean ? 1.0f / (l + 1) : 1.0f;
    p.log_n = true;
    p.dropout = MakeSpec(0.1f, 6 * LL, 3 * LL, 10 + l);
    p.recompute = recompute;
    return p;
  };
  std::vector<int32_t> mask(static_cast<size_t>(B) * L, 1);
  for (int j = 35; j < L; ++j) mask[L + j] = 0;
  for (int j = 10; j < L; ++j) mask[2 * L + j] = 0;
  auto q = Randn(N * tok, seed, 1.5f), k = Randn(N * tok, seed + 1, 1.5f);
  auto v = Randn(N * tok, seed + 2), dctx = Randn(N * tok, seed + 3);
  Q<T>(q);
  Q<T>(k);
  Q<T>(v);
  Q<T>(dctx);
  Dev<T> gq(N * tok), gk(N * tok), gv(N * tok), gdctx(N * tok), gctx(N * tok);
  Dev<T> gdq(N * tok), gdk(N * tok), gdv(N * tok), gprobs(N * sc);
  Dev<float> gcarry(sc), gdcarry(sc);
  Dev<int32_t> gmask(mask.size());
  Dev<char> ws(AttentionWorkspaceBytes<T>(dims, params(0, true)));  // the larger of the two
  Upload(gq, q);
  Upload(gk, k);
  Upload(gv, v);
  Upload(gdctx, dctx);
  UploadRaw(gmask, mask);
  struct Out {
    std::vector<float> ctx, dq, dk, dv, dcarry, cur0, carry_end;
  };
  auto run = [&](bool recompute) {
    Out o;
    for (auto* d : {&gctx, &gdq, &gdk, &gdv, &gprobs}) d->Poison();
    gcarry.Poison();
    gdcarry.Poison();
    ws.Poison();
    for (int l = 0; l < N; ++l) {
      AttentionForward<T>(blas, dims, params(l, recompute), gq.get() + l * tok, gk.get() + l * tok,
                          gv.get() + l * tok, gmask.get(), gcarry.get(),
                          recompute ? nullptr : gprobs.get() + l * sc, gctx.get() + l * tok,
                          ws.get());
      if (l == 0 && realformer) o.cur0 = Download(gcarry);
    }
    for (int l = N - 1; l >= 0; --l) {
      AttentionBackward<T>(blas, dims, params(l, recompute), gdctx.get() + l * tok,
                           gq.get() + l * tok, gk.get() + l * tok, gv.get() + l * tok, gmask.get(),
                           recompute ? nullptr : gprobs.get() + l * sc, gdcarry.get(), l + 1 < N,
                           gdq.get() + l * tok, gdk.get() + l * tok, gdv.get() + l * tok, ws.get(),
                           gcarry.get());
    }
    o.ctx = Download(gctx);
    o.dq = Download(gdq);
    o.dk = Download(gdk);
    o.dv = Download(gdv);
    if (realformer) {
      o.dcarry = Download(gdcarry);
      o.carry_end = Download(gcarry);
    }
    return o;
  };
  const Out ref = run(false);
  const Out rc = run(true);
  const std::string n = std::string("attn recompute ") +
                        (realformer ? (running_mean ? "realformer mean " : "realformer ") : "") +
                        "x" + std::to_string(N) + " ";
  const char* t = TypeName<T>();
  Identical(n + "ctx", t, rc.ctx, ref.ctx);
  if (!realformer) {
    Identical(n + "dq", t, rc.dq, ref.dq);
    Identical(n + "dk", t, rc.dk, ref.dk);
    Identical(n + "dv", t, rc.dv, ref.dv);
    return;
  }
  auto in_head = [&](size_t i) { return static_cast<int64_t>(i % ld) < NH * dims.head_dim; };
  Compare(n + "dq", t, rc.dq, ref.dq, Tol<T>(), in_head);
  Compare(n + "dk", t, rc.dk, ref.dk, Tol<T>(), in_head);
  Compare(n + "dv", t, rc.dv, ref.dv, Tol<T>(), in_head);
  Compare(n + "dcarry", t, rc.dcarry, ref.dcarry, Tol<T>());
  // The recomputing backward walked the fp32 carry back down to layer 0's.
  Compare(n + "rebuilt carry", t, rc.carry_end, rc.cur0, kTolF32);
}

// ---- linear ----
template <typename T>
void CheckLinear(Blas& blas) {
  const int64_t rows = 200;
  const int in = 96, out = 80;
  auto x = Randn(rows * in, 71), w = Randn(static_cast<size_t>(out) * in, 72, 0.1f);
  auto b = Randn(out, 73), dy = Randn(rows * out, 74), dx0 = Randn(x.size(), 75);
  auto dw0 = Randn(w.size(), 76), db0 = Randn(out, 77);
  Q<T>(x);
  Q<T>(w);
  Q<T>(dy);
  Q<T>(dx0);
  std::vector<float> y(rows * out);
  ::roformer::LinearForward(x.data(), w.data(), b.data(), y.data(), rows, in, out);
  Dev<T> gx(x.size()), gw(w.size()), gy(y.size()), gdy(dy.size()), gdx(x.size());
  Dev<float> gb(out), gdw(w.size()), gdb(out);
  Dev<char> ws(ColumnSumWorkspaceBytes(out));
  Upload(gx, x);
  Upload(gw, w);
  Upload(gb, b);
  Upload(gdy, dy);
  gy.Poison();
  LinearForward<T>(blas, gx.get(), gw.get(), gb.get(), gy.get(), rows, in, out);
  Compare("linear forward (+bias)", TypeName<T>(), Download(gy), y, Tol<T>());
  for (bool acc : {false, true}) {
    std::vector<float> dx = dx0, dw = dw0, db = db0;
    ::roformer::LinearBackward(dy.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), rows,
                               in, out, acc);
    if (acc) {
      Upload(gdx, dx0);
    } else {
      gdx.Poison();
    }
    Upload(gdw, dw0);
    Upload(gdb, db0);
    LinearBackward<T>(blas, gdy.get(), gx.get(), gw.get(), gdx.get(), gdw.get(), gdb.get(), rows,
                      in, out, acc, ws.get());
    const std::string a = acc ? " (accumulate dx)" : "";
    Compare("linear backward dx" + a, TypeName<T>(), Download(gdx), dx, Tol<T>());
    Compare("linear backward dW (fp32 +=)" + a, TypeName<T>(), Download(gdw), dw, Tol<T>());
    Compare("linear backward db (fp32 +=)" + a, TypeName<T>(), Download(gdb), db, Tol<T>());
  }
}

// ---- cross-entropy ----
template <typename T>
void CheckCrossEntropy() {
  const int64_t rows = 70;
  const int cols = 1024, valid = 1000;  // 24 padded vocabulary columns
  auto logits = Randn(rows * cols, 81, 3.0f);
  Q<T>(logits);
  std::mt19937 g(82);
  std::vector<int32_t> labels(rows);
  for (auto& l : labels) l = static_cast<int32_t>(g() % valid);
  labels[3] = -1;     // ignore_index
  labels[9] = valid;  // a padded column: ignored as well
  labels[10] = -100;  // HF's ignore label
  // Make one row's argmax the label so `correct` is exercised.
  logits[11 * cols + labels[11]] = 40.0f;
  const float grad_scale = 1.0f / 64;
  std::vector<float> dref(logits.size());
  const CrossEntropyStats ref = ::roformer::SoftmaxCrossEntropy(
      logits.data(), labels.data(), rows, cols, valid, dref.data(), grad_scale);
  Dev<T> gl(logits.size());
  Dev<int32_t> glab(rows);
  Dev<CrossEntropyDeviceStats> gst(1);
  Dev<char> ws(CrossEntropyWorkspaceBytes(rows));
  UploadRaw(glab, labels);
  for (bool in_place : {false, true}) {
    Upload(gl, logits);
    Dev<T> gd(logits.size());
    gd.Poison();
    gst.Poison();
    T* dl = in_place ? gl.get() : gd.get();
    SoftmaxCrossEntropy<T>(gl.get(), glab.get(), rows, cols, valid, dl, grad_scale, gst.get(),
                           ws.get(), nullptr);
    const auto st = DownloadRaw(gst)[0];
    const std::string tag = in_place ? " (in place)" : "";
    const double lerr = std::fabs(st.loss_sum - ref.loss_sum) / std::fabs(ref.loss_sum);
    Record("cross-entropy loss sum" + tag, TypeName<T>(), lerr, Tol<T>(),
           std::isfinite(st.loss_sum) && lerr <= Tol<T>());
    const bool counts = st.count == ref.count && st.correct == ref.correct;
    Record("cross-entropy count/correct" + tag, TypeName<T>(), counts ? 0.0 : 1.0, 0, counts,
           std::to_string(st.count) + "/" + std::to_string(st.correct) + " vs " +
               std::to_string(ref.count) + "/" + std::to_string(ref.correct));
    Compare("cross-entropy dlogits" + tag, TypeName<T>(), Download(in_place ? gl : gd), dref,
            Tol<T>());
  }
}

// Vocab-parallel cross-entropy over 2 simulated TP shards; the all-gather of the shard
// summaries is the concatenation of the shards' stats in one buffer (NCCL in the model).
template <typename T>
void CheckVocabParallelCrossEntropy() {
  const int64_t rows = 50;
  const int cols = 512, shards = 2;
  const int64_t num_classes = 1000;  // shard 1 holds 488 real columns and 24 padded ones
  std::mt19937 g(121);
  std::vector<int32_t> labels(rows);
  for (auto& l : labels) l = static_cast<int32_t>(g() % num_classes);
  labels[4] = -100;
  labels[7] = static_cast<int32_t>(num_classes);  // a padded class: ignored
  std::vector<std::vector<float>> logits(shards);
  const int64_t stride = rows * kVocabShardStatsWidth;
  std::vector<double> all_stats(static_cast<size_t>(shards * stride));
  for (int t = 0; t < shards; ++t) {
    logits[t] = Randn(rows * cols, 122 + t, 3.0f);
    Q<T>(logits[t]);
  }
  auto valid = [&](int t) {
    return static_cast<int>(std::min<int64_t>(cols, num_classes - int64_t{t} * cols));
  };
  for (int t = 0; t < shards; ++t)
    ::roformer::VocabShardStats(logits[t].data(), labels.data(), rows, cols, valid(t),
                                int64_t{t} * cols, all_stats.data() + t * stride);
  Dev<int32_t> glab(rows);
  UploadRaw(glab, labels);
  Dev<double> gall(all_stats.size());
  gall.Poison();
  Dev<T> glog0(logits[0].size()), glog1(logits[1].size());
  Dev<T>* glog[2] = {&glog0, &glog1};
  for (int t = 0; t < shards; ++t) {
    Upload(*glog[t], logits[t]);
    VocabShardStats<T>(glog[t]->get(), glab.get(), rows, cols, valid(t), int64_t{t} * cols,
                       gall.get() + t * stride, nullptr);
  }
  {
    const auto got = DownloadRaw(gall);
    std::vector<float> gf(got.begin(), got.end()), rf(all_stats.begin(), all_stats.end());
    // Columns 0 (max), 1 (sum exp), 2 (target) within tolerance; 3 (argmax) exact.
    int64_t arg_diff = 0;
    for (size_t i = 3; i < got.size(); i += 4) arg_diff += got[i] != all_stats[i];
    Compare("vocab-parallel shard stats", TypeName<T>(), gf, rf, Tol<T>(),
            [](size_t i) { return i % 4 != 3; });
    Record("vocab-parallel shard argmax", TypeName<T>(), static_cast<double>(arg_diff), 0,
           arg_diff == 0);
  }
  const float gs = 1.0f / 32;
  Dev<CrossEntropyDeviceStats> gst(1);
  Dev<char> ws(CrossEntropyWorkspaceBytes(rows));
  for (int t = 0; t < shards; ++t) {
    std::vector<float> dref(logits[t].size());
    const CrossEntropyStats ref = ::roformer::VocabParallelCrossEntropy(
        logits[t].data(), labels.data(), rows, cols, valid(t), int64_t{t} * cols, num_classes,
        all_stats.data(), shards, dref.data(), gs);
    Dev<T> gd(logits[t].size());
    gd.Poison();
    gst.Poison();
    // Pass 2 on the GPU's own shard stats: the whole GPU path against the whole CPU path.
    VocabParallelCrossEntropy<T>(glog[t]->get(), glab.get(), rows, cols, valid(t),
                                 int64_t{t} * cols, num_classes, gall.get(), shards, gd.get(), gs,
                                 gst.get(), ws.get(), nullptr);
    const auto st = DownloadRaw(gst)[0];
    const std::string tag = " shard " + std::to_string(t);
    const double lerr = std::fabs(st.loss_sum - ref.loss_sum) / std::fabs(ref.loss_sum);
    const bool counts = st.count == ref.count && st.correct == ref.correct;
    Record("vocab-parallel CE loss+counts" + tag, TypeName<T>(), lerr, Tol<T>(),
           std::isfinite(st.loss_sum) && lerr <= Tol<T>() && counts,
           std::to_string(st.count) + "/" + std::to_string(st.correct) + " vs " +
               std::to_string(ref.count) + "/" + std::to_string(ref.correct));
    Compare("vocab-parallel CE dlogits" + tag, TypeName<T>(), Download(gd), dref, Tol<T>());
  }
}

// ---- optimizer ----
ParamStore MakeStore(uint32_t seed) {
  ParamStore s;
  s.Declare("a.weight", {300, 70}, Placement::kReplicated, true);
  s.Declare("a.LayerNorm.weight", {70}, Placement::kReplicated, false);
  s.Declare("b.weight", {1001, 3}, Placement::kReplicated, true);
  s.Allocate(true);
  auto p = Randn(s.size(), seed), g = Randn(s.size(), seed + 1, 0.3f);
  auto m = Randn(s.size(), seed + 2, 0.01f), v = Randn(s.size(), seed + 3, 0.01f);
  for (auto& x : v) x = x * x;  // second moments are non-negative
  s.params() = p;
  s.grads() = g;
  s.adam_m() = m;
  s.adam_v() = v;
  return s;
}

void CheckAdamW() {
  ParamStore cpu = MakeStore(91);
  const ParamStore init = MakeStore(91);
  AdamWOptions opt;
  opt.weight_decay = 0.01;
  opt.grad_clip = 1.0;
  const double lr = 1e-3, grad_norm = 5.0;  // > clip: the clip factor is exercised
  const int64_t step = 3;
  AdamWStep(&cpu, opt, lr, step, grad_norm);
  const size_t n = init.size();
  Dev<float> w(n), g(n), m(n), v(n);
  Dev<bf16> w16(n);
  Upload(w, init.params());
  Upload(g, init.grads());
  Upload(m, init.adam_m());
  Upload(v, init.adam_v());
  w16.Poison();
  const AdamWCoefficients c =
      MakeAdamWCoefficients(opt.beta1, opt.beta2, opt.eps, lr, step, opt.grad_clip, grad_norm);
  for (const auto& info : init.infos()) {
    const float decay = info.weight_decay ? static_cast<float>(lr * opt.weight_decay) : 0.0f;
    AdamWUpdate(c, decay, w.get() + info.offset, g.get() + info.offset, m.get() + info.offset,
                v.get() + info.offset, info.numel, w16.get() + info.offset, nullptr);
  }
  Compare("adamw weights", "f32", Download(w), cpu.params(), kTolF32);
  Compare("adamw m", "f32", Download(m), cpu.adam_m(), kTolF32);
  Compare("adamw v", "f32", Download(v), cpu.adam_v(), kTolF32);
  std::vector<float> w_bf = cpu.params();
  for (float& x : w_bf) x = RoundBf16(x);
  Compare("adamw bf16 weight copy", "bf16", Download(w16), w_bf, kTolBf16);
}

void CheckGradNorm() {
  for (bool inject_nan : {false, true}) {
    ParamStore s = MakeStore(101);
    if (inject_nan) s.grads()[s.infos()[2].offset + 5] = NAN;
    const GradCheck ref = CheckGradients(s);
    std::vector<int64_t> offsets;
    for (const auto& info : s.infos()) offsets.push_back(info.offset);
    offsets.push_back(s.infos().back().offset + s.infos().back().numel);
    const int nseg = static_cast<int>(s.infos().size());
    Dev<float> g(s.size());
    Dev<int64_t> doff(offsets.size());
    Dev<double> per(nseg), total(1);
    Dev<int> bad(1);
    Dev<char> ws(GradNormWorkspaceBytes(nseg));
    Upload(g, s.grads());
    UploadRaw(doff, offsets);
    per.Poison();
    total.Poison();
    GradSumSquares(g.get(), doff.get(), nseg, per.get(), total.get(), bad.get(), ws.get(), nullptr);
    const double norm = std::sqrt(DownloadRaw(total)[0]);
    const int first_bad = DownloadRaw(bad)[0];
    if (!inject_nan) {
      const double err = std::fabs(norm - ref.norm) / ref.norm;
      Record("grad norm (fp64)", "f32", err, 1e-12, err <= 1e-12);
    } else {
      const bool ok = !ref.finite && first_bad == 2 && ref.first_bad == s.infos()[2].name;
      Record("grad norm first non-finite tensor", "f32", ok ? 0 : 1, 0, ok,
             "gpu segment " + std::to_string(first_bad) + ", cpu '" + ref.first_bad + "'");
    }
  }
}

// ---- determinism: the same launch twice gives the same bits ----
void CheckDeterminism(Blas& blas) {
  AttentionDims dims;
  dims.batch = 2;
  dims.seq = 64;
  dims.heads = 4;
  dims.head_dim = 32;
  dims.ld = 128;
  AttentionParams p;
  p.realformer = true;
  p.has_prev = true;
  p.log_n = true;
  p.dropout = MakeSpec(0.1f, 4 * 64 * 64, 0, 9);
  const size_t te = 2 * 64 * 128, se = 2 * 4 * 64 * 64;
  auto q = Randn(te, 111), k = Randn(te, 112), v = Randn(te, 113), dc = Randn(te, 114);
  auto carry = Randn(se, 115);
  Dev<bf16> gq(te), gk(te), gv(te), gdc(te), gp(se), gctx(te), gdq(te), gdk(te), gdv(te);
  Dev<float> gcarry(se), gdcarry(se);
  Dev<char> ws(AttentionWorkspaceBytes<bf16>(dims, p));
  Upload(gq, q);
  Upload(gk, k);
  Upload(gv, v);
  Upload(gdc, dc);
  std::vector<float> first;
  bool same = true;
  for (int run = 0; run < 2; ++run) {
    Upload(gcarry, carry);
    gdcarry.Poison();
    AttentionForward<bf16>(blas, dims, p, gq.get(), gk.get(), gv.get(), nullptr, gcarry.get(),
                           gp.get(), gctx.get(), ws.get());
    AttentionBackward<bf16>(blas, dims, p, gdc.get(), gq.get(), gk.get(), gv.get(), nullptr,
                            gp.get(), gdcarry.get(), false, gdq.get(), gdk.get(), gdv.get(),
                            ws.get());
    std::vector<float> all = Download(gdq);
    for (const auto* d : {&gdk, &gdv}) {
      auto x = Download(*d);
      all.insert(all.end(), x.begin(), x.end());
    }
    auto x = Download(gdcarry);
    all.insert(all.end(), x.begin(), x.end());
    if (run == 0) {
      first = all;
    } else {
      same = std::memcmp(first.data(), all.data(), all.size() * sizeof(float)) == 0;
    }
  }
  Record("deterministic: attention fwd+bwd twice", "bf16", same ? 0 : 1, 0, same,
         same ? "bit-identical" : "results differ between runs");
}

template <typename T>
void RunAll(Blas& blas) {
  for (int pad : {0, 3})
    for (int t = 0; t < 4; ++t) CheckGemm<T, T>(blas, t & 1, t & 2, pad, 1000 + 10 * t + pad);
  if (kIsBf16<T>) CheckGemm<T, float>(blas, true, false, 0, 1100);
  CheckBatchedGemm<T>(blas);
  CheckActivations<T>();
  CheckLayerNorm<T>(257, 768);
  CheckLayerNorm<T>(64, 100);
  CheckRope<T>();
  CheckDropout<T>();
  CheckEmbedding<T>();
  const AttnCase cases[] = {
      {"plain", false, false, false, false, false, false, 1.0f},
      {"realformer layer0", true, false, false, true, false, false, 1.0f},
      {"realformer+logn+mask+dropout(tp)", true, true, true, true, true, true, 1.0f / 3},
      {"logn+mask+dropout", false, false, true, true, true, false, 1.0f},
  };
  uint32_t seed = 200;
  for (const auto& c : cases) CheckAttention<T>(blas, c, seed += 10);
  CheckAttentionRecompute<T>(blas, false, false, 300);
  CheckAttentionRecompute<T>(blas, true, false, 310);
  CheckAttentionRecompute<T>(blas, true, true, 320);
  CheckLinear<T>(blas);
  CheckCrossEntropy<T>();
  CheckVocabParallelCrossEntropy<T>();
}

int Main() {
  int devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&devices);
  if (err != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "device count 0");
    return 77;
  }
  cudaDeviceProp prop;
  ROFORMER_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("op_parity on %s (sm_%d%d), fp32 tol %.0e, bf16 tol %.0e\n", prop.name, prop.major,
              prop.minor, kTolF32, kTolBf16);
  BlasOptions bo;
  bo.deterministic = true;
  Blas blas(nullptr, bo);  // default stream: the checks synchronise on download anyway
  RunAll<float>(blas);
  RunAll<bf16>(blas);
  for (auto [r, c, o] : {std::tuple{33, 500, 3}, std::tuple{7, 4096, 0}, std::tuple{5, 13, 1}})
    CheckDropoutMask(r, c, 2 * c + 1, o);
  CheckAdamW();
  CheckGradNorm();
  CheckDeterminism(blas);
  ROFORMER_CUDA_CHECK(cudaDeviceSynchronize());

  int failed = 0;
  std::printf("\n==== op parity summary (%zu checks) ====\n", g_rows.size());
  std::printf("%-44s %-5s %-10s %-6s %s\n", "check", "type", "error", "tol", "result");
  for (const auto& r : g_rows) {
    failed += !r.pass;
    std::printf("%-44s %-5s %-10.3e %-6.0e %s\n", r.op.c_str(), r.dtype.c_str(), r.err, r.tol,
                r.pass ? "PASS" : "FAIL");
  }
  std::printf("%d of %zu checks failed\n", failed, g_rows.size());
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace roformer::cuda

int main() { return roformer::cuda::Main(); }
