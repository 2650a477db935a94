// `roformer ckpt diff A B`: compares two checkpoints tensor by tensor (any layouts: both are
// assembled to their logical tensors). Vocab-padded tensors of different TP layouts differ only in
// their padded rows; those are compared on the rows both have.
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
  for (const LoadedTensor& ta : a.tensors) {
    const LoadedTensor* tb = b.Find(ta.name, ta.kind);
    if (!tb) Fail(b.dir, ": has no tensor '", ta.name, "' (", ckpt::TensorKind_Name(ta.kind), ")");
    if (ta.shape.size() != tb->shape.size() ||
        !std::equal(ta.shape.begin() + (ta.shape.empty() ? 0 : 1), ta.shape.end(),
                    tb->shape.begin() + (tb->shape.empty() ? 0 : 1))) {
      Fail("tensor '", ta.name, "': shapes differ beyond dim 0");
    }
    // Compare the rows both have (vocab padding depends on the TP size).
    const size_t row = ta.shape.empty() ? 1 : ta.data.size() / std::max<int64_t>(1, ta.shape[0]);
    const size_t n = std::min(ta.data.size(), tb->data.size());
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < n; ++i) {
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(ta.data[i]) - tb->data[i]));
      max_ref = std::max(max_ref, std::fabs(static_cast<double>(ta.data[i])));
    }
    (void)row;
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
                    "layout are compared on the rows both checkpoints have.",
                    &RunCkptDiff);

}  // namespace
}  // namespace roformer
