// Averaging: each rank divides its gradient by the DP size BEFORE the collective (Megatron's
// gradient_scaling_factor; NCCL's ncclAvg does the same), fused into the non-finite scan that has
// to read the bucket anyway. Pre-scaling keeps partial sums in range for reduced-precision wire
// formats later. The division is IEEE correctly rounded, so for a power-of-two DP size it is exact
// and the result equals (sum) / dp bit for bit; for other sizes it adds one rounding per element,
// identically on every rank and every run.
//
// Determinism: the collective sequence on the DP communicator is the bucket order, fixed by the
// layout; each bucket's collective has the same count every step, so Open MPI's tuned component
// picks the same algorithm (its decision depends on message size and communicator size only) and
// reduces in the same order: same inputs -> same bits, for a fixed world size and bucket layout.
// Changing dp, the bucket sizes, the Open MPI version or its coll_* MCA parameters may change the
// last bits (not across ranks of one job: every algorithm in Open MPI's tuned all-reduce reduces
// each element once and then distributes it, or combines with commutative pairwise sums).
#include "runtime/grad_reducer.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace roformer {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Whether every element of in[0, n) is finite, and out[i] = in[i] / div in the same pass (out may
// be `in`; null: check only). Integer test on the exponent bits so the loops vectorize without
// -ffast-math (a float accumulation would not).
bool ScaleAndCheck(const float* in, float* out, int64_t n, float div) {
  uint32_t bad = 0;
  auto nonfinite = [](float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof(bits));
    return static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  };
  if (out == nullptr) {
    for (int64_t i = 0; i < n; ++i) bad |= nonfinite(in[i]);
  } else if (div == 1.0f) {
    for (int64_t i = 0; i < n; ++i) {
      bad |= nonfinite(in[i]);
      out[i] = in[i];
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      bad |= nonfinite(in[i]);
      out[i] = in[i] / div;
    }
  }
  return bad == 0;
}

}  // namespace

GradReducer::GradReducer(ParamStore* store, Communicator* dp, GradReducerOptions options)
    : store_(store), dp_(dp), opt_(options) {
  CHECK(store_ != nullptr && dp_ != nullptr);
  CHECK_GT(opt_.bucket_bytes, 0);
  CHECK_GT(opt_.first_bucket_bytes, 0);
  CHECK(opt_.zero_stage == 0 || opt_.zero_stage == 1) << "zero_stage " << opt_.zero_stage;
  CHECK_EQ(static_cast<int64_t>(store_->grads().size()), store_->size())
      << "GradReducer needs an allocated ParamStore";
  dp_size_ = dp_->size();
  dp_rank_ = dp_->rank();
  world_rank_ = dp_->world_ranks()[dp_rank_];
  BuildBuckets();
  ready_.assign(store_->infos().size(), 0);
  launch_order_.reserve(buckets_.size());
  obs_items_.resize(buckets_.size());
  if (opt_.zero_stage == 1 && dp_size_ > 1) {
    int64_t send = 0, recv = 0;
    for (auto& bk : buckets_) {
      bk.block = (bk.end - bk.begin + dp_size_ - 1) / dp_size_;
      bk.send_offset = send;
      bk.recv_offset = recv;
      send += bk.block * dp_size_;
      recv += bk.block;
    }
    // Zero-filled once: the padding at the end of each bucket's send block is never written, so it
    // contributes exact zeros to the owner of the last block.
    send_.assign(send, 0.0f);
    recv_.assign(recv, 0.0f);
  }
  if (dp_size_ > 1) observer_ = std::thread([this] { ObserverLoop(); });
  int64_t max_n = 0;
  for (const auto& bk : buckets_) max_n = std::max(max_n, bk.end - bk.begin);
  LOG(INFO) << "grad reducer: " << buckets_.size() << " buckets over " << store_->size()
            << " gradients (first " << (buckets_.empty() ? 0 : buckets_[0].end - buckets_[0].begin)
            << ", largest " << max_n << " elements), dp " << dp_size_ << ", zero_stage "
            << opt_.zero_stage << (opt_.average ? ", averaged" : ", summed");
}

