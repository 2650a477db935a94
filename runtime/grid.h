// The process grid: world = TP x DP with TP innermost (ranks 0..tp-1 form the first TP group, so TP
// groups sit inside a node), sub-communicators from MPI_Comm_split, the node-local rank from
// MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) (one GPU per rank later), and the collective watchdog.
//
// Without an MPI launcher in the environment (plain `roformer ...`), the grid is one process with
// local communicators and MPI is never initialised.
#pragma once

#include <memory>
#include <string>

#include "runtime/comm.h"

namespace roformer {

struct GridOptions {
  int tp = 1;
  int dp = 1;
  double watchdog_timeout_s = 300;  // a collective stalled this long aborts the job (0 = off)
  bool debug_collectives = false;   // cross-check (op, dtype, count, seq) on every collective
};

class Grid {
 public:
  // Initialises MPI when launched by mpirun (MPI_THREAD_MULTIPLE), checks world == tp * dp (Error
  // otherwise), and builds the world/TP/DP communicators. One Grid per process.
  static std::unique_ptr<Grid> Create(const GridOptions& opt);
  ~Grid();

  int world_rank() const { return world_->rank(); }
  int world_size() const { return world_->size(); }
  int tp_rank() const { return tp_->rank(); }
  int tp_size() const { return tp_->size(); }
  int dp_rank() const { return dp_->rank(); }
  int dp_size() const { return dp_->size(); }
  int local_rank() const { return local_rank_; }
  bool distributed() const { return mpi_; }

  Communicator& world() { return *world_; }
  Communicator& tp() { return *tp_; }
  Communicator& dp() { return *dp_; }

  // Human-readable layout ("world 4 = tp 2 x dp 2; rank 3: tp 1, dp 1, local 3").
  std::string Describe() const;

 private:
  Grid() = default;
  bool mpi_ = false;
  int local_rank_ = 0;
  std::unique_ptr<Communicator> world_, tp_, dp_;
};

// True when the environment shows an MPI launcher (Open MPI, PMI, PMIx or Slurm with >1 task).
bool LaunchedByMpi();

}  // namespace roformer
