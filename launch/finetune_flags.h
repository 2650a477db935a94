// Flags shared by `roformer finetune` and `roformer multitask`: --config, --set and the dedicated
// hyper-parameter flags, applied to a FinetuneConfig in that order (dedicated flags win).
#pragma once

#include <string>
#include <vector>

#include "model/finetune.h"
#include "runtime/error.h"
#include "runtime/finetune.pb.h"
#include "runtime/flags.h"

namespace roformer {

// The command's own flag names plus the shared ones, for the Flags constructor.
inline std::vector<std::string> WithFinetuneConfigFlags(std::vector<std::string> own) {
  for (const char* f : {"config", "set", "epochs", "lr", "batch", "micro-batch", "max-len", "seed"})
    own.push_back(f);
  return own;
}

// `command` prefixes error messages ("finetune: --lr must be > 0, got -1").
inline void ApplyFinetuneConfigFlags(const Flags& flags, const char* command,
                                     config::FinetuneConfig* cfg) {
  if (flags.Has("config")) *cfg = LoadFinetuneConfig(flags.Get("config"));
  for (const std::string& s : flags.GetAll("set")) ApplyFinetuneOverride(cfg, s);
  auto positive = [&](const char* name) {
    const long long v = flags.GetInt(name, 0);
    if (v <= 0) Fail(command, ": --", name, " must be a positive integer, got ", flags.Get(name));
    return static_cast<int>(v);
  };
  if (flags.Has("epochs")) cfg->set_epochs(positive("epochs"));
  if (flags.Has("batch")) cfg->set_batch(positive("batch"));
  if (flags.Has("micro-batch")) cfg->set_micro_batch(positive("micro-batch"));
  if (flags.Has("max-len")) cfg->set_max_len(positive("max-len"));
  if (flags.Has("lr")) {
    const double lr = flags.GetDouble("lr", 0);
    if (!(lr > 0)) Fail(command, ": --lr must be > 0, got ", flags.Get("lr"));
    cfg->set_lr(static_cast<float>(lr));
  }
  if (flags.Has("seed")) cfg->set_seed(static_cast<uint64_t>(flags.GetInt("seed", 42)));
}

}  // namespace roformer
