// Checkpoints: a protobuf manifest (runtime/checkpoint.proto) plus raw chunk files, committed
// atomically, verified with CRC32C, and reshardable on load (any TP layout reads any other).
//
// On-disk layout under a checkpoint root (CheckpointConfig.dir):
//   <root>/latest                       "step_<N>\n": the newest committed checkpoint (a hint; when
//   it
//                                       is missing or bad, readers take the newest complete step)
//   <root>/step_<N>/manifest.pb         framed Manifest ("RFCKMAN1", u32 1, u64 len, u32 crc32c,
//   pb) <root>/step_<N>/chunk-r<R>-<K>.bin  payload written by world rank R, at most
//   max_chunk_bytes each <root>/step_<N>.tmp/                a save in progress (or crashed); never
//   read, removed later
// <N> is zero-padded to 8 digits. A `step_<N>` directory (no suffix) with a manifest whose frame
// checks out is complete: the rename from `.tmp` is the commit marker (llm.c's DONE file).
//
// Typical use (training loop, tp = dp = 1):
//   SaveCheckpoint(root, store, cfg, state, opt);                  // every N steps
//   LoadedCheckpoint ck = LoadCheckpoint(root);                    // follows `latest`
//   RestoreInto(ck, &store, /*with_optimizer=*/true);  state = ck.state;
//
// Multi-rank save (design; SaveCheckpoint already implements it, driven by SaveOptions::all_ok):
// every rank calls SaveCheckpoint with the same root/step and its own rank. Ranks are laid out TP
// innermost (tp_rank = rank % tp, dp_rank = rank / tp). Rank 0 recreates <root>/step_<N>.tmp/;
// after an all_ok round every rank writes the tensors it owns (replicated ones: tp_rank 0 of
// dp_rank 0; TP-sharded ones: each tp_rank of dp_rank 0) into its own chunk-r<rank>-<k>.bin files
// plus a manifest fragment manifest-r<rank>.part, fsyncing each. After a second all_ok round rank 0
// merges the fragments, checks that the shards tile every tensor, writes manifest.pb, deletes the
// fragments, fsyncs, renames to step_<N>/, updates `latest` and prunes; a third round releases the
// other ranks only once the checkpoint is committed. all_ok is an AND-allreduce of a local success
// flag over the world communicator, e.g. with runtime/comm.h:
//   opt.all_ok = [world](bool ok) { int32_t f = ok; world->AllReduce(std::span(&f, 1),
//                                   ReduceOp::kMin); return f != 0; };
// so a failure on any rank makes every rank throw instead of deadlocking in a barrier; the
// half-written .tmp directory is removed by the next save. A ZeRO-1 optimizer whose m/v are sliced
// over DP ranks by flat-buffer range would write each tensor's piece of its range as up to three
// rectangles (partial first row, whole rows, partial last row); the manifest format and the loader
// already accept any tiling.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/checkpoint.pb.h"
#include "runtime/config.pb.h"
#include "runtime/param_store.h"

