// What the process launcher (mpirun, srun with PMI) tells a rank about the job, read from the
// environment before MPI starts, so a command can size its grid (world size = DP for the commands
// without tensor parallelism).
#pragma once

#include <algorithm>
#include <cstdlib>

namespace roformer {

// Ranks started by the launcher: Open MPI's OMPI_COMM_WORLD_SIZE, else MPICH/Slurm-PMI's PMI_SIZE;
// 1 without a launcher. SLURM_NTASKS is deliberately not read: inside an sbatch allocation it is
// also set for a single process that srun did not start.
inline int LauncherWorldSize() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    if (const char* e = std::getenv(v)) return std::max(1, std::atoi(e));
  }
  return 1;
}

}  // namespace roformer
