// Inverted dropout with counter-based masks. The keep bit of a logical element is a pure function
// of (seed, stream, logical index) through Philox4x32-10, so
//  - the backward regenerates the mask instead of storing it,
//  - a tensor-parallel shard holding columns [col_offset, col_offset + cols_local) of a logical
//    [rows, cols_global] tensor draws exactly the bits TP = 1 draws for those columns,
//  - resume reproduces masks from (seed, step, micro, layer, op).
#pragma once

#include <cstdint>

namespace roformer {

struct DropoutSpec {
  float p = 0;              // drop probability; 0 = identity (also the eval path)
  uint64_t key = 0;         // run seed
  uint64_t stream = 0;      // DropoutStreamId(step, micro, layer, op)
  int64_t cols_global = 0;  // logical row width
  int64_t col_offset = 0;   // first logical column held locally
};

uint64_t DropoutStreamId(uint64_t step, uint32_t micro, uint32_t layer, uint32_t op);

// Keep bit of logical element (row, col_offset + col): uniform >= p.
bool DropoutKeep(const DropoutSpec& s, int64_t row, int64_t col);

// Philox words of logical elements base .. base + n - 1 of stream s (words[i] is word (base+i) % 4
// of block (base+i) / 4, bit-identical to WordFromCounter(s.key, s.stream, base + i)); 16 blocks
// at a time with AVX-512 where available. n <= kDropoutChunk.
constexpr int64_t kDropoutChunk = 1024;
void DropoutWords(const DropoutSpec& s, uint64_t base, int64_t n, uint32_t* words);

// out[i] = keep(base + i) ? in[i] / (1 - p) : 0 for n contiguous logical elements starting at
// logical index base (out may alias in); any n. The building block of every dropout here.
void DropoutRange(const DropoutSpec& s, uint64_t base, int64_t n, const float* in, float* out);

// y = x * keep / (1 - p) over a local [rows, cols] tensor; y may alias x. Identity copy when p = 0.
void DropoutForward(const DropoutSpec& s, const float* x, float* y, int64_t rows, int64_t cols);
// dx = dy * keep / (1 - p) with the regenerated mask; dx may alias dy.
void DropoutBackward(const DropoutSpec& s, const float* dy, float* dx, int64_t rows, int64_t cols);

// Post-projection epilogue, in place: y = residual + dropout(y + bias) (bias may be null). Its
// backward is DropoutBackward (the residual passes the gradient through unchanged).
void BiasDropoutResidualForward(const DropoutSpec& s, float* y, const float* bias,
                                const float* residual, int64_t rows, int64_t cols);

}  // namespace roformer
