#include "launch/hf_interop.h"

#include "model/hf_interop.h"
#include "runtime/checkpoint.h"
#include "runtime/error.h"

namespace roformer {

void SaveModelCheckpoint(const RoFormerModel& model, const std::string& dir) {
  config::Config cfg = ConfigForModel(model.config(), dir);
  TrainState st;
  SaveOptions opt;
  opt.with_optimizer = false;
  opt.keep = 0;  // never prune other steps a user keeps in the same root
  opt.metadata["source"] = "roformer convert";
  SaveCheckpoint(dir, model.store(), cfg, st, opt);
}

std::unique_ptr<RoFormerModel> LoadModelCheckpoint(const std::string& dir) {
  LoadedCheckpoint ck = LoadCheckpoint(dir, /*with_optimizer=*/false);
  if (!ck.manifest.has_model()) Fail(ck.dir, ": checkpoint manifest has no model config");
  config::ModelConfig mc = ck.manifest.model();
  ConfigForModel(mc, ck.dir + "/manifest.pb");
  auto model = std::make_unique<RoFormerModel>(mc, TpRegion(), /*with_optimizer_state=*/false);
  RestoreInto(ck, &model->store(), /*with_optimizer=*/false);
  return model;
}

}  // namespace roformer
