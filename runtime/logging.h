// glog set-up shared by every subcommand: lines are prefixed with "[rN]" (the MPI world rank, read
// from the launcher's environment so it works before MPI_Init), and only rank 0 logs INFO unless
// ROFORMER_LOG_ALL_RANKS=1.
#pragma once

namespace roformer {

// World rank from the MPI launcher's environment (Open MPI, MPICH/PMI, Slurm); 0 when not launched.
int EnvWorldRank();

void InitLogging(const char* argv0);

}  // namespace roformer