namespace roformer {

inline constexpr uint32_t kCheckpointFormatVersion = 1;
inline constexpr const char kSoftwareVersion[] = "roformer 0.1.0";

// Training progress saved with the weights. The RNG is counter-based (keyed by seed and step), so
// no generator state is needed beyond these fields.
struct TrainState {
  int64_t step = 0;              // optimizer steps completed
  int64_t consumed_samples = 0;  // sequences consumed over all DP ranks
  uint64_t seed = 0;             // data order / masking / dropout seed
  double lr = 0.0;               // learning rate of the last step
  int64_t warmup_steps = 0;      // schedule shape at save time
  int64_t total_steps = 0;
  int64_t skipped_steps = 0;  // non-finite steps skipped so far
  int32_t growth_stage = 0;   // progressive-growth stage index
  int64_t adam_step = 0;      // Adam bias-correction count when != step (0 = same as step)
  bool operator==(const TrainState&) const = default;
};

struct VocabIdentity {
  std::string path;
  int64_t size = 0;         // unpadded entries
  int64_t padded_size = 0;  // embedding rows
  std::string tokens_hash;  // VocabTokensHash(tokens)
};

// "crc32c:<8 hex>" of the tokens joined with '\n'.
std::string VocabTokensHash(const std::vector<std::string>& tokens);

struct SaveOptions {
  int rank = 0;   // world rank of the caller
  int world = 1;  // number of ranks calling SaveCheckpoint for this step
  int tp = 1;     // tensor-parallel size the store was declared with (dp = world / tp)
  int zero_stage = 0;
  // AND-allreduce of a local success flag over all `world` ranks (see the design note above).
  // Required when world > 1; unused otherwise.
  std::function<bool(bool local_ok)> all_ok;
  int keep = 2;  // complete checkpoints kept (<= 0: all); the new one is never deleted
  bool with_optimizer = true;  // also save Adam m and v (the store must have them allocated)
  uint64_t max_chunk_bytes = uint64_t{1}
                             << 30;  // payload file size cap (tensors are split by rows)
  bool fsync = true;                 // false only for tests/benchmarks that do not need durability
  VocabIdentity vocab;
  std::map<std::string, std::string> metadata;
};

// Saves `store` (params and, with opt.with_optimizer, Adam m/v) and `st` as <root>/step_<st.step>,
// committing atomically (see the layout above) and replacing an existing checkpoint of the same
// step. Returns the committed directory. Throws Error on I/O failure (the .tmp directory is left
// behind and cleaned by a later save; earlier checkpoints and `latest` are untouched).
std::string SaveCheckpoint(const std::string& root, const ParamStore& store,
                           const config::Config& cfg, const TrainState& st,
                           const SaveOptions& opt = {});

// Asynchronous save (checkpoint.async: true): the training step stalls only for a host copy.
//
// Start() finishes the previous async save (below), prepares <root>/step_<N>.tmp (rank 0, one
// all_ok round, on the caller's thread), copies what this rank writes (params and Adam m/v, only on
// DP rank 0: other ranks write nothing) into host buffers owned by the checkpointer (reused across
// saves; BERT-base with Adam: 1.3 GB), and returns; a background thread then writes this rank's
// chunk files and manifest fragment and fsyncs them.
//
// Multi-rank design: the background thread issues NO collectives. Collectives on one communicator
// must be issued in the same order by every rank, and a writer thread racing the training loop's
// collectives would break that (and would need its own communicator and watchdog). Instead the
// commit -- rank 0 merging the fragments into manifest.pb, renaming into step_<N>, updating
// `latest`, pruning -- happens on the caller's (training) thread at the next synchronization point:
//   * TryCommit(): called once per training step while a save is pending. One AND-round "has every
//     rank's writer finished?"; when yes, the same two rounds as a synchronous save (any rank's
//     write error -> every rank throws; rank 0 commits -> every rank learns the outcome). Returns
//     the committed directory, or "" while writers are still busy.
//   * Start() of the next save and Wait() (the end of the run) block until the local writer is
//     done and then run those rounds.
// All three are collective (SaveOptions::all_ok) when world > 1: every rank calls them at the same
// points, which the deterministic step loop guarantees. A background write error is re-thrown (as
// Error) at whichever of them finds it, on every rank. Until the commit, the checkpoint does not
// exist for readers: a crash meanwhile leaves step_<N>.tmp (removed by a later save), and resume
// uses the previous complete checkpoint. The destructor joins the writer without committing and
// without collectives (safe while unwinding from an error).
class AsyncCheckpointer {
 public:
  AsyncCheckpointer();
  ~AsyncCheckpointer();
  AsyncCheckpointer(const AsyncCheckpointer&) = delete;
  AsyncCheckpointer& operator=(const AsyncCheckpointer&) = delete;

  // Same arguments as SaveCheckpoint; returns once the snapshot is taken.
  void Start(const std::string& root, const ParamStore& store, const config::Config& cfg,
             const TrainState& st, const SaveOptions& opt);
  // Non-blocking commit attempt (see above); "" when nothing was committed.
  std::string TryCommit();
  // Blocks until the pending save is committed; its directory, or "" when none was pending.
  std::string Wait();
  bool pending() const;

  // Test seam: runs on the writer thread before it writes (throw to simulate an I/O failure).
  std::function<void()> before_write_for_test;

