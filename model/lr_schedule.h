// Learning-rate schedule: linear warmup from 0 to the peak, then linear or cosine decay to
// min_lr_ratio * peak at `total_steps` (or constant). Steps are 0-based optimizer steps.
#pragma once

#include <cstdint>
#include <string>

namespace roformer {

struct LrSchedule {
  double peak = 1e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  std::string decay = "linear";  // linear | cosine | constant
  double min_ratio = 0.0;

  double At(int64_t step) const;
};

}  // namespace roformer
