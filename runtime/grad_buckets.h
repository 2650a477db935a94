// The data-parallel gradient bucket layout shared by the CPU GradReducer (runtime/grad_reducer.h)
// and the GPU's NCCL reducer (model/cuda/cuda_grad_reducer.h): contiguous ranges of the ParamStore
// flat buffer in REVERSE declaration order (backward finishes the last tensors first). Bucket 0 is
// capped at first_bucket_bytes so communication starts early; the others hold up to bucket_bytes;
// only a tensor larger than a whole bucket is split. Every rank derives the same layout from the
// same store, so the collective sequence matches across ranks by construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/param_store.h"

namespace roformer {

struct GradBucketPiece {
  size_t tensor;  // index into the store's infos()
  int64_t begin, end;
};

struct GradBucket {
  int64_t begin = 0, end = 0;           // flat range
  std::vector<GradBucketPiece> pieces;  // in reverse declaration order, contiguous
};

// Elements are fp32 (4 bytes) for the byte caps.
std::vector<GradBucket> PlanGradBuckets(const std::vector<ParamInfo>& infos, int64_t bucket_bytes,
                                        int64_t first_bucket_bytes);

// For each tensor (index into infos), the buckets holding a piece of it.
std::vector<std::vector<int>> BucketsOfTensors(const std::vector<GradBucket>& buckets,
                                               size_t num_tensors);

}  // namespace roformer
