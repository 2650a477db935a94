// Parameters, gradients and AdamW moments in four flat fp32 buffers with named views (llm.c style):
// collectives, ZeRO slicing and checkpoints then work on whole buffers, and a training step
// allocates nothing. Every tensor declares its tensor-parallel placement so gradient fix-ups and
// checkpoint resharding are derived from the declaration, not hand-maintained.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace roformer {

enum class Placement {
  kReplicated,  // every TP rank holds the whole tensor
  kShardDim0,   // split along dim 0 (column-parallel weight [out, in], its bias, vocab rows)
  kShardDim1,   // split along dim 1 (row-parallel weight [out, in])
};

struct ParamInfo {
  std::string
      name;  // HF-style logical name, e.g. roformer.encoder.layer.0.attention.self.query.weight
  std::vector<int64_t> global_shape;  // logical (unsharded) shape
  std::vector<int64_t> local_shape;   // this TP rank's shard
  Placement placement = Placement::kReplicated;
  int64_t offset = 0;        // element offset of the local shard in the flat buffers
  int64_t numel = 0;         // local element count
  bool weight_decay = true;  // false for LayerNorm weights, biases
  // For sharded tensors: where the local shard starts along the sharded dim (global coordinates).
  int64_t shard_start = 0;
  // Rows of dim 0 that carry meaning when the tensor is padded to a TP-dependent row count (the
  // vocab-sized word embeddings and MLM bias: padded to a multiple of 128 * tp); rows from here on
  // are zero by construction (never initialised, never receive a gradient, so AdamW keeps them and
  // their moments at exactly 0). -1: not padded, the global shape is layout-independent. Checkpoint
  // loading pads/trims dim 0 of such tensors so any TP layout restores any other.
  int64_t logical_rows = -1;
};

class ParamStore {
 public:
  // Declares a tensor; call before Allocate(). `tp_rank`/`tp_size` shard along the placement's dim
  // (which must divide evenly; checked by the caller's config validation). `logical_rows` >= 0
  // marks a tensor whose dim 0 is padded beyond that many meaningful rows (ParamInfo).
  void Declare(const std::string& name, std::vector<int64_t> global_shape, Placement placement,
               bool weight_decay, int tp_rank = 0, int tp_size = 1, int64_t logical_rows = -1);
  // Allocates params, grads, m and v (zero-filled). `with_optimizer` false skips m and v.
  void Allocate(bool with_optimizer = true);

  int64_t size() const { return total_; }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  const ParamInfo& info(const std::string& name) const;
  bool has(const std::string& name) const { return index_.count(name) > 0; }

  float* param(const std::string& name) { return params_.data() + info(name).offset; }
  float* grad(const std::string& name) { return grads_.data() + info(name).offset; }
  const float* param(const std::string& name) const { return params_.data() + info(name).offset; }

  std::vector<float>& params() { return params_; }
  std::vector<float>& grads() { return grads_; }
  std::vector<float>& adam_m() { return m_; }
  std::vector<float>& adam_v() { return v_; }
  const std::vector<float>& params() const { return params_; }
  const std::vector<float>& grads() const { return grads_; }
  const std::vector<float>& adam_m() const { return m_; }
  const std::vector<float>& adam_v() const { return v_; }

  void ZeroGrads();

 private:
  std::vector<ParamInfo> infos_;
  std::unordered_map<std::string, size_t> index_;
  int64_t total_ = 0;
  std::vector<float> params_, grads_, m_, v_;
};

}  // namespace roformer
