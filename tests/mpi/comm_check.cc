// Driven by tests/mpi/*.sh under mpirun: checks the typed collectives on the TP x DP grid against
// values computed locally, and provokes the failure modes the watchdog and the debug cross-check
// must catch.
//   comm_check collectives TP DP          -> prints "comm_check OK" on every rank
//   comm_check skip TP DP TIMEOUT_S       -> world rank 1 skips an all-reduce (watchdog must abort)
//   comm_check mismatch TP DP             -> world rank 1 all-reduces a different count (debug
//   mode)
#include <glog/logging.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "runtime/grid.h"
#include "runtime/logging.h"

using namespace roformer;

namespace {

int Collectives(Grid& g) {
  const int wr = g.world_rank(), ws = g.world_size();
  int bad = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) {
      LOG(ERROR) << "rank " << wr << ": " << what << " wrong";
      ++bad;
    }
  };
  // World all-reduce (sum and max) of rank-dependent data.
  std::vector<float> x(1000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(wr + 1) * (i % 7);
  g.world().AllReduce(std::span<float>(x));
  float s = ws * (ws + 1) / 2.0f;
  bool ok = true;
  for (size_t i = 0; i < x.size(); ++i) ok &= x[i] == s * (i % 7);
  expect(ok, "world AllReduce sum");
  std::vector<int64_t> m = {wr, -wr};
  g.world().AllReduce(std::span<int64_t>(m), ReduceOp::kMax);
  expect(m[0] == ws - 1 && m[1] == 0, "world AllReduce max");
  // TP group: members are consecutive world ranks (TP innermost).
  std::vector<int32_t> mine = {wr};
  std::vector<int32_t> all(g.tp_size());
  g.tp().AllGather(std::span<const int32_t>(mine), std::span<int32_t>(all));
  for (int r = 0; r < g.tp_size(); ++r)
    expect(all[r] == (wr / g.tp_size()) * g.tp_size() + r, "tp AllGather / grid order");
  // DP group: stride tp.
  std::vector<double> rs_in(2 * g.dp_size());
  for (size_t i = 0; i < rs_in.size(); ++i) rs_in[i] = i + 0.5 * g.dp_rank();
  std::vector<double> rs_out(2);
  g.dp().ReduceScatter(std::span<const double>(rs_in), std::span<double>(rs_out));
  double dsum = 0.5 * g.dp_size() * (g.dp_size() - 1) / 2.0;
  for (int k = 0; k < 2; ++k) {
    expect(rs_out[k] == g.dp_size() * (2.0 * g.dp_rank() + k) + dsum, "dp ReduceScatter");
  }
  std::vector<uint64_t> b = {wr == 0 ? 42u : 0u, 7};
  g.world().Broadcast(std::span<uint64_t>(b), 0);
  expect(b[0] == 42 && b[1] == 7, "world Broadcast");
  // Overlap: several async all-reduces in flight while this thread computes.
  std::vector<std::vector<float>> buckets(4, std::vector<float>(1 << 16, 1.0f));
  std::vector<CommHandle> hs;
  for (auto& bk : buckets) hs.push_back(g.dp().AllReduceAsync(std::span<float>(bk)));
  double busy = 0;
  for (int i = 0; i < 1000000; ++i) busy += i * 1e-9;
  for (auto& h : hs) h.Wait();
  for (auto& bk : buckets) expect(bk[12345] == static_cast<float>(g.dp_size()), "async AllReduce");
  g.world().Barrier();
  if (bad == 0)
    std::printf("comm_check OK rank %d (%s) %g\n", wr, g.Describe().c_str(), busy > 0 ? 1.0 : 0.0);
  return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  InitLogging(argv[0]);
  if (argc < 4) {
    std::fprintf(stderr, "usage: comm_check collectives|skip|mismatch TP DP [TIMEOUT_S]\n");
    return 2;
  }
  std::string mode = argv[1];
  GridOptions opt;
  opt.tp = std::atoi(argv[2]);
  opt.dp = std::atoi(argv[3]);
  opt.watchdog_timeout_s = argc > 4 ? std::atof(argv[4]) : 300;
  opt.debug_collectives = mode == "mismatch";
  auto grid = Grid::Create(opt);
  if (mode == "collectives") return Collectives(*grid);
  std::vector<float> x(64, 1.0f);
  if (mode == "skip") {
    if (grid->world_rank() != 1) {
      grid->world().AllReduce(std::span<float>(x));
    } else {
      // The bug being simulated: this rank skips the collective and carries on elsewhere.
      std::this_thread::sleep_for(std::chrono::seconds(120));
    }
    std::printf("skip: rank %d was not stopped by the watchdog\n", grid->world_rank());
    return 0;
  }
  if (mode == "mismatch") {
    std::vector<float> y(grid->world_rank() == 1 ? 65 : 64, 1.0f);
    grid->world().AllReduce(std::span<float>(y));
    std::printf("mismatch: rank %d was not stopped\n", grid->world_rank());
    return 0;
  }
  return 2;
}
