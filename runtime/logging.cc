#include "runtime/logging.h"

#include <glog/logging.h>

#include <cstdlib>
#include <iomanip>

namespace roformer {
namespace {

void RankPrefix(std::ostream& s, const google::LogMessageInfo& l, void* data) {
  int rank = *static_cast<int*>(data);
  s << l.severity[0] << std::setw(2) << std::setfill('0') << 1 + l.time.month() << std::setw(2)
    << l.time.day() << ' ' << std::setw(2) << l.time.hour() << ':' << std::setw(2) << l.time.min()
    << ':' << std::setw(2) << l.time.sec() << std::setfill(' ') << " [r" << rank << "] "
    << l.filename << ':' << l.line_number << ']';
}

}  // namespace

int EnvWorldRank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v);
  }
  return 0;
}

void InitLogging(const char* argv0) {
  static int rank = EnvWorldRank();
  FLAGS_logtostderr = true;
  const char* all = std::getenv("ROFORMER_LOG_ALL_RANKS");
  if (rank != 0 && !(all && std::string(all) == "1")) FLAGS_minloglevel = google::GLOG_WARNING;
  google::InitGoogleLogging(argv0, &RankPrefix, &rank);
}

}  // namespace roformer
