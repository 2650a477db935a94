// Host-side checks of the CUDA backend that need no GPU (ctest label unit, runs in CI): the code
// that the kernels share with the host through __host__ __device__ headers is run here against
// the CPU backend it must match.
//  - philox_device.cuh: Philox words equal runtime/philox.h's; the dropout kernels' block walk
//    (RowBlocks + ForBlockElements, every thread's work simulated on the host) yields exactly
//    kernels/cpu/dropout.h's keep bits, each element once, for aligned and unaligned rows.
//  - adamw_element.cuh + MakeAdamWCoefficients: equal model/optimizer.cc's AdamWStep.
//  - BuildEmbeddingGroups + the grouped embedding backward's loop: the CPU kernel's sums, bit
//    for bit.
//  - The library degrades cleanly without a device (DeviceCount() == 0, no abort).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/dropout.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cuda/adamw_element.cuh"
#include "kernels/cuda/device_query.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/philox_device.cuh"
#include "model/optimizer.h"
#include "runtime/param_store.h"
#include "runtime/philox.h"

namespace {

int g_failures = 0;

void Expect(bool ok, const std::string& what) {
  std::printf("%s  %s\n", ok ? "PASS" : "FAIL", what.c_str());
  if (!ok) ++g_failures;
}

void PhiloxWordsMatch() {
  std::mt19937_64 g(7);
  int64_t mismatches = 0;
  for (int i = 0; i < 200000; ++i) {
    const uint64_t key = g(), stream = g(), index = i < 1000 ? static_cast<uint64_t>(i) : g();
    mismatches +=
        roformer::cuda::WordAt(key, stream, index) != roformer::WordFromCounter(key, stream, index);
  }
  Expect(mismatches == 0, "philox_device.cuh words == runtime/philox.h (200000 draws)");
}

// Simulates DropoutKernel's grid on the host: every row, every block of RowBlocks.
void DropoutWalkMatches(int64_t rows, int64_t cols, int64_t cols_global, int64_t col_offset) {
  roformer::DropoutSpec s;
  s.p = 0.1f;
  s.key = 0x1234567890abcdefull;
  s.stream = roformer::DropoutStreamId(11, 2, 5, 1);
  s.cols_global = cols_global;
  s.col_offset = col_offset;
  std::vector<int> seen(static_cast<size_t>(rows * cols), 0);
  int64_t wrong = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const auto rb = roformer::cuda::RowBlocks(r, cols, cols_global, col_offset);
    for (uint64_t j = rb.first; j <= rb.last; ++j) {
      roformer::cuda::ForBlockElements(s.key, s.stream, s.p, rb.base, cols, j,
                                       [&](int64_t c, bool keep) {
                                         ++seen[r * cols + c];
                                         wrong += keep != roformer::DropoutKeep(s, r, c);
                                       });
    }
  }
  int64_t not_once = 0;
  for (int v : seen) not_once += v != 1;
  Expect(wrong == 0 && not_once == 0,
         "dropout block walk == kernels/cpu/dropout.h keep bits, " + std::to_string(rows) + "x" +
             std::to_string(cols) + " of " + std::to_string(cols_global) + " @" +
             std::to_string(col_offset) + " (wrong " + std::to_string(wrong) +
             ", not visited once " + std::to_string(not_once) + ")");
}

// docs/cuda.md's batch chunking of the attention: rows b0 .. b0 + rows - 1 of the [B, heads*L*L]
// view, run as a batch of their own with col_offset += b0 * cols_global, draw the keep bits of
// the whole batch's rows.
void ChunkedDropoutMatches(int64_t b0, int64_t rows, int64_t cols, int64_t cols_global,
                           int64_t col_offset) {
  roformer::DropoutSpec full;
  full.p = 0.1f;
  full.key = 0xfeedfacecafebeefull;
  full.stream = roformer::DropoutStreamId(3, 0, 7, 1);
  full.cols_global = cols_global;
  full.col_offset = col_offset;
  roformer::DropoutSpec chunk = full;
  chunk.col_offset = col_offset + b0 * cols_global;
  int64_t wrong = 0, visited = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const auto rb = roformer::cuda::RowBlocks(r, cols, cols_global, chunk.col_offset);
    for (uint64_t j = rb.first; j <= rb.last; ++j) {
      roformer::cuda::ForBlockElements(chunk.key, chunk.stream, chunk.p, rb.base, cols, j,
                                       [&](int64_t c, bool keep) {
                                         ++visited;
                                         wrong += keep != roformer::DropoutKeep(full, b0 + r, c);
                                       });
    }
  }
  Expect(wrong == 0 && visited == rows * cols,
         "batch-chunked attention dropout (rows " + std::to_string(b0) + ".." +
             std::to_string(b0 + rows - 1) + ") == the whole batch's keep bits (wrong " +
             std::to_string(wrong) + ")");
}