GradReducer::~GradReducer() {
  // A step abandoned mid-way (an exception during backward) still has collectives that read and
  // write our buffers: let them finish before the staging goes away.
  for (auto& bk : buckets_) bk.handle.Wait();
  if (observer_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(obs_mu_);
      obs_stop_ = true;
    }
    obs_cv_.notify_all();
    observer_.join();
  }
}

void GradReducer::BuildBuckets() {
  const auto& infos = store_->infos();
  for (GradBucket& planned : PlanGradBuckets(infos, opt_.bucket_bytes, opt_.first_bucket_bytes)) {
    Bucket bk;
    static_cast<GradBucket&>(bk) = std::move(planned);
    bk.total_tensors = static_cast<int>(bk.pieces.size());
    bk.pending = bk.total_tensors;
    buckets_.push_back(std::move(bk));
  }
  std::vector<GradBucket> plain(buckets_.begin(), buckets_.end());
  tensor_buckets_ = BucketsOfTensors(plain, infos.size());
}

void GradReducer::MarkReady(const std::string& tensor_name) {
  const ParamInfo& info = store_->info(tensor_name);
  MarkReady(static_cast<size_t>(&info - store_->infos().data()));
}

void GradReducer::MarkReady(size_t index) {
  CHECK_LT(index, ready_.size());
  CHECK(!ready_[index]) << "MarkReady twice in one step: " << store_->infos()[index].name;
  ready_[index] = 1;
  for (int b : tensor_buckets_[index]) --buckets_[b].pending;
  LaunchReady();
}

void GradReducer::LaunchReady() {
  // Strictly in bucket order: a complete bucket waits for its predecessors, so the collective
  // sequence is the same on every rank whatever order backward finishes tensors in.
  while (next_launch_ < num_buckets() && buckets_[next_launch_].pending == 0) {
    Launch(next_launch_++);
  }
}

void GradReducer::Launch(int b) {
  if (b == 0) {
    launch_order_.clear();
    nonfinite_tensors_.clear();
  }
  Bucket& bk = buckets_[b];
  CHECK(!bk.launched);
  float* g = store_->grads().data();
  const bool wire = dp_size_ > 1;
  const float div = opt_.average && wire ? static_cast<float>(dp_size_) : 1.0f;
  const bool staged = opt_.zero_stage == 1 && wire;  // ZeRO-1 sends from a padded staging copy
  // Non-finite check BEFORE the collective (after it every rank would see the NaN, and the rank
  // that produced it could no longer be told apart), fused with the pre-scaling pass.
  for (const GradBucketPiece& p : bk.pieces) {
    const int64_t len = p.end - p.begin;
    float* out = staged        ? send_.data() + bk.send_offset + (p.begin - bk.begin)
                 : div != 1.0f ? g + p.begin
                               : nullptr;
    const bool finite = ScaleAndCheck(g + p.begin, out, len, div);
    if (finite) continue;
    const std::string& name = store_->infos()[p.tensor].name;
    if (std::find(nonfinite_tensors_.begin(), nonfinite_tensors_.end(), name) !=
        nonfinite_tensors_.end()) {
      continue;  // another piece of a split tensor
    }
    if (nonfinite_tensors_.size() < 8) {
      LOG(WARNING) << "non-finite gradient in " << name << " on world rank " << world_rank_
                   << " (dp rank " << dp_rank_ << "), found before the DP reduction (bucket " << b
                   << ")";
    }
    nonfinite_tensors_.push_back(name);
  }
  if (wire) {
    const int64_t n = bk.end - bk.begin;
    if (opt_.zero_stage == 0) {
      bk.handle = dp_->AllReduceAsync(std::span<float>(g + bk.begin, static_cast<size_t>(n)));
    } else {
      bk.handle = dp_->ReduceScatterAsync(
          std::span<const float>(send_.data() + bk.send_offset,
                                 static_cast<size_t>(bk.block * dp_size_)),
          std::span<float>(recv_.data() + bk.recv_offset, static_cast<size_t>(bk.block)));
    }
    std::lock_guard<std::mutex> lock(obs_mu_);
    obs_items_[obs_submitted_++] = {bk.handle, Clock::now()};
    obs_cv_.notify_all();
  }
  bk.launched = true;
  launch_order_.push_back(b);
}

