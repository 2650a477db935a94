// The two growth primitives of anchors-growth.md §3.1 on logical (global-shape) tensors: Copy_π on
// a "copy" axis and Split_π on an in-dim axis, with LEMON-style zero-sum random splits for symmetry
// breaking, plus brand-new entries (zero / one / random fill). Every grown tensor of the width
// operator is described by one TensorRecipe; the Adam-state mapping reads the same recipe
// (growth_optimizer_state.h), so parameters and moments can never disagree on the index maps.
//
// Randomness is counter-based (runtime/philox.h): the value drawn for element e of tensor `name`
// is a pure function of (seed, name, purpose, e), so every rank of a distributed job computes the
// same grown checkpoint without communication and the result does not depend on traversal order.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace roformer {

// One logical tensor during growth: the parameter and, when the checkpoint has optimizer state,
// its Adam moments (same shape). Shapes are global, row-major, HF layout (Linear weight [out, in]).
struct GrowthTensor {
  std::vector<int64_t> shape;
  std::vector<float> param, m, v;  // m, v empty: no optimizer state
  bool has_moments() const { return !m.empty(); }
  int64_t numel() const;
};
using GrowthTensors = std::map<std::string, GrowthTensor>;

// Index map of one tensor axis: grown index -> source index (-1: a brand-new entry with no
// source), and per source index the number of grown indices that map to it (its multiplicity c).
struct AxisMap {
  std::vector<int64_t> src;
  std::vector<int64_t> count;  // sized to the source axis
  int64_t size() const { return static_cast<int64_t>(src.size()); }

  static AxisMap Identity(int64_t n);
  // j -> j mod from for j < to (to >= from): the tile gauge; every source index is hit
  // ceil/floor(to / from) times (uniform when from divides to).
  static AxisMap Tile(int64_t from, int64_t to);
  // Identity on [0, valid), new (-1) on [valid, to); `from` is the source axis size (entries of
  // the source beyond `valid` are dropped, e.g. vocab padding rows).
  static AxisMap Prefix(int64_t from, int64_t valid, int64_t to);
  // Recomputes `count` from `src` for a source axis of `from` entries.
  void Recount(int64_t from);
};

enum class NewFill { kZero, kOne, kNormal };

// How one grown tensor is built from its source (1-D tensors: cols = Identity(1)).
//   value[r, c] = scale * src[rows.src[r], cols.src[c]] / (count of the split axis' source) + Δ
// for entries with both sources present; other entries get `fill` (kNormal: N(0, fill_std)).
struct TensorRecipe {
  AxisMap rows, cols;
  int split_axis = -1;  // axis read from a duplicated input: copies share the value (÷c, +Δ)
  int out_axis = -1;    // axis written into duplicated units: c_out of the gradient rule; -1 = 1
  double scale = 1.0;   // extra factor (MLM LN 1/k for the tied decoder, key √k_d)
  NewFill fill = NewFill::kZero;
  double fill_std = 0.0;
};

// Purposes that select independent random streams for the same tensor.
enum class GrowthDraw : uint64_t { kSplitNoise = 1, kNewUnit = 2, kNewLayer = 3 };

// Standard-normal draw keyed by (seed, tensor name, purpose, element index).
double GrowthNormal(uint64_t seed, const std::string& name, GrowthDraw purpose, uint64_t index);

// Builds the grown tensor: parameters per the recipe with zero-sum split noise of std `noise_std`
// (0: the symmetric Net2Net split), and the Adam moments (when `src` has them) per
// growth_optimizer_state.h. Throws Error when the recipe does not fit the source shape.
GrowthTensor ApplyRecipe(const std::string& name, const GrowthTensor& src, const TensorRecipe& r,
                         uint64_t seed, double noise_std);

}  // namespace roformer
