// `roformer convert`: Hugging Face RoFormer <-> our checkpoints (mapping in model/hf_interop.h).
#include <glog/logging.h>

#include <iostream>

#include "launch/command.h"
#include "launch/hf_interop.h"
#include "model/hf_interop.h"
#include "runtime/error.h"
#include "runtime/flags.h"

namespace roformer {
namespace {

int RunConvert(int argc, char** argv) {
  Flags flags(argc, argv, {"from-hf", "to-hf", "out", "seed"});
  const std::string out = flags.Require("out");
  if (flags.Has("from-hf") == flags.Has("to-hf"))
    Fail("convert: give exactly one of --from-hf DIR or --to-hf CKPT");
  if (flags.Has("from-hf")) {
    const std::string src = flags.Get("from-hf");
    const uint64_t seed = static_cast<uint64_t>(flags.GetInt("seed", 1234));
    HfImportReport rep;
    auto model = LoadHfModel(src, seed, &rep);
    for (const auto& w : rep.warnings) LOG(WARNING) << w;
    std::cout << "loaded " << rep.loaded.size() << " tensors from " << src << "\n";
    for (const auto& n : rep.ignored) std::cout << "  checked and dropped: " << n << "\n";
    for (const auto& n : rep.initialised)
      std::cout << "  " << n << ": not in HF checkpoint, initialised (seed " << seed << ")\n";
    SaveModelCheckpoint(*model, out);
    std::cout << "wrote checkpoint " << out << " (vocab " << model->dims().vocab << ", padded to "
              << model->dims().vocab_padded << " rows)\n";
  } else {
    const std::string src = flags.Get("to-hf");
    auto model = LoadModelCheckpoint(src);
    std::vector<std::string> dropped;
    ExportHfModel(*model, out, &dropped);
    for (const auto& n : dropped) std::cout << "  " << n << ": no HF counterpart, not exported\n";
    std::cout << "wrote " << out << "/config.json and " << out << "/model.safetensors\n";
    const auto& mc = model->config();
    if (mc.realformer() || mc.pre_ln() || mc.attention_scale() != "sqrt_d") {
      std::cout << "note: this is a RealFormer / Pre-LN / log-n variant; HF RoFormerForMaskedLM "
                   "loads the weights but cannot run the variant (see roformer_note in "
                   "config.json)\n";
    }
  }
  return 0;
}

RegisterCommand reg(
    "convert", "convert Hugging Face RoFormer weights to/from our checkpoints",
    "roformer convert --from-hf HF_DIR --out CKPT_DIR [--seed N]\n"
    "roformer convert --to-hf CKPT --out HF_DIR\n"
    "--from-hf reads HF_DIR/config.json and model.safetensors (RoFormerForMaskedLM or "
    "RoFormerModel\n"
    "names; sharded model.safetensors.index.json works too) and writes a step-0 checkpoint. The\n"
    "sinusoidal table is checked against our RoPE table, the tied decoder weight against the word\n"
    "embeddings; SOP parameters (no HF counterpart) are initialised with --seed. Extra "
    "config.json\n"
    "keys realformer, realformer_running_mean, pre_ln, attention_scale select our variants.\n"
    "--to-hf writes config.json + model.safetensors loadable by transformers'\n"
    "RoFormerForMaskedLM (variant keys kept; SOP parameters dropped).",
    &RunConvert);

}  // namespace
}  // namespace roformer