void GradReducer::FinishBackward() {
  // Tensors never marked (unused this step) hold whatever the grad buffer holds, normally zeros.
  while (next_launch_ < num_buckets()) Launch(next_launch_++);
  const auto t0 = Clock::now();
  for (auto& bk : buckets_) bk.handle.Wait();
  last_exposed_s_ = Seconds(t0, Clock::now());
  if (opt_.zero_stage == 1 && dp_size_ > 1) {
    float* g = store_->grads().data();
    for (const auto& bk : buckets_) {
      FlatRange o = Owned(bk);
      std::memcpy(g + o.begin, recv_.data() + bk.recv_offset,
                  static_cast<size_t>(o.end - o.begin) * sizeof(float));
    }
  }
  last_comm_s_ = 0;
  if (observer_.joinable()) {
    std::unique_lock<std::mutex> lock(obs_mu_);
    obs_cv_.wait(lock, [&] { return obs_completed_ == obs_submitted_; });
    last_comm_s_ = obs_busy_s_;
    obs_busy_s_ = 0;
    obs_submitted_ = obs_completed_ = 0;
    obs_last_done_ = Clock::time_point();
    for (auto& item : obs_items_) item.handle = CommHandle();
  }
  total_exposed_s_ += last_exposed_s_;
  total_comm_s_ += last_comm_s_;
  for (auto& bk : buckets_) {
    bk.handle = CommHandle();
    bk.launched = false;
    bk.pending = bk.total_tensors;
  }
  std::fill(ready_.begin(), ready_.end(), 0);
  next_launch_ = 0;
  reduced_ = true;
}

void GradReducer::ObserverLoop() {
  for (;;) {
    Launched item;
    {
      std::unique_lock<std::mutex> lock(obs_mu_);
      obs_cv_.wait(lock, [&] { return obs_stop_ || obs_completed_ < obs_submitted_; });
      if (obs_completed_ == obs_submitted_) return;  // stop requested and nothing in flight
      item = obs_items_[obs_completed_];
    }
    item.handle.Wait();
    const auto done = Clock::now();
    {
      std::lock_guard<std::mutex> lock(obs_mu_);
      // The communicator runs collectives FIFO: this one started when it was launched or when the
      // previous one finished, whichever is later.
      obs_busy_s_ += Seconds(std::max(item.launched, obs_last_done_), done);
      obs_last_done_ = done;
      ++obs_completed_;
    }
    obs_cv_.notify_all();
  }
}

FlatRange GradReducer::Owned(const Bucket& bk) const {
  if (opt_.zero_stage == 0 || dp_size_ == 1) return {bk.begin, bk.end};
  const int64_t b = std::min(bk.end, bk.begin + dp_rank_ * bk.block);
  return {b, std::min(bk.end, b + bk.block)};
}

std::vector<FlatRange> GradReducer::OwnedRanges() const {
  if (opt_.zero_stage == 0 || dp_size_ == 1) return {{0, store_->size()}};
  std::vector<FlatRange> out;
  for (const auto& bk : buckets_) {
    FlatRange o = Owned(bk);
    if (o.end > o.begin) out.push_back(o);
  }
  std::sort(out.begin(), out.end(),
            [](const FlatRange& a, const FlatRange& b) { return a.begin < b.begin; });
  return out;
}

