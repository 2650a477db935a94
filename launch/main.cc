// `roformer <command> [flags]`: git-style dispatcher over the registered subcommands.
#include <glog/logging.h>

#include <cstring>
#include <iostream>

#include "kernels/cpu/gemm.h"
#include "launch/command.h"
#include "runtime/error.h"
#include "runtime/logging.h"
#ifdef ROFORMER_HAVE_CUDA_MODEL
#include "model/cuda/cuda_device_model.h"
#endif

namespace roformer {

std::map<std::string, CommandInfo>& CommandRegistry() {
  static std::map<std::string, CommandInfo> registry;
  return registry;
}

namespace {

void PrintUsage(std::ostream& os) {
  os << "usage: roformer <command> [flags]\n       roformer help <command>\n\ncommands:\n";
  for (const auto& [name, info] : CommandRegistry()) {
    os << "  " << name << std::string(name.size() < 16 ? 16 - name.size() : 1, ' ') << info.summary
       << "\n";
  }
}

}  // namespace
}  // namespace roformer

int main(int argc, char** argv) {
  using namespace roformer;
  InitLogging(argv[0]);
#ifdef ROFORMER_HAVE_CUDA_MODEL
  cuda::RegisterCudaDeviceModel();  // train.device = "cuda"
#endif
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    PrintUsage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  if (cmd == "help") {
    if (argc < 3) {
      PrintUsage(std::cout);
      return 0;
    }
    // Allow "help data prepare" for two-word commands.
    std::string name = argv[2];
    if (argc > 3 && CommandRegistry().count(name + " " + argv[3]))
      name += std::string(" ") + argv[3];
    auto it = CommandRegistry().find(name);
    if (it == CommandRegistry().end()) {
      std::cerr << "error: unknown command '" << name << "'\n";
      return 2;
    }
    std::cout << "roformer " << name << ": " << it->second.summary << "\n\n"
              << it->second.help << "\n";
    return 0;
  }
  // Two-word commands ("data prepare", "vocab build", "bench train") take precedence.
  int consumed = 2;
  auto it = CommandRegistry().end();
  if (argc > 2) {
    it = CommandRegistry().find(cmd + " " + argv[2]);
    if (it != CommandRegistry().end()) consumed = 3;
  }
  if (it == CommandRegistry().end()) it = CommandRegistry().find(cmd);
  if (it == CommandRegistry().end()) {
    std::cerr << "error: unknown command '" << cmd << "'\n";
    PrintUsage(std::cerr);
    return 2;
  }
  try {
    CurrentGemmBackend();  // a bad ROFORMER_GEMM fails here, before any work
    return it->second.run(argc - consumed, argv + consumed);
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
