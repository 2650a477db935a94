// `roformer ckpt diff A B`: compares two checkpoints tensor by tensor (any layouts: both are
// assembled to their logical tensors). Vocab-padded tensors of different TP layouts differ only in
// their padded rows: those must be zero (the RestoreInto rule) and the rows both have are compared.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "launch/command.h"
#include "runtime/checkpoint.h"
#include "runtime/error.h"
#include "runtime/flags.h"

namespace roformer {
namespace {

int RunCkptDiff(int argc, char** argv) {
  Flags flags(argc, argv, {"tolerance", "params-only!"});
  if (flags.positional().size() != 2) Fail("usage: roformer ckpt diff A B [--tolerance REL]");
  const double tol = flags.GetDouble("tolerance", 0.0);
  const bool with_opt = !flags.GetBool("params-only");
  LoadedCheckpoint a = LoadCheckpoint(flags.positional()[0], with_opt);
  LoadedCheckpoint b = LoadCheckpoint(flags.positional()[1], with_opt);
  double worst = 0;
  std::string worst_name;
  int compared = 0;
  // Vocab rows padded to 128 * tp: the rule RestoreInto applies (checkpoint.h: PaddedRowsToCopy),
  // with the unpadded vocab size both manifests record.
  const int64_t va = a.manifest.vocab().size(), vb = b.manifest.vocab().size();
  const int64_t logical_rows = va > 0 && va == vb ? va : -1;
  for (const LoadedTensor& ta : a.tensors) {
    const LoadedTensor* tb = b.Find(ta.name, ta.kind);
    if (!tb) Fail(b.dir, ": has no tensor '", ta.name, "' (", ckpt::TensorKind_Name(ta.kind), ")");
    // Only the vocab-padded tensors (dim 0 = each manifest's padded vocab) may differ in dim 0.
    const bool padded = !ta.shape.empty() && !tb->shape.empty() &&
                        ta.shape[0] == a.manifest.vocab().padded_size() &&
                        tb->shape[0] == b.manifest.vocab().padded_size();
    const int64_t lr = padded ? logical_rows : -1;
    const std::string what = "tensor '" + ta.name + "' (" + ckpt::TensorKind_Name(ta.kind) + ")";
    // Either direction trims: the longer tensor's extra rows must be zero.
    int64_t rows =
        ta.shape.size() > tb->shape.size() ||
                (!ta.shape.empty() && tb->shape.size() == ta.shape.size() &&
                 ta.shape[0] > tb->shape[0])
            ? PaddedRowsToCopy(what, lr, ta.shape, ta.data.data(), tb->shape, a.dir, b.dir)
            : PaddedRowsToCopy(what, lr, tb->shape, tb->data.data(), ta.shape, b.dir, a.dir);
    // Compare the rows both have (padding rows beyond them were checked to be zero).
    const size_t row = ta.shape.empty() ? 1 : ta.data.size() / std::max<int64_t>(1, ta.shape[0]);
    const size_t n = std::min({ta.data.size(), tb->data.size(), row * static_cast<size_t>(rows)});
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < n; ++i) {
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(ta.data[i]) - tb->data[i]));
      max_ref = std::max(max_ref, std::fabs(static_cast<double>(ta.data[i])));
    }
    const double rel = max_diff / std::max(max_ref, 1e-12);
    if (rel > worst || worst_name.empty()) {
      worst = rel;
      worst_name = ta.name + " (" + ckpt::TensorKind_Name(ta.kind) + ")";
    }
    ++compared;
  }
  std::printf("compared %d tensors; worst relative difference %.3g in %s\n", compared, worst,
              worst_name.c_str());
  std::printf("{\"tensors\":%d,\"max_rel_diff\":%.9g}\n", compared, worst);
  return worst <= tol ? 0 : 1;
}

RegisterCommand reg("ckpt diff", "compare two checkpoints tensor by tensor (any layouts)",
                    "roformer ckpt diff A B [--tolerance REL] [--params-only]\n"
                    "Prints the worst max|a-b|/max|a| over tensors; exits 1 when it exceeds\n"
                    "--tolerance (default 0: bit-identical). Tensors padded to the vocab of a TP\n"
                    "layout are compared on the rows both checkpoints have; the extra padding\n"
                    "rows must be zero. Any other shape difference is an error.",
                    &RunCkptDiff);

}  // namespace
}  // namespace roformer
