#include "runtime/grad_buckets.h"

#include <glog/logging.h>

#include <algorithm>
#include <utility>

namespace roformer {

std::vector<GradBucket> PlanGradBuckets(const std::vector<ParamInfo>& infos, int64_t bucket_bytes,
                                        int64_t first_bucket_bytes) {
  const int64_t cap = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(float)));
  const int64_t first =
      std::max<int64_t>(1, first_bucket_bytes / static_cast<int64_t>(sizeof(float)));
  std::vector<GradBucket> buckets;
  GradBucket cur;
  int64_t cur_n = 0;
  auto close_bucket = [&] {
    if (!cur.pieces.empty()) buckets.push_back(std::move(cur));
    cur = GradBucket();
    cur_n = 0;
  };
  for (size_t t = infos.size(); t-- > 0;) {
    const int64_t lo = infos[t].offset, n = infos[t].numel;
    if (n == 0) continue;
    if (n > cap) {
      // Only a tensor larger than a whole bucket is split: full-size pieces from the top (backward
      // order), the remainder opens the next bucket and later tensors may join it.
      close_bucket();
      int64_t top = lo + n;
      while (top - lo > cap) {
        GradBucket b;
        b.pieces.push_back({t, top - cap, top});
        buckets.push_back(std::move(b));
        top -= cap;
      }
      cur.pieces.push_back({t, lo, top});
      cur_n = top - lo;
      continue;
    }
    // Bucket 0 is capped at `first`, but like DDP it always takes at least one whole tensor.
    const int64_t limit = buckets.empty() ? first : cap;
    if (!cur.pieces.empty() && cur_n + n > limit) close_bucket();
    cur.pieces.push_back({t, lo, lo + n});
    cur_n += n;
  }
  close_bucket();
  for (GradBucket& bk : buckets) {
    bk.end = bk.pieces.front().end;
    bk.begin = bk.pieces.back().begin;
    for (size_t i = 1; i < bk.pieces.size(); ++i) {
      CHECK_EQ(bk.pieces[i].end, bk.pieces[i - 1].begin) << "ParamStore buffer is not contiguous";
    }
  }
  return buckets;
}

std::vector<std::vector<int>> BucketsOfTensors(const std::vector<GradBucket>& buckets,
                                               size_t num_tensors) {
  std::vector<std::vector<int>> of(num_tensors);
  for (size_t b = 0; b < buckets.size(); ++b) {
    for (const GradBucketPiece& p : buckets[b].pieces) of[p.tensor].push_back(static_cast<int>(b));
  }
  return of;
}

}  // namespace roformer