 private:
  struct Pending;
  std::string Finish(bool block);
  std::unique_ptr<Pending> pending_;
  std::vector<ParamInfo> infos_;
  std::vector<float> params_, m_, v_;
};

// The padded-rows rule shared by RestoreInto and `roformer ckpt diff`: a tensor of shape
// `from_shape` (data `from`) stands for one of shape `to_shape` when the shapes are equal, or when
// logical_rows >= 0 (ParamInfo::logical_rows: vocab rows padded to a multiple of 128 * tp), they
// differ only in dim 0, both dim-0 sizes are >= logical_rows and every row of `from` beyond
// to_shape[0] is exactly 0 (padding rows never receive a gradient, so params and Adam m/v stay 0).
// Returns how many leading rows to copy (rows of `to` beyond that are zero). Otherwise throws
// Error "<what> has global shape [..] in <from_label> but [..] in <to_label>...".
int64_t PaddedRowsToCopy(const std::string& what, int64_t logical_rows,
                         const std::vector<int64_t>& from_shape, const float* from,
                         const std::vector<int64_t>& to_shape, const std::string& from_label,
                         const std::string& to_label);

// One logical tensor, assembled to its global shape (row-major).
struct LoadedTensor {
  std::string name;
  ckpt::TensorKind kind = ckpt::PARAM;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct LoadedCheckpoint {
  std::string dir;          // the step directory actually read
  ckpt::Manifest manifest;  // header and shard table (no payloads)
  TrainState state;
  std::vector<LoadedTensor> tensors;
  // nullptr when absent.
  const LoadedTensor* Find(const std::string& name, ckpt::TensorKind kind) const;

 private:
  friend LoadedCheckpoint LoadCheckpoint(const std::string&, bool);
  std::map<std::pair<std::string, int>, size_t> index_;
};

// `path` is a step directory or a root (then `latest`, falling back to the newest complete step).
// Checks the manifest (CRC, version, shards tiling each tensor, chunk files covered exactly), the
// size of every chunk file and the CRC32C of every shard it reads; any problem throws Error naming
// the file and the tensor. with_optimizer = false skips reading Adam m/v.
LoadedCheckpoint LoadCheckpoint(const std::string& path, bool with_optimizer = true);

// Copies into `store` the slice of every declared tensor that this rank owns (ParamInfo placement,
// shard_start, local_shape), so a checkpoint saved under any TP layout restores under any other:
// tensors with ParamInfo::logical_rows (the TP-padded vocab rows) are padded with zero rows or
// trimmed per PaddedRowsToCopy (trimmed rows must be 0 in params and m/v). Throws Error naming the
// tensor when it is missing from the checkpoint or its global shape differs otherwise (both shapes
// in the message), and, unless allow_unused, when the checkpoint holds a tensor the store does not
// declare.
void RestoreInto(const LoadedCheckpoint& ckpt, ParamStore* store, bool with_optimizer,
                 bool allow_unused = false);

// <root>/step_<N> of the newest complete checkpoint: the one `latest` names when that is valid,
// else the highest complete step (with a warning); "" when there is none.
std::string FindLatestCheckpoint(const std::string& root);

// Complete checkpoint directories under `root`, ascending by step.
std::vector<std::string> ListCompleteCheckpoints(const std::string& root);

// <root>/step_<N> (zero-padded).
std::string CheckpointStepDir(const std::string& root, int64_t step);

// A step directory for `path` (itself when it holds a manifest, else FindLatestCheckpoint); throws
// when neither.
std::string ResolveCheckpointDir(const std::string& path);

// Reads and checks the manifest of a step directory (frame, CRC, version, shard tiling, chunk
// coverage); does not read payloads.
ckpt::Manifest ReadCheckpointManifest(const std::string& step_dir);

struct VerifyReport {
  std::string dir;
  int64_t tensors = 0;
  int64_t shards = 0;
  int64_t chunk_files = 0;
  uint64_t payload_bytes = 0;
};

// Everything LoadCheckpoint checks, for every shard, without assembling tensors.
VerifyReport VerifyCheckpoint(const std::string& path);

// TrainState <-> manifest fields.
TrainState TrainStateFromManifest(const ckpt::Manifest& m);

}  // namespace roformer
