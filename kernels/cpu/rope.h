// Rotary position embedding (RoFormer, Su et al. 2021) in HF RoFormer's convention: INTERLEAVED
// pairs (2i, 2i+1) rotated by p * theta_i, theta_i = 10000^(-2i/d) — not GPT-NeoX's split halves.
#pragma once

#include <cstdint>
#include <vector>

namespace roformer {

// HF's RoFormerSinusoidalPositionalEmbedding table [max_positions, head_dim]: row p is
// [sin(p*theta_0) .. sin(p*theta_{d/2-1}) | cos(p*theta_0) .. cos(p*theta_{d/2-1})], computed in
// float64 as numpy does (p / 10000^(2i/d)) and then cast to float32.
std::vector<float> RopeTable(int max_positions, int head_dim);

// In place on x viewed as [batch, seq, heads, head_dim] with row stride `ld` floats per token
// (heads * head_dim when dense); token t uses position t (right padding keeps positions 0-based).
//   x'[2i] = x[2i] cos - x[2i+1] sin,  x'[2i+1] = x[2i+1] cos + x[2i] sin.
void RopeForward(float* x, const float* table, int batch, int seq, int heads, int head_dim,
                 int64_t ld);
// The transpose (= inverse) rotation applied to the gradient, in place.
void RopeBackward(float* dx, const float* table, int batch, int seq, int heads, int head_dim,
                  int64_t ld);

}  // namespace roformer
