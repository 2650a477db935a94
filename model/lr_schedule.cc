#include "model/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace roformer {

double LrSchedule::At(int64_t step) const {
  // Step s uses the lr for s+1 warm-up increments, so step 0 already learns (BERT's convention
  // gives step 0 lr=0, which wastes a step and hides bugs in resume tests).
  if (warmup_steps > 0 && step < warmup_steps) {
    return peak * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  }
  if (decay == "constant") return peak;
  int64_t span = std::max<int64_t>(1, total_steps - warmup_steps);
  double t =
      std::clamp(static_cast<double>(step - warmup_steps) / static_cast<double>(span), 0.0, 1.0);
  double floor = peak * min_ratio;
  if (decay == "cosine") return floor + (peak - floor) * 0.5 * (1.0 + std::cos(M_PI * t));
  return floor + (peak - floor) * (1.0 - t);
}

}  // namespace roformer
