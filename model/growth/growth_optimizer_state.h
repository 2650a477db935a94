// Adam state across a growth step (anchors-growth.md §3.10, Staged Training's ÷2/÷4 generalised).
//
// Gradient rule: at the grown point every copied entry's gradient is the source entry's gradient
// times r = 1 / (scale * c_out), where c_out is the multiplicity of the unit the entry WRITES into
// (hidden coordinate k, head channel k_heads, FFN neuron c_i, vocab / classifier outputs 1) and
// `scale` the recipe's extra value factor (MLM LN 1/k -> r = 1; key √k_d -> r = 1/(k_heads √k_d)).
// The in-dim split does not enter. So Adam's moments map as
//     m~ = m[src] * r,   v~ = v[src] * r^2        (copy pattern on both axes, no ÷c_in)
// which keeps m̂/√v̂ per entry equal to the source's: the first steps after growth move every copy
// exactly as the source moved (exact for Δ = 0, an approximation for small random Δ). Brand-new
// entries (new head channels, new FFN units, inserted layers, padding rows) get m = v = 0, and the
// step count is kept (Adam bias correction continues), as in MSG.
//
// LR schedule (for the stage scheduler, not done here): new entries with m = v = 0 take a first
// update of ≈ lr·(1-β1)/√(1-β2) ≈ 3.2·lr per entry, and split readers move the effective
// (summed) weight c_in× faster, so continue with the TARGET model's schedule at the current step
// with a short linear re-warmup (Staged Training: 150-200 steps).
#pragma once

#include <cstdint>

#include "model/growth/growth_recipe.h"

namespace roformer {

// r of the gradient rule for the entry with source indices (src_row, src_col) (both >= 0).
double GrowthGradientRatio(const TensorRecipe& r, int64_t src_row, int64_t src_col);

// Fills dst->m and dst->v (shape of dst->param) from src.m / src.v per the rule above.
void MapAdamMoments(const GrowthTensor& src, const TensorRecipe& r, GrowthTensor* dst);

// Brand-new tensor: m = v = 0 of the parameter's size (when `with_moments`), else empty.
void ZeroAdamMoments(GrowthTensor* t, bool with_moments);

}  // namespace roformer
