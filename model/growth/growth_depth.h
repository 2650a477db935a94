// Exact depth growth: insert new encoder layers (anchors-growth.md §3.7).
//
// A new layer is a function-preserving no-op:
//  * W_O = b_O = 0 and W_2 = b_2 = 0: both residual branches add exactly 0;
//  * W_Q = b_Q = 0 when RealFormer is on: its local scores are 0, so the running score sum it
//    hands on is unchanged for every later layer (a random W_Q would pollute it: §3.7 measured
//    max |Δlogits| 0.44); W_K, W_V, W_1 random N(0, init_std) so gradients flow once W_O, W_2 move;
//  * Post-LN: both LayerNorms of the new layer would re-normalise an already normalised vector,
//    so the LN affine moves (LEMON's Post-LN trick): the new layer's FFN LayerNorm takes the
//    preceding layer's FFN LayerNorm (γ_i, β_i) (the embedding LayerNorm when inserting below
//    layer 0), that one becomes identity-affine, the new attention LN is identity. Output
//    γ_i·n(n(n(y))) + β_i = γ_i·n(y) + β_i up to O(ε/σ²): fp32-exact with ε = 1e-12;
//  * Pre-LN: x + 0 + 0 is exact bit for bit; LNs identity, the final LayerNorm untouched.
// Running-mean RealFormer divides layer l's summed scores by l+1, so inserting below the top
// changes every later layer: refused; appending at the top is exact.
// Adam: the moved LN affine carries its moments with it; all other new entries m = v = 0.
#pragma once

#include <cstdint>
#include <vector>

#include "model/growth/growth_recipe.h"
#include "runtime/config.pb.h"

namespace roformer {

// Inserts one new layer per entry of `positions`. Position p in [0, L] (L = cfg's layer count)
// puts the new layer after the first p source layers (L: append at the top); equal positions
// stack several new layers there. `cfg` describes `src` (its width); the result has
// L + positions.size() layers. Throws Error for bad positions and for the refused cases above.
GrowthTensors GrowDepth(const GrowthTensors& src, const config::ModelConfig& cfg,
                        std::vector<int> positions, uint64_t seed, double init_std);

}  // namespace roformer
