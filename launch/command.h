// Subcommand registry of the `roformer` binary. Each launch/cmd_*.cc registers itself:
//   static roformer::RegisterCommand reg("tokenize", "one-line summary", "long help",
//   &RunTokenize);
// The run function gets the arguments after the command name and returns the exit code; it may
// throw roformer::Error for user errors (printed as "error: ..." with exit code 2).
#pragma once

#include <map>
#include <string>

namespace roformer {

using CommandFn = int (*)(int argc, char** argv);

struct CommandInfo {
  std::string summary;
  std::string help;
  CommandFn run;
};

std::map<std::string, CommandInfo>& CommandRegistry();

struct RegisterCommand {
  RegisterCommand(const std::string& name, const std::string& summary, const std::string& help,
                  CommandFn run) {
    CommandRegistry()[name] = {summary, help, run};
  }
};

}  // namespace roformer
