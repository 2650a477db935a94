// `roformer ckpt verify DIR` and `roformer ckpt inspect DIR`: integrity check and human-readable
// summary of a checkpoint (DIR is a step directory or a checkpoint root, which follows `latest`).
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "launch/command.h"
#include "runtime/checkpoint.h"
#include "runtime/error.h"
#include "runtime/flags.h"

namespace roformer {
namespace {

std::string OnePositional(const Flags& flags, const char* cmd) {
  if (flags.positional().size() != 1) {
    Fail("roformer ", cmd, ": expected exactly one checkpoint directory, got ",
         flags.positional().size(), " arguments");
  }
  return flags.positional()[0];
}

template <typename Seq>
std::string Dims(const Seq& s) {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < static_cast<int>(s.size()); ++i) os << (i ? ", " : "") << s[i];
  return os.str() + "]";
}

int RunVerify(int argc, char** argv) {
  Flags flags(argc, argv, {});
  std::string path = OnePositional(flags, "ckpt verify");
  // Given a root, say which step directories are not complete (and so were skipped).
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(path) / "manifest.pb", ec)) {
    auto complete = ListCompleteCheckpoints(path);
    for (const auto& e : std::filesystem::directory_iterator(path, ec)) {
      std::string n = e.path().filename().string();
      if (n.rfind("step_", 0) == 0 &&
          std::find(complete.begin(), complete.end(), e.path().string()) == complete.end()) {
        std::printf("note: %s is not a complete checkpoint (in progress, crashed or corrupt)\n",
                    e.path().c_str());
      }
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  VerifyReport r = VerifyCheckpoint(path);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("ok: %s: %lld tensors, %lld shards, %lld chunk files, %.1f MB verified in %.2f s\n",
              r.dir.c_str(), static_cast<long long>(r.tensors), static_cast<long long>(r.shards),
              static_cast<long long>(r.chunk_files), r.payload_bytes / 1e6, s);
  return 0;
}

int RunInspect(int argc, char** argv) {
  Flags flags(argc, argv, {"shards!", "no-config!"});
  std::string dir = ResolveCheckpointDir(OnePositional(flags, "ckpt inspect"));
  ckpt::Manifest m = ReadCheckpointManifest(dir);
  std::ostream& os = std::cout;
  os << "checkpoint " << dir << "\n";
  std::time_t t = static_cast<std::time_t>(m.created_unix_time());
  char when[64] = "?";
  if (std::tm tm; gmtime_r(&t, &tm) != nullptr) std::strftime(when, sizeof(when), "%F %T UTC", &tm);
  os << "  format " << m.format_version() << ", written by " << m.software_version() << " at "
     << when << "\n";
  const auto& tr = m.train();
  os << "  step " << tr.step() << "  consumed_samples " << tr.consumed_samples() << "  seed "
     << tr.data_seed() << "  lr " << tr.lr() << "  warmup " << tr.warmup_steps() << "  total "
     << tr.total_steps() << "  growth_stage " << tr.growth_stage() << "  skipped "
     << tr.skipped_steps() << "\n";
  const auto& l = m.layout();
  os << "  layout tp=" << l.tp() << " dp=" << l.dp() << " zero_stage=" << l.zero_stage()
     << " world=" << l.world_size() << "\n";
  const auto& v = m.vocab();
  os << "  vocab path=" << (v.path().empty() ? "-" : v.path()) << " size=" << v.size()
     << " padded=" << v.padded_size()
     << " hash=" << (v.tokens_hash().empty() ? "-" : v.tokens_hash()) << "\n";
  std::string model;
  google::protobuf::TextFormat::Printer p;
  p.SetSingleLineMode(true);
  p.PrintToString(m.model(), &model);
  os << "  model " << model << "\n";
  for (const auto& [k, val] : m.metadata()) os << "  metadata " << k << " = " << val << "\n";
  uint64_t bytes = 0;
  for (const auto& c : m.chunks()) bytes += c.size();
  os << "  payload " << m.chunks_size() << " chunk files, " << bytes << " bytes\n";
  os << "tensors (" << m.tensors_size() << "):\n";
  size_t w = 4;
  for (const auto& tn : m.tensors()) w = std::max(w, tn.name().size());
  char line[512];
  std::snprintf(line, sizeof(line), "  %-*s  %-6s  %-20s  %-8s  %s\n", static_cast<int>(w), "name",
                "kind", "global shape", "dtype", "shards");
  os << line;
  for (const auto& tn : m.tensors()) {
    std::string kind = tn.kind() == ckpt::PARAM    ? "param"
                       : tn.kind() == ckpt::ADAM_M ? "adam_m"
                                                   : "adam_v";
    std::snprintf(line, sizeof(line), "  %-*s  %-6s  %-20s  %-8s  %d\n", static_cast<int>(w),
                  tn.name().c_str(), kind.c_str(), Dims(tn.global_shape()).c_str(),
                  ckpt::DType_Name(tn.dtype()).c_str(), tn.shards_size());
    os << line;
    if (flags.GetBool("shards")) {
      for (const auto& s : tn.shards()) {
        os << "      offsets " << Dims(s.offsets()) << " extents " << Dims(s.extents()) << "  "
           << s.file() << " @" << s.byte_offset() << " +" << s.byte_length() << " crc32c "
           << std::hex << s.crc32c() << std::dec << "\n";
      }
    }
  }
  if (!flags.GetBool("no-config")) os << "config:\n" << m.config_text();
  return 0;
}

RegisterCommand reg_verify(
    "ckpt verify", "check a checkpoint's manifest and every shard's CRC32C",
    "roformer ckpt verify DIR\n"
    "DIR is a step directory (step_<N>/) or a checkpoint root (follows `latest`, falling back to\n"
    "the newest complete step). Checks the manifest frame and CRC, that every tensor's shards "
    "tile\n"
    "its global shape without overlap, that every chunk file exists with the recorded size and is\n"
    "covered exactly by shards, and the CRC32C of every shard. Exit 0 when all hold; otherwise\n"
    "prints the first problem (file and tensor) and exits 2.",
    &RunVerify);

RegisterCommand reg_inspect(
    "ckpt inspect", "print a checkpoint's step, layout, config and tensor table",
    "roformer ckpt inspect DIR [--shards] [--no-config]\n"
    "Prints the training state, parallel layout at save time, vocab identity, model config,\n"
    "metadata, a table of logical tensors (name, kind, global shape, dtype, shard count) and the\n"
    "run config. --shards also lists every shard (offsets, extents, file, bytes, crc32c).\n"
    "Reads only the manifest (use `ckpt verify` to check payloads).",
    &RunInspect);

}  // namespace
}  // namespace roformer
