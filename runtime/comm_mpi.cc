// MPI implementation of the typed collectives, the collective watchdog, and the process grid.
//
// Watchdog protocol: every rank runs one watchdog thread that (a) answers status queries from peers
// on a private duplicate of MPI_COMM_WORLD and (b) watches this rank's in-flight collectives. When
// one has been in flight longer than the timeout, it asks every member of that communicator what
// it is doing (which collective number it has reached, and what is in flight), logs a report that
// names the stalled op, its communicator and sequence number and the ranks that did not arrive (or
// arrived at a different op), then calls MPI_Abort so mpirun exits non-zero instead of hanging.
#include <glog/logging.h>
#include <mpi.h>

#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>

#include "runtime/comm_task.h"
#include "runtime/error.h"
#include "runtime/grid.h"

namespace roformer {
namespace {

constexpr int kTagQuery = 7101;
constexpr int kTagReply = 7102;
constexpr int kNameLen = 16;

MPI_Datatype ToMpi(DType t) {
  switch (t) {
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kF64:
      return MPI_DOUBLE;
    case DType::kI32:
      return MPI_INT32_T;
    case DType::kI64:
      return MPI_INT64_T;
    case DType::kU8:
      return MPI_UINT8_T;
    case DType::kU64:
      return MPI_UINT64_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op ToMpi(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return MPI_SUM;
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
  }
  return MPI_OP_NULL;
}

// What one rank reports about one communicator.
struct CommStatus {
  int64_t entered = 0;  // collectives started on this communicator
  int32_t in_flight = 0;
  int32_t op = 0;
  int32_t dtype = 0;
  int32_t pad = 0;
  int64_t count = 0;
  int64_t seq = -1;
};

class MpiCommunicator;

class Watchdog {
 public:
  static Watchdog& Get() {
    static Watchdog w;
    return w;
  }

  void Start(double timeout_s) {
    timeout_s_ = timeout_s;
    MPI_Comm_dup(MPI_COMM_WORLD, &side_);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
    stop_ = false;
    thread_ = std::thread([this] { Loop(); });
  }

  void Stop() {
    if (!thread_.joinable()) return;
    stop_ = true;
    thread_.join();
    MPI_Comm_free(&side_);
  }

  void Register(const std::string& name, MpiCommunicator* comm) {
    std::lock_guard<std::mutex> lock(mu_);
    comms_[name] = comm;
  }
  void Unregister(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    comms_.erase(name);
  }

 private:
  void Loop();
  void AnswerQueries();
  void Diagnose(MpiCommunicator* comm, const CommStatus& mine, double waited);

  double timeout_s_ = 300;
  MPI_Comm side_ = MPI_COMM_NULL;
  int world_rank_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, MpiCommunicator*> comms_;
};

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, std::string name, bool debug)
      : comm_(comm), name_(std::move(name)), debug_(debug) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Group world_group, group;
    MPI_Comm_group(MPI_COMM_WORLD, &world_group);
    MPI_Comm_group(comm_, &group);
    std::vector<int> mine(size_), world(size_);
    for (int i = 0; i < size_; ++i) mine[i] = i;
    MPI_Group_translate_ranks(group, size_, mine.data(), world_group, world.data());
    ranks_ = world;
    MPI_Group_free(&group);
    MPI_Group_free(&world_group);
    if (debug_) MPI_Comm_dup(comm_, &shadow_);
    worker_ = std::make_unique<CommWorker>([this](CommTask& t) { Run(t); });
    Watchdog::Get().Register(name_, this);
  }

