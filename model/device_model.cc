#include "model/device_model.h"

#include <map>
#include <mutex>

#include "runtime/error.h"

namespace roformer {
namespace {

std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}

std::map<std::string, DeviceModelFactory>& Registry() {
  static auto* registry = new std::map<std::string, DeviceModelFactory>();
  return *registry;
}

}  // namespace

config::ModelConfig HostModelConfig(const config::Config& cfg) {
  config::ModelConfig m = cfg.model();
  if (cfg.train().device() != "cpu") m.set_precision("fp32");
  return m;
}

void RegisterDeviceModel(const std::string& device, DeviceModelFactory factory) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  Registry()[device] = std::move(factory);
}

std::vector<std::string> RegisteredDeviceModels() {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  std::vector<std::string> names;
  for (const auto& [name, factory] : Registry()) names.push_back(name);
  return names;
}

namespace {

DeviceModelFactory FindFactory(const std::string& device) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  auto it = Registry().find(device);
  return it == Registry().end() ? DeviceModelFactory() : it->second;
}

}  // namespace

void RequireDeviceModel(const std::string& device) {
  if (device == "cpu" || FindFactory(device)) return;
  std::string have = "cpu";
  for (const std::string& n : RegisteredDeviceModels()) have += ", " + n;
  Fail("train.device = \"", device, "\": this build has no such backend (available: ", have,
       device == "cuda" ? "; the CUDA backend is built when nvcc is found at configure time, "
                          "see docs/cuda.md)"
                        : ")");
}

std::unique_ptr<DeviceModel> MakeDeviceModel(const std::string& device,
                                             const DeviceModelContext& context) {
  RequireDeviceModel(device);
  return FindFactory(device)(context);
}

}  // namespace roformer
