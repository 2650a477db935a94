#include "runtime/param_store.h"

#include <glog/logging.h>

#include <algorithm>

#include "runtime/error.h"

namespace roformer {

void ParamStore::Declare(const std::string& name, std::vector<int64_t> global_shape,
                         Placement placement, bool weight_decay, int tp_rank, int tp_size,
                         int64_t logical_rows) {
  CHECK(params_.empty()) << "Declare after Allocate: " << name;
  CHECK(!index_.count(name)) << "duplicate parameter " << name;
  ParamInfo p;
  p.name = name;
  p.global_shape = global_shape;
  p.local_shape = global_shape;
  p.placement = placement;
  p.weight_decay = weight_decay;
  if (logical_rows >= 0) {
    CHECK(!global_shape.empty() && logical_rows <= global_shape[0])
        << name << ": logical_rows " << logical_rows << " outside dim 0";
    p.logical_rows = logical_rows;
  }
  int dim = placement == Placement::kShardDim0 ? 0 : placement == Placement::kShardDim1 ? 1 : -1;
  if (dim >= 0) {
    CHECK_LT(dim, static_cast<int>(global_shape.size())) << name;
    if (global_shape[dim] % tp_size != 0) {
      Fail("parameter ", name, " dim ", dim, " = ", global_shape[dim],
           " is not divisible by parallel.tp = ", tp_size);
    }
    p.local_shape[dim] = global_shape[dim] / tp_size;
    p.shard_start = p.local_shape[dim] * tp_rank;
  }
  p.numel = 1;
  for (auto d : p.local_shape) p.numel *= d;
  p.offset = total_;
  total_ += p.numel;
  index_[name] = infos_.size();
  infos_.push_back(std::move(p));
}

void ParamStore::Allocate(bool with_optimizer) {
  params_.assign(total_, 0.0f);
  grads_.assign(total_, 0.0f);
  if (with_optimizer) {
    m_.assign(total_, 0.0f);
    v_.assign(total_, 0.0f);
  }
}

const ParamInfo& ParamStore::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) Fail("unknown parameter ", name);
  return infos_[it->second];
}

void ParamStore::ZeroGrads() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

}  // namespace roformer