  ~MpiCommunicator() override {
    Watchdog::Get().Unregister(name_);
    worker_.reset();
    if (shadow_ != MPI_COMM_NULL) MPI_Comm_free(&shadow_);
    if (comm_ != MPI_COMM_WORLD) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  const std::vector<int>& world_ranks() const override { return ranks_; }
  int64_t sequence() const override { return submitted_; }

  CommStatus Status(double* waited_s) {
    std::lock_guard<std::mutex> lock(status_mu_);
    if (waited_s) {
      *waited_s =
          status_.in_flight
              ? std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count()
              : 0.0;
    }
    return status_;
  }

 protected:
  CommHandle Submit(CollectiveOp op, DType dtype, ReduceOp reduce, void* in, void* out,
                    int64_t count, int root) override {
    CHECK(root >= 0 && root < size_) << "root " << root << " out of range on " << name_;
    CHECK_LT(count, static_cast<int64_t>(INT_MAX)) << CollectiveName(op) << " on " << name_ << ": "
                                                   << count << " elements exceeds MPI's int count";
    auto task = std::make_shared<CommTask>();
    task->op = op;
    task->dtype = dtype;
    task->reduce = reduce;
    task->in = in;
    task->out = out;
    task->count = count;
    task->root = root;
    task->seq = submitted_++;
    worker_->Push(task);
    return CommHandle(task);
  }

 private:
  void Run(CommTask& t) {
    {
      std::lock_guard<std::mutex> lock(status_mu_);
      status_.entered = t.seq + 1;
      status_.in_flight = 1;
      status_.op = static_cast<int32_t>(t.op);
      status_.dtype = static_cast<int32_t>(t.dtype);
      status_.count = t.count;
      status_.seq = t.seq;
      started_ = std::chrono::steady_clock::now();
    }
    if (debug_) CrossCheck(t);
    const int n = static_cast<int>(t.count);
    MPI_Datatype type = ToMpi(t.dtype);
    int rc = MPI_SUCCESS;
    switch (t.op) {
      case CollectiveOp::kAllReduce:
        rc = MPI_Allreduce(t.in == t.out ? MPI_IN_PLACE : t.in, t.out, n, type, ToMpi(t.reduce),
                           comm_);
        break;
      case CollectiveOp::kBroadcast:
        rc = MPI_Bcast(t.out, n, type, t.root, comm_);
        break;
      case CollectiveOp::kAllGather:
        rc = MPI_Allgather(t.in, n, type, t.out, n, type, comm_);
        break;
      case CollectiveOp::kReduceScatter:
        rc = MPI_Reduce_scatter_block(t.in, t.out, n, type, ToMpi(t.reduce), comm_);
        break;
      case CollectiveOp::kBarrier:
        rc = MPI_Barrier(comm_);
        break;
    }
    CHECK_EQ(rc, MPI_SUCCESS) << CollectiveName(t.op) << " #" << t.seq << " on " << name_
                              << " failed";
    std::lock_guard<std::mutex> lock(status_mu_);
    status_.in_flight = 0;
  }

  // Debug mode: every rank must be about to run the same (op, dtype, count, root, seq).
  void CrossCheck(const CommTask& t) {
    int64_t sig[5] = {static_cast<int64_t>(t.op), static_cast<int64_t>(t.dtype), t.count, t.root,
                      t.seq};
    std::vector<int64_t> all(5 * static_cast<size_t>(size_));
    MPI_Allgather(sig, 5, MPI_INT64_T, all.data(), 5, MPI_INT64_T, shadow_);
    for (int r = 0; r < size_; ++r) {
      if (std::memcmp(all.data() + 5 * r, sig, sizeof(sig)) != 0) {
        const int64_t* o = all.data() + 5 * r;
        LOG(ERROR) << "collective mismatch on communicator '" << name_ << "': this rank (world "
                   << ranks_[rank_] << ") runs " << CollectiveName(t.op) << " #" << t.seq << " "
                   << DTypeName(t.dtype) << " x" << t.count << " root " << t.root
                   << ", but world rank " << ranks_[r] << " runs "
                   << CollectiveName(static_cast<CollectiveOp>(o[0])) << " #" << o[4] << " "
                   << DTypeName(static_cast<DType>(o[1])) << " x" << o[2] << " root " << o[3];
        MPI_Abort(MPI_COMM_WORLD, 3);
      }
    }
  }

  MPI_Comm comm_;
  MPI_Comm shadow_ = MPI_COMM_NULL;
  std::string name_;
  bool debug_;
  int rank_ = 0, size_ = 1;
  std::vector<int> ranks_;
  int64_t submitted_ = 0;
  std::mutex status_mu_;
  CommStatus status_;
  std::chrono::steady_clock::time_point started_;
  std::unique_ptr<CommWorker> worker_;
};

void Watchdog::AnswerQueries() {
  for (;;) {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, kTagQuery, side_, &flag, &st);
    if (!flag) return;
    char name[kNameLen] = {};
    MPI_Recv(name, kNameLen, MPI_CHAR, st.MPI_SOURCE, kTagQuery, side_, MPI_STATUS_IGNORE);
    CommStatus s;
    s.entered = -1;  // unknown communicator
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = comms_.find(std::string(name, strnlen(name, kNameLen)));
      if (it != comms_.end()) s = it->second->Status(nullptr);
    }
    MPI_Send(&s, sizeof(s), MPI_BYTE, st.MPI_SOURCE, kTagReply, side_);
  }
}