double GradReducer::GlobalGradNorm(Communicator* tp) {
  const bool split_tp = tp != nullptr && tp->size() > 1;
  const float* g = store_->grads().data();
  const std::vector<FlatRange> owned = OwnedRanges();
  // Per tensor in declaration order, each tensor's partial in double summed sequentially: with one
  // owned range this is exactly CheckGradients' order, so the two agree bit for bit.
  double total = 0, sharded = 0, replicated = 0;
  for (const auto& info : store_->infos()) {
    double s = 0;
    for (const FlatRange& r : owned) {
      const int64_t b = std::max(r.begin, info.offset);
      const int64_t e = std::min(r.end, info.offset + info.numel);
      for (int64_t i = b; i < e; ++i) s += static_cast<double>(g[i]) * g[i];
    }
    total += s;
    (info.placement == Placement::kReplicated ? replicated : sharded) += s;
  }
  const bool sharded_dp = opt_.zero_stage == 1 && dp_size_ > 1;
  if (!split_tp) {
    if (sharded_dp) dp_->AllReduce(std::span<double>(&total, 1));
    return std::sqrt(total);
  }
  double parts[2] = {sharded, replicated};
  if (sharded_dp) dp_->AllReduce(std::span<double>(parts, 2));
  // TP-replicated gradients are identical on every TP rank: count them once.
  if (tp->rank() != 0) parts[1] = 0;
  tp->AllReduce(std::span<double>(parts, 2));
  return std::sqrt(parts[0] + parts[1]);
}

void GradReducer::OptimizerStepZero1(const AdamWOptions& opt, double lr, int64_t step,
                                     double grad_norm) {
  CHECK_EQ(opt_.zero_stage, 1) << "OptimizerStepZero1 needs zero_stage 1 (use AdamWStep)";
  CHECK(reduced_) << "OptimizerStepZero1 before FinishBackward";
  reduced_ = false;
  if (dp_size_ == 1) {
    AdamWStep(store_, opt, lr, step, grad_norm);
    last_gather_s_ = 0;
    return;
  }
  for (const auto& bk : buckets_) {
    FlatRange o = Owned(bk);
    if (o.end > o.begin) AdamWStepRange(store_, opt, lr, step, grad_norm, o.begin, o.end);
  }
  const auto t0 = Clock::now();
  GatherOwned(store_->params().data());
  last_gather_s_ = Seconds(t0, Clock::now());
}

void GradReducer::GatherOptimizerState() {
  if (opt_.zero_stage == 0 || dp_size_ == 1) return;
  GatherOwned(store_->adam_m().data());
  GatherOwned(store_->adam_v().data());
}

void GradReducer::GatherOwned(float* data) {
  CHECK_EQ(next_launch_, 0) << "DP gather while a backward's buckets are in flight";
  // Last bucket first: it holds the first layers, which the next forward needs first (a later
  // overlap of the gather with the forward can wait per bucket).
  for (int b = num_buckets() - 1; b >= 0; --b) {
    Bucket& bk = buckets_[b];
    FlatRange o = Owned(bk);
    float* in = recv_.data() + bk.recv_offset;
    const int64_t len = o.end - o.begin;
    std::memcpy(in, data + o.begin, static_cast<size_t>(len) * sizeof(float));
    std::fill(in + len, in + bk.block, 0.0f);
    bk.handle = dp_->AllGatherAsync(
        std::span<const float>(in, static_cast<size_t>(bk.block)),
        std::span<float>(send_.data() + bk.send_offset, static_cast<size_t>(bk.block * dp_size_)));
  }
  for (int b = num_buckets() - 1; b >= 0; --b) {
    Bucket& bk = buckets_[b];
    bk.handle.Wait();
    bk.handle = CommHandle();
    std::memcpy(data + bk.begin, send_.data() + bk.send_offset,
                static_cast<size_t>(bk.end - bk.begin) * sizeof(float));
    // The gather wrote the tail padding of the send staging: restore the zeros the reduce-scatter
    // relies on.
    float* s = send_.data() + bk.send_offset;
    std::fill(s + (bk.end - bk.begin), s + bk.block * dp_size_, 0.0f);
  }
}

}  // namespace roformer
