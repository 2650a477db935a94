// Head-channel map for heads ×k_heads and head_dim ×k_d (anchors-growth.md §3.1, §3.5).
//
// Heads: grown head e copies source head e mod H, the SAME map in every layer, so the RealFormer
// running score sums stay per-head copies by induction (carried scores of head e == source head
// e mod H).
//
// head_dim (exact with RoPE, stride placement): RoPE rotates interleaved pair i by p·θ_i with
// θ_i = 10000^(-2i/d) (kernels/cpu/rope.h). For d^ = k_d·d, θ^_{k_d·i} = 10000^(-2 k_d i/(k_d d))
// = θ_i exactly (and the fp64 table computes the same rational 2i/d, so even the fp32 table rows
// agree bit for bit). Old pair i of a head therefore goes to new pair k_d·i (channels 2 k_d i and
// 2 k_d i + 1); the other pairs are new. Recipe per head: query new channels random, key new
// channels and their bias 0 (so they add nothing to q·k), key (weight and bias) ×√k_d to undo
// 1/√d^ (log_n's log factor does not depend on d); value new channels random with the matching
// output-projection input columns 0 (Gesmundo & Maile's head expansion). Su's pair-repeat
// placement (old pair i -> new pairs 2i, 2i+1) gives pair 2i+1 a wrong frequency and is NOT exact.
// Non-integer ratios (64 -> 96) are not exact either: refused.
#pragma once

#include <cstdint>

#include "model/growth/growth_recipe.h"

namespace roformer {

// Source channel (within a head of size head_dim) of grown channel t of a head of size
// head_dim * k_d under the stride placement, or -1 for a new channel.
int64_t StrideSourceChannel(int64_t t, int head_dim, int k_d);

// Map of the Q/K/V output (= attention output input) axis, [heads*k_heads*head_dim*k_d] ->
// [heads*head_dim]: channel e*d^ + t -> (e mod heads)*d + StrideSourceChannel(t) (or -1).
AxisMap HeadChannelMap(int heads, int head_dim, int k_heads, int k_d);

// Factor on the key weights and bias that keeps q·k/√d^ == q·k/√d: √k_d.
double KeyScaleForHeadDim(int k_d);

}  // namespace roformer