void Watchdog::Loop() {
  while (!stop_) {
    AnswerQueries();
    if (timeout_s_ > 0) {
      MpiCommunicator* stalled = nullptr;
      CommStatus mine;
      double waited = 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& [name, comm] : comms_) {
          double w = 0;
          CommStatus s = comm->Status(&w);
          if (s.in_flight && w > timeout_s_) {
            stalled = comm;
            mine = s;
            waited = w;
            break;
          }
        }
      }
      if (stalled) Diagnose(stalled, mine, waited);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void Watchdog::Diagnose(MpiCommunicator* comm, const CommStatus& mine, double waited) {
  const auto& members = comm->world_ranks();
  char name[kNameLen] = {};
  std::strncpy(name, comm->name().c_str(), kNameLen - 1);
  std::vector<MPI_Request> sends;
  for (int wr : members) {
    if (wr == world_rank_) continue;
    sends.emplace_back();
    MPI_Isend(name, kNameLen, MPI_CHAR, wr, kTagQuery, side_, &sends.back());
  }
  std::map<int, CommStatus> replies;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (replies.size() + 1 < members.size() && std::chrono::steady_clock::now() < deadline) {
    AnswerQueries();  // peers may be diagnosing too
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, kTagReply, side_, &flag, &st);
    if (flag) {
      CommStatus s;
      MPI_Recv(&s, sizeof(s), MPI_BYTE, st.MPI_SOURCE, kTagReply, side_, MPI_STATUS_IGNORE);
      replies[st.MPI_SOURCE] = s;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  std::ostringstream os;
  os << "collective watchdog: " << CollectiveName(static_cast<CollectiveOp>(mine.op)) << " #"
     << mine.seq << " (" << DTypeName(static_cast<DType>(mine.dtype)) << " x" << mine.count
     << ") on communicator '" << comm->name() << "' has waited " << static_cast<int>(waited)
     << " s on world rank " << world_rank_ << ".";
  std::string missing;
  for (int wr : members) {
    if (wr == world_rank_) continue;
    auto it = replies.find(wr);
    std::ostringstream r;
    if (it == replies.end()) {
      r << " world rank " << wr << ": no reply (dead, or hung outside MPI);";
      missing += r.str();
      continue;
    }
    const CommStatus& s = it->second;
    if (s.in_flight && s.seq == mine.seq && s.op == mine.op && s.count == mine.count &&
        s.dtype == mine.dtype) {
      continue;  // arrived
    }
    if (s.in_flight) {
      r << " world rank " << wr << " is in " << CollectiveName(static_cast<CollectiveOp>(s.op))
        << " #" << s.seq << " (" << DTypeName(static_cast<DType>(s.dtype)) << " x" << s.count
        << ") instead;";
    } else {
      r << " world rank " << wr << " did not arrive (it has started " << s.entered
        << " collectives on '" << comm->name() << "', none in flight);";
    }
    missing += r.str();
  }
  os << (missing.empty() ? " Every member has arrived (the stall is inside MPI)."
                         : " Missing:" + missing)
     << " Aborting the job.";
  LOG(ERROR) << os.str();
  google::FlushLogFiles(google::GLOG_INFO);
  MPI_Abort(MPI_COMM_WORLD, 4);
}

}  // namespace

bool LaunchedByMpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (std::getenv(v)) return true;
  }
  return false;
}

