// One micro-batch as the model consumes it (built by data/ samplers or the CLUE readers).
#pragma once

#include <cstdint>
#include <vector>

namespace roformer {

struct Batch {
  int batch = 0;    // B
  int seq_len = 0;  // L (right-padded; positions 0..L-1 for RoPE)
  std::vector<int32_t> input_ids;       // [B*L]
  std::vector<int32_t> token_type_ids;  // [B*L]
  std::vector<int32_t> attention_mask;  // [B*L], 1 = real token, 0 = padding
  // MLM targets only where a token was selected for prediction: flat index b*L+t and the original id.
  std::vector<int32_t> mlm_positions;
  std::vector<int32_t> mlm_labels;
  // Sentence-order labels per sequence (0 = A then B, 1 = swapped); empty = no SOP loss.
  std::vector<int32_t> sop_labels;
  // Global sample index of each row (for logs and checks); optional.
  std::vector<int64_t> sample_index;
};

}  // namespace roformer
