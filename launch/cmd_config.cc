// `roformer config`: prints the effective configuration (file + --set overrides + defaults).
#include <iostream>

#include "launch/command.h"
#include "runtime/config.h"
#include "runtime/flags.h"

namespace roformer {
namespace {

int RunConfig(int argc, char** argv) {
  Flags flags(argc, argv, {"config", "set"});
  auto cfg = ResolveConfig(flags.Get("config"), flags.GetAll("set"));
  std::cout << ConfigToText(cfg);
  return 0;
}

RegisterCommand reg(
    "config", "print the effective configuration (validated)",
    "roformer config [--config FILE.textproto] [--set path.to.field=value ...]\n"
    "Loads the config, applies --set overrides in order, fills defaults, validates,\n"
    "and prints it in text format. Errors name the file, line and field.",
    &RunConfig);

}  // namespace
}  // namespace roformer