std::unique_ptr<Grid> Grid::Create(const GridOptions& opt) {
  std::unique_ptr<Grid> g(new Grid());
  if (opt.tp <= 0 || opt.dp <= 0) Fail("parallel.tp and parallel.dp must be > 0");
  if (!LaunchedByMpi()) {
    if (opt.tp * opt.dp != 1) {
      Fail(
          "parallel.tp x parallel.dp = ", opt.tp, " x ", opt.dp, " = ", opt.tp * opt.dp,
          " processes, but this process was not started by mpirun (world size 1); run: mpirun -np ",
          opt.tp * opt.dp, " roformer ...");
    }
    g->world_ = MakeLocalCommunicator("world", 0);
    g->tp_ = MakeLocalCommunicator("tp", 0);
    g->dp_ = MakeLocalCommunicator("dp", 0);
    return g;
  }
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    if (provided < MPI_THREAD_MULTIPLE) {
      MPI_Finalize();
      Fail("the MPI library does not provide MPI_THREAD_MULTIPLE (got level ", provided,
           "); roformer's communication threads need it");
    }
  }
  g->mpi_ = true;
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (world_size != opt.tp * opt.dp) {
    std::string msg = "world size " + std::to_string(world_size) + " != parallel.tp (" +
                      std::to_string(opt.tp) + ") x parallel.dp (" + std::to_string(opt.dp) +
                      "); start with mpirun -np " + std::to_string(opt.tp * opt.dp) +
                      " or change --set parallel.dp";
    MPI_Finalize();
    Fail(msg);
  }
  Watchdog::Get().Start(opt.watchdog_timeout_s);
  // TP innermost: world rank = dp_rank * tp + tp_rank.
  MPI_Comm tp_comm, dp_comm, local_comm;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank / opt.tp, world_rank % opt.tp, &tp_comm);
  MPI_Comm_split(MPI_COMM_WORLD, world_rank % opt.tp, world_rank / opt.tp, &dp_comm);
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &local_comm);
  MPI_Comm_rank(local_comm, &g->local_rank_);
  MPI_Comm_free(&local_comm);
  MPI_Comm world_dup;
  MPI_Comm_dup(MPI_COMM_WORLD, &world_dup);
  g->world_ = std::make_unique<MpiCommunicator>(world_dup, "world", opt.debug_collectives);
  g->tp_ = std::make_unique<MpiCommunicator>(tp_comm, "tp", opt.debug_collectives);
  g->dp_ = std::make_unique<MpiCommunicator>(dp_comm, "dp", opt.debug_collectives);
  return g;
}

Grid::~Grid() {
  if (!mpi_) return;
  // Everyone stops watching only after everyone is done communicating.
  world_->Barrier();
  Watchdog::Get().Stop();
  tp_.reset();
  dp_.reset();
  world_.reset();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::string Grid::Describe() const {
  std::ostringstream os;
  os << "world " << world_size() << " = tp " << tp_size() << " x dp " << dp_size() << "; rank "
     << world_rank() << ": tp " << tp_rank() << ", dp " << dp_rank() << ", local " << local_rank_;
  return os.str();
}

}  // namespace roformer
