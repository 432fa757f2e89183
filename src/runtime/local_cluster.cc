#include "omniplacement/runtime/local_cluster.h"

#include <algorithm>
#include <thread>

#include "omniplacement/core/str_cat.h"
#include "rank_threads.h"

namespace omni {

namespace {

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// OK, or the lowest failing rank's status with its rank.
Status first_error(const std::vector<Status>& statuses) {
  for (size_t r = 0; r < statuses.size(); ++r)
    if (!statuses[r].ok()) return statuses[r].with_context(str_cat("rank ", r));
  return ok_status();
}

Status closed_error() { return failed_precondition_error("LocalCluster is closed"); }

}  // namespace

LocalCluster::LocalCluster(const Placement& initial, const Topology& topology, std::vector<int64_t> slot_bytes,
                           LocalClusterOptions options)
    : initial_(initial), topology_(topology), slot_bytes_(std::move(slot_bytes)), options_(std::move(options)) {}

StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::create(const Placement& initial, const Topology& topology,
                                                             std::vector<int64_t> slot_bytes,
                                                             LocalClusterOptions options) {
  const int32_t R = initial.num_ranks();
  if (topology.num_ranks() != R)
    return invalid_argument_error(
        str_cat("LocalCluster: the topology has ", topology.num_ranks(), " ranks, the placement ", R));
  if (static_cast<int32_t>(slot_bytes.size()) != initial.num_layers())
    return invalid_argument_error(str_cat("LocalCluster: slot_bytes has ", slot_bytes.size(), " entries, the placement ",
                                          initial.num_layers(), " layers"));
  if (!options.backups.empty() && static_cast<int32_t>(options.backups.size()) != R)
    return invalid_argument_error(str_cat("LocalCluster: ", options.backups.size(),
                                          " backup sources; give one per rank (", R, ") or none"));
  OMNI_ASSIGN_OR_RETURN(LocalGroup group, LocalGroup::create(R));
  std::unique_ptr<LocalCluster> cluster(new LocalCluster(initial, topology, std::move(slot_bytes), std::move(options)));
  const Status s = cluster->start(std::move(group));
  if (!s.ok()) {
    cluster->close();
    return s.with_context("LocalCluster");
  }
  return cluster;
}

Status LocalCluster::start(LocalGroup group) {
  const int32_t R = num_ranks();
  group_ = std::move(group);
  const auto n = static_cast<size_t>(R);
  killed_.assign(n, 0);
  kill_requested_.assign(n, 0);
  stall_.assign(n, std::chrono::milliseconds(0));
  detected_ns_ = std::make_unique<std::atomic<int64_t>[]>(n);
  for (size_t r = 0; r < n; ++r) detected_ns_[r].store(0);
  std::vector<int32_t> slots;
  for (LayerId l = 0; l < initial_.num_layers(); ++l) slots.push_back(initial_.slots_per_rank(l));
  for (RankId r = 0; r < R; ++r) {
    OMNI_ASSIGN_OR_RETURN(auto store, HostWeightStore::create(slot_bytes_, slots, options_.manager.staging_bytes_per_rank));
    stores_.push_back(std::move(store));
  }
  managers_.resize(n);
  detectors_.resize(n);
  threads_ = std::make_unique<runtime_internal::RankThreads>(R);
  // Creation is collective (the manager duplicates the transport; the
  // barrier makes every detector run before anyone may die): every rank at once.
  return first_error(threads_->run([&](RankId r) -> Status {
    const auto q = static_cast<size_t>(r);
    PlacementManagerOptions mo = options_.manager;
    if (!options_.backups.empty()) mo.backup = options_.backups[q];
    OMNI_ASSIGN_OR_RETURN(managers_[q], PlacementManager::create(group_.transport(r), topology_, initial_, *stores_[q], mo));
    if (!options_.heartbeats) return ok_status();
    FailureDetectorOptions fo = options_.detector;
    fo.on_change = [this, q, user = options_.detector.on_change](const Membership& m) {
      int64_t zero = 0;
      detected_ns_[q].compare_exchange_strong(zero, steady_ns());
      managers_[q]->on_membership(m);
      if (user) user(m);
    };
    {
      std::lock_guard<std::mutex> lock(detector_mu_);
      OMNI_ASSIGN_OR_RETURN(detectors_[q], FailureDetector::start(group_.transport(r), fo));
    }
    return group_.transport(r).barrier(options_.manager.collective_timeout);
  }));
}

LocalCluster::~LocalCluster() { close(); }

void LocalCluster::close() {
  std::unique_lock<std::shared_mutex> life(life_);
  if (closed_.exchange(true)) return;
  if (!threads_) return;
  const int32_t R = num_ranks();
  // A kill() from now on leaves the detectors alone.
  {
    std::lock_guard<std::mutex> lock(detector_mu_);
    closing_ = true;
  }
  // On every engine thread at once: the rank's detector first (its callback
  // uses the rank's manager; a live rank says goodbye), then its manager. A
  // killed rank is first cut off from every other rank so that its planner's
  // waits end at once: no survivor uses the group any more.
  const std::vector<RankId> dead = killed_ranks();
  (void)threads_->run([&](RankId r) {
    const auto q = static_cast<size_t>(r);
    detectors_[q].reset();
    if (managers_[q] && std::find(dead.begin(), dead.end(), r) != dead.end()) {
      std::vector<RankId> others;
      for (RankId o = 0; o < R; ++o)
        if (o != r) others.push_back(o);
      (void)managers_[q]->fail_ranks(others);
    }
    managers_[q].reset();
    return ok_status();
  });
  threads_.reset();
}

int64_t LocalCluster::slot_bytes(LayerId l) const {
  OMNI_CHECK_MSG(l >= 0 && l < initial_.num_layers(),
                 str_cat("LocalCluster::slot_bytes: layer ", l, " with ", initial_.num_layers(), " layers"));
  return slot_bytes_[static_cast<size_t>(l)];
}

Transport& LocalCluster::transport(RankId r) { return group_.transport(r); }

PlacementManager& LocalCluster::manager(RankId r) {
  OMNI_CHECK_MSG(r >= 0 && r < num_ranks() && managers_[static_cast<size_t>(r)],
                 str_cat("LocalCluster::manager(", r, ") with ", num_ranks(), " ranks (or after close)"));
  return *managers_[static_cast<size_t>(r)];
}

HostWeightStore& LocalCluster::store(RankId r) {
  OMNI_CHECK_MSG(r >= 0 && r < num_ranks(), str_cat("LocalCluster::store(", r, ") with ", num_ranks(), " ranks"));
  return *stores_[static_cast<size_t>(r)];
}

Status LocalCluster::check_rank(const char* what, RankId r) const {
  if (r < 0 || r >= num_ranks())
    return invalid_argument_error(
        str_cat("LocalCluster.", what, ": rank ", r, " out of range; valid ranks are 0..", num_ranks() - 1));
  return ok_status();
}

Status LocalCluster::check_layer(const char* what, LayerId l) const {
  if (l < 0 || l >= initial_.num_layers())
    return invalid_argument_error(
        str_cat("LocalCluster.", what, ": layer ", l, " out of range; valid layers are 0..", initial_.num_layers() - 1));
  return ok_status();
}

Status LocalCluster::run_locked(const std::function<Status(RankId)>& fn) {
  return first_error(threads_->run([&](RankId r) { return killed(r) ? ok_status() : fn(r); }));
}

Status LocalCluster::run(const std::function<Status(RankId)>& fn) {
  std::shared_lock<std::shared_mutex> life(life_);
  if (closed_.load()) return closed_error();
  std::lock_guard<std::mutex> engine(engine_mu_);
  return run_locked(fn);
}

Status LocalCluster::record(RankId r, LayerId l, std::span<const ExpertId> topk_ids) {
  OMNI_RETURN_IF_ERROR(check_rank("record", r));
  std::shared_lock<std::shared_mutex> life(life_);
  if (closed_.load()) return closed_error();
  managers_[static_cast<size_t>(r)]->record(l, topk_ids);
  return ok_status();
}

Status LocalCluster::dispatch(RankId r, LayerId l, std::span<const ExpertId> topk_ids, std::span<GlobalSlot> out) {
  OMNI_RETURN_IF_ERROR(check_rank("dispatch", r));
  if (options_.manager.dispatch_mode == DispatchMode::kPerBatch)
    return failed_precondition_error(
        "LocalCluster.dispatch: per-batch mode gathers every rank's counts; call dispatch_all(layer, ids_per_rank)");
  std::shared_lock<std::shared_mutex> life(life_);
  if (closed_.load()) return closed_error();
  std::lock_guard<std::mutex> engine(engine_mu_);
  return managers_[static_cast<size_t>(r)]->dispatch(l, topk_ids, out);
}

Status LocalCluster::dispatch_all(LayerId l, std::span<const std::span<const ExpertId>> topk_ids,
                                  std::span<const std::span<GlobalSlot>> out) {
  const auto R = static_cast<size_t>(num_ranks());
  if (topk_ids.size() != R || out.size() != R)
    return invalid_argument_error(str_cat("LocalCluster.dispatch_all: ", topk_ids.size(), " arrays of ids and ",
                                          out.size(), " outputs, expected one per rank (", R, ")"));
  std::shared_lock<std::shared_mutex> life(life_);
  if (closed_.load()) return closed_error();
  std::lock_guard<std::mutex> engine(engine_mu_);
  return run_locked([&](RankId r) {
    const auto q = static_cast<size_t>(r);
    return managers_[q]->dispatch(l, topk_ids[q], out[q]);
  });
}

Status LocalCluster::step_boundary(int64_t step) {
  std::shared_lock<std::shared_mutex> life(life_);
  if (closed_.load()) return closed_error();
  std::lock_guard<std::mutex> engine(engine_mu_);
  return run_locked([&](RankId r) { return managers_[static_cast<size_t>(r)]->step_boundary(step); });
}

StatusOr<PlacementManagerStats> LocalCluster::stats(RankId r) const {
  OMNI_RETURN_IF_ERROR(check_rank("stats", r));
  std::shared_lock<std::shared_mutex> life(life_);
  if (closed_.load()) return closed_error();
  return managers_[static_cast<size_t>(r)]->stats();
}

StatusOr<std::shared_ptr<const RoutingSnapshot>> LocalCluster::snapshot(RankId r) const {
  OMNI_RETURN_IF_ERROR(check_rank("snapshot", r));
  std::shared_lock<std::shared_mutex> life(life_);
  if (closed_.load()) return closed_error();
  return managers_[static_cast<size_t>(r)]->snapshot();
}

Status LocalCluster::flush_dumps() {
  std::shared_lock<std::shared_mutex> life(life_);
  if (closed_.load()) return closed_error();
  Status s;
  for (auto& pm : managers_)
    if (s.ok()) s = pm->flush_dumps();
  return s;
}

Status LocalCluster::read_slot(RankId r, LayerId l, SlotId s, int64_t offset, std::span<std::byte> out) const {
  OMNI_RETURN_IF_ERROR(check_rank("read_slot", r));
  OMNI_RETURN_IF_ERROR(check_layer("read_slot", l));
  std::shared_lock<std::shared_mutex> life(life_);
  if (closed_.load()) return closed_error();
  // Under the engine lock: a commit (step_boundary) never runs meanwhile.
  std::lock_guard<std::mutex> engine(engine_mu_);
  return stores_[static_cast<size_t>(r)]->read_slot(l, s, offset, out);
}

Status LocalCluster::write_slot(RankId r, LayerId l, SlotId s, int64_t offset, std::span<const std::byte> data) {
  OMNI_RETURN_IF_ERROR(check_rank("write_slot", r));
  OMNI_RETURN_IF_ERROR(check_layer("write_slot", l));
  std::shared_lock<std::shared_mutex> life(life_);
  if (closed_.load()) return closed_error();
  std::lock_guard<std::mutex> engine(engine_mu_);
  return stores_[static_cast<size_t>(r)]->write_slot(l, s, offset, data);
}

// --- Failure injection -------------------------------------------------------

void LocalCluster::kill(RankId r) {
  OMNI_CHECK_MSG(r >= 0 && r < num_ranks(), str_cat("LocalCluster::kill(", r, ") with ", num_ranks(), " ranks"));
  const auto q = static_cast<size_t>(r);
  {
    std::lock_guard<std::mutex> lock(kill_mu_);
    if (killed_[q]) return;
    killed_[q] = 1;
    const int64_t now = steady_ns();
    if (first_kill_ns_ == 0 || now < first_kill_ns_) first_kill_ns_ = now;
  }
  kill_cv_.notify_all();
  {
    // A crash: the heartbeats stop without a goodbye.
    std::lock_guard<std::mutex> lock(detector_mu_);
    if (!closing_ && detectors_[q]) detectors_[q]->stop(/*graceful=*/false);
  }
  if (options_.on_kill) options_.on_kill(r);
}

void LocalCluster::stall(RankId r, std::chrono::milliseconds duration) {
  OMNI_CHECK_MSG(r >= 0 && r < num_ranks(), str_cat("LocalCluster::stall(", r, ") with ", num_ranks(), " ranks"));
  {
    // The whole rank stops, heartbeats included, as a stopped process would.
    std::lock_guard<std::mutex> lock(detector_mu_);
    if (!closing_ && detectors_[static_cast<size_t>(r)]) detectors_[static_cast<size_t>(r)]->silence_for(duration);
  }
  std::this_thread::sleep_for(duration);
}

void LocalCluster::request_kill(RankId r) {
  OMNI_CHECK_MSG(r >= 0 && r < num_ranks(), str_cat("LocalCluster::request_kill(", r, ") with ", num_ranks(), " ranks"));
  std::lock_guard<std::mutex> lock(kill_mu_);
  kill_requested_[static_cast<size_t>(r)] = 1;
}

void LocalCluster::request_stall(RankId r, std::chrono::milliseconds duration) {
  OMNI_CHECK_MSG(r >= 0 && r < num_ranks(), str_cat("LocalCluster::request_stall(", r, ") with ", num_ranks(), " ranks"));
  std::lock_guard<std::mutex> lock(kill_mu_);
  stall_[static_cast<size_t>(r)] = duration;
}

bool LocalCluster::checkpoint(RankId r) {
  OMNI_CHECK_MSG(r >= 0 && r < num_ranks(), str_cat("LocalCluster::checkpoint(", r, ") with ", num_ranks(), " ranks"));
  const auto q = static_cast<size_t>(r);
  std::chrono::milliseconds stall{0};
  bool kill_now = false;
  {
    std::lock_guard<std::mutex> lock(kill_mu_);
    if (killed_[q]) return true;
    std::swap(stall, stall_[q]);
    kill_now = kill_requested_[q] != 0;
  }
  if (stall.count() > 0) std::this_thread::sleep_for(stall);
  if (kill_now) kill(r);
  return killed(r);
}

bool LocalCluster::killed(RankId r) const {
  std::lock_guard<std::mutex> lock(kill_mu_);
  return r >= 0 && r < num_ranks() && killed_[static_cast<size_t>(r)] != 0;
}

bool LocalCluster::wait_killed(RankId r, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(kill_mu_);
  return kill_cv_.wait_for(lock, timeout, [&] { return r >= 0 && r < num_ranks() && killed_[static_cast<size_t>(r)]; });
}

std::vector<RankId> LocalCluster::killed_ranks() const {
  std::lock_guard<std::mutex> lock(kill_mu_);
  std::vector<RankId> out;
  for (RankId r = 0; r < num_ranks(); ++r)
    if (killed_[static_cast<size_t>(r)]) out.push_back(r);
  return out;
}

int64_t LocalCluster::first_kill_ns() const {
  std::lock_guard<std::mutex> lock(kill_mu_);
  return first_kill_ns_;
}

int64_t LocalCluster::first_detection_ns(RankId r) const {
  OMNI_CHECK_MSG(r >= 0 && r < num_ranks(),
                 str_cat("LocalCluster::first_detection_ns(", r, ") with ", num_ranks(), " ranks"));
  return detected_ns_[static_cast<size_t>(r)].load();
}

}  // namespace omni