void AdamWMatches() {
  roformer::ParamStore s;
  s.Declare("w", {257, 31}, roformer::Placement::kReplicated, true);
  s.Declare("ln", {31}, roformer::Placement::kReplicated, false);
  s.Allocate(true);
  std::mt19937 g(3);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (auto& x : s.params()) x = n(g);
  for (auto& x : s.grads()) x = 0.3f * n(g);
  for (auto& x : s.adam_m()) x = 0.01f * n(g);
  for (auto& x : s.adam_v()) x = 1e-4f * n(g) * n(g);
  roformer::ParamStore ref = s;
  roformer::AdamWOptions opt;
  const double lr = 2e-3, norm = 3.0;
  const int64_t step = 5;
  roformer::AdamWStep(&ref, opt, lr, step, norm);
  const auto c = roformer::cuda::MakeAdamWCoefficients(opt.beta1, opt.beta2, opt.eps, lr, step,
                                                       opt.grad_clip, norm);
  double max_rel = 0;
  for (const auto& info : s.infos()) {
    const float decay = info.weight_decay ? static_cast<float>(lr * opt.weight_decay) : 0.0f;
    for (int64_t i = info.offset; i < info.offset + info.numel; ++i) {
      float w = s.params()[i], m = s.adam_m()[i], v = s.adam_v()[i];
      roformer::cuda::AdamWElement(c, decay, s.grads()[i], &w, &m, &v);
      for (auto [got, want] : {std::pair{w, ref.params()[i]}, std::pair{m, ref.adam_m()[i]},
                               std::pair{v, ref.adam_v()[i]}}) {
        const double d = std::fabs(static_cast<double>(got) - want);
        max_rel = std::fmax(max_rel, d / std::fmax(std::fabs(static_cast<double>(want)), 1e-30));
      }
    }
  }
  Expect(max_rel <= 1e-6,
         "adamw_element.cuh + coefficients == model/optimizer.cc AdamWStep (max "
         "rel " +
             std::to_string(max_rel) + ")");
}

// BuildEmbeddingGroups + the grouped kernel's loop (simulated here) against the CPU kernel:
// every kept row once, ascending within its id, and bit-identical sums.
void EmbeddingGroupsMatch() {
  const int64_t rows = 500, row_start = 40, local_rows = 60;
  const int dim = 24;
  std::mt19937 g(11);
  std::vector<int32_t> ids(rows);
  for (auto& id : ids) id = static_cast<int32_t>(g() % 120);
  ids[3] = 45;  // the skipped id
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> dout(rows * dim), table(local_rows * dim);
  for (auto& x : dout) x = n(g);
  for (auto& x : table) x = n(g);
  std::vector<float> ref = table, got = table;
  roformer::EmbeddingBackward(ids.data(), dout.data(), ref.data(), rows, dim, row_start, local_rows,
                              45);
  roformer::cuda::EmbeddingGroups groups;
  roformer::cuda::BuildEmbeddingGroups(ids.data(), rows, row_start, local_rows, 45, &groups);
  bool ordered = groups.starts.size() == groups.ids.size() + 1;
  int64_t kept = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t id = ids[r] - row_start;
    kept += ids[r] != 45 && id >= 0 && id < local_rows;
  }
  ordered &= static_cast<int64_t>(groups.rows.size()) == kept;
  for (size_t k = 0; k < groups.ids.size(); ++k) {
    for (int c = 0; c < dim; ++c) {
      float acc = got[groups.ids[k] * dim + c];
      for (int i = groups.starts[k]; i < groups.starts[k + 1]; ++i) {
        acc += dout[groups.rows[i] * dim + c];
        if (c == 0 && i > groups.starts[k]) ordered &= groups.rows[i] > groups.rows[i - 1];
        if (c == 0) ordered &= ids[groups.rows[i]] - row_start == groups.ids[k];
      }
      got[groups.ids[k] * dim + c] = acc;
    }
  }
  const bool equal = std::memcmp(got.data(), ref.data(), ref.size() * sizeof(float)) == 0;
  Expect(ordered && equal, "embedding groups: " + std::to_string(groups.ids.size()) + " ids, " +
                               std::to_string(kept) +
                               " rows, ascending per id, sums bit-equal to the CPU kernel");
}

}  // namespace

int main() {
  PhiloxWordsMatch();
  DropoutWalkMatches(33, 500, 1001, 3);     // unaligned rows: blocks shared between rows
  DropoutWalkMatches(7, 4096, 8192, 4096);  // aligned TP shard
  DropoutWalkMatches(5, 1, 3, 2);           // one element per row
  DropoutWalkMatches(3, 3 * 64 * 64, 6 * 64 * 64, 3 * 64 * 64);  // attention [B, heads*L*L] view
  ChunkedDropoutMatches(2, 3, 3 * 48 * 48, 6 * 48 * 48, 3 * 48 * 48);  // TP heads 3..5, rows 2..4
  AdamWMatches();
  EmbeddingGroupsMatch();
  const int devices = roformer::cuda::DeviceCount();
  Expect(devices >= 0, "DeviceCount() answers without aborting (" + std::to_string(devices) +
                           " devices: " + roformer::cuda::DescribeDevices() + ")");
  std::printf("%d failures\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
