#include "omniplacement/transport/local_transport.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <thread>
#include <tuple>

#include "omniplacement/core/str_cat.h"
#include "deadline.h"
#include "transport_util.h"

namespace omni {
namespace transport_internal {

namespace {

// What a collective round does; every rank of a round must agree on it.
enum class RoundKind : int { kBarrier, kAllReduceInt64, kAllReduceDouble, kAllGather, kBroadcast, kDuplicate };

const char* round_kind_name(RoundKind k) {
  switch (k) {
    case RoundKind::kBarrier: return "barrier";
    case RoundKind::kAllReduceInt64: return "all_reduce(int64)";
    case RoundKind::kAllReduceDouble: return "all_reduce(double)";
    case RoundKind::kAllGather: return "all_gather";
    case RoundKind::kBroadcast: return "broadcast";
    case RoundKind::kDuplicate: return "duplicate";
  }
  return "collective";
}

struct RoundSignature {
  RoundKind kind = RoundKind::kBarrier;
  size_t bytes = 0;   // contribution length (all_reduce, all_gather) or payload length (broadcast)
  int32_t extra = 0;  // reduce op or broadcast root
  friend bool operator==(const RoundSignature&, const RoundSignature&) = default;
};

std::string describe(const RoundSignature& s) {
  return str_cat(round_kind_name(s.kind), " of ", s.bytes, " bytes (op/root ", s.extra, ")");
}

}  // namespace

// One collective call, shared by the ranks that make their k-th collective.
// The first rank to arrive fixes the signature and the expected participants
// (its live ranks); contributions are owned copies, immutable once the round
// is complete, so ranks read them without the lock afterwards.
struct Round {
  RoundSignature signature;
  std::vector<char> expected;  // [num_ranks] 1 = must contribute
  int32_t num_expected = 0;
  std::vector<char> arrived;   // [num_ranks]
  int32_t num_arrived = 0;
  int32_t num_departed = 0;
  std::vector<std::vector<std::byte>> contributions;  // [num_ranks]
  std::shared_ptr<LocalHub> duplicated;  // kDuplicate: the new group's hub
  Status error;                          // set once: every participant returns it
  bool complete() const { return error.ok() && num_arrived == num_expected; }
};

// A send waiting for its receiver. Lives on the sender's stack; the sender
// does not return while the receiver may still touch it (state kClaimed).
struct PendingSend {
  enum class State { kQueued, kClaimed, kDone, kRejected };
  const std::byte* data = nullptr;
  size_t size = 0;
  State state = State::kQueued;
  size_t receiver_expected = 0;  // set with kRejected
};

struct LocalHub {
  explicit LocalHub(int32_t n)
      : num_ranks(n),
        failed(static_cast<size_t>(n), std::vector<char>(static_cast<size_t>(n), 0)),
        fenced_by(static_cast<size_t>(n), -1),
        self_fence_reason(static_cast<size_t>(n)) {}

  const int32_t num_ranks;
  std::mutex mu;
  // Woken on every change: arrival, message, claim, completion, failure.
  // One variable for all keeps the wake-up logic obviously complete; waiters
  // recheck their own predicate.
  std::condition_variable cv;
  std::vector<std::vector<char>> failed;  // failed[viewer][r], guarded by mu
  // fenced_by[r]: the first rank that marked r failed (-1: none). From then on
  // every call r makes on this hub fails (fencing, transport.h). Guarded by mu.
  std::vector<RankId> fenced_by;
  std::vector<std::string> self_fence_reason;  // fenced_by[r] == r: why r fenced itself; guarded by mu
  std::map<uint64_t, std::shared_ptr<Round>> rounds;  // by round number, guarded by mu
  // Sends waiting for a receiver, in send() start order, by (src, dst, tag).
  std::map<std::tuple<RankId, RankId, int32_t>, std::deque<PendingSend*>> queues;  // guarded by mu

  bool is_failed(RankId viewer, RankId r) const {
    return failed[static_cast<size_t>(viewer)][static_cast<size_t>(r)] != 0;
  }
  bool is_fenced(RankId r) const { return fenced_by[static_cast<size_t>(r)] >= 0; }
  // The status every call of fenced rank r returns.
  Status fence_status(RankId r) const {
    const RankId by = fenced_by[static_cast<size_t>(r)];
    if (by < 0) return ok_status();
    if (by == r) {
      return failed_precondition_error(
          str_cat("rank ", r, " (local): fenced: ", self_fence_reason[static_cast<size_t>(r)]));
    }
    std::string set = "{";
    for (size_t x = 0; x < failed[static_cast<size_t>(by)].size(); ++x) {
      if (failed[static_cast<size_t>(by)][x]) set += str_cat(set.size() > 1 ? ", " : "", x);
    }
    return failed_precondition_error(str_cat("rank ", r, " (local): fenced: rank ", by,
                                             " declared this rank failed (its failed set ", set,
                                             "}); a rank is never un-failed, this one must leave the group"));
  }
};

}  // namespace transport_internal

using transport_internal::Deadline;
using transport_internal::LocalHub;
using transport_internal::PendingSend;
using transport_internal::Round;
using transport_internal::RoundKind;
using transport_internal::RoundSignature;
using transport_internal::where;

namespace {

// Joins this rank's round `number`, waits until it completes and returns it
// (or the error every participant gets). contribution is copied into the hub
// before the lock is taken. A non-OK `poison` fails the round for everyone
// (bad arguments on one rank make every rank fail fast instead of timing out).
StatusOr<std::shared_ptr<Round>> run_round(LocalHub& hub, const Transport& self, uint64_t number,
                                           const RoundSignature& signature, std::span<const std::byte> contribution,
                                           const Status& poison, Timeout timeout) {
  const Deadline deadline(timeout);
  const RankId me = self.rank();
  const auto n = static_cast<size_t>(hub.num_ranks);
  std::vector<std::byte> copy(contribution.begin(), contribution.end());
  std::unique_lock<std::mutex> lock(hub.mu);
  OMNI_RETURN_IF_ERROR(hub.fence_status(me));
  std::shared_ptr<Round>& slot = hub.rounds[number];
  if (!slot) {
    slot = std::make_shared<Round>();
    slot->signature = signature;
    slot->expected.assign(n, 0);
    for (size_t r = 0; r < n; ++r) {
      if (!hub.is_failed(me, static_cast<RankId>(r))) {
        slot->expected[r] = 1;
        ++slot->num_expected;
      }
    }
    slot->arrived.assign(n, 0);
    slot->contributions.resize(n);
    // The first rank to arrive creates the new group's hub; the others find it here.
    if (signature.kind == RoundKind::kDuplicate) slot->duplicated = std::make_shared<LocalHub>(hub.num_ranks);
  }
  std::shared_ptr<Round> round = slot;
  const auto leave = [&](Status s) -> Status {
    if (++round->num_departed == round->num_expected) hub.rounds.erase(number);
    return s;
  };
  if (!round->expected[static_cast<size_t>(me)]) {
    // This rank was marked failed by the ranks that opened the round: it must
    // not disturb the survivors' round.
    return unavailable_error(str_cat(where(self), ": collective #", number, " (", describe(signature),
                                     ") runs among ranks that marked this rank failed"));
  }
  if (round->error.ok()) {
    for (size_t r = 0; r < n; ++r) {
      if (hub.is_failed(me, static_cast<RankId>(r)) != (round->expected[r] == 0)) {
        round->error = failed_precondition_error(
            str_cat(where(self), ": collective #", number, ": survivors disagree on the failed set: rank ", r,
                    " is ", round->expected[r] ? "live" : "failed", " for the ranks already in the collective and ",
                    round->expected[r] ? "failed" : "live", " for this rank; mark the same ranks failed everywhere"));
        break;
      }
    }
  }
  if (round->error.ok() && !(round->signature == signature)) {
    round->error = invalid_argument_error(str_cat(where(self), ": collective #", number, " mismatch: this rank called ",
                                                  describe(signature), ", others called ",
                                                  describe(round->signature)));
  }
  if (round->error.ok() && !poison.ok()) round->error = poison;
  round->contributions[static_cast<size_t>(me)] = std::move(copy);
  round->arrived[static_cast<size_t>(me)] = 1;
  ++round->num_arrived;
  hub.cv.notify_all();
  const bool finished = hub.cv.wait_until(
      lock, deadline.at(), [&] { return !round->error.ok() || round->complete() || hub.is_fenced(me); });
  if (!round->error.ok()) return leave(round->error);
  if (!round->complete() && hub.is_fenced(me)) return leave(hub.fence_status(me));
  if (!finished) {
    std::string missing;
    for (size_t r = 0; r < n; ++r) {
      if (round->expected[r] && !round->arrived[r]) missing += str_cat(missing.empty() ? "" : ", ", r);
    }
    return leave(deadline_exceeded_error(str_cat(where(self), ": collective #", number, " (", describe(signature),
                                                 ") timed out after ", transport_internal::timeout_ms(timeout),
                                                 " ms waiting for ranks ", missing)));
  }
  leave(ok_status()).ignore();
  return round;
}

}  // namespace

// --- LocalTransport -------------------------------------------------------

LocalTransport::LocalTransport(std::shared_ptr<LocalHub> hub, RankId rank) : hub_(std::move(hub)), rank_(rank) {}
LocalTransport::~LocalTransport() = default;

StatusOr<std::vector<std::unique_ptr<LocalTransport>>> LocalTransport::create_group(int32_t num_ranks) {
  if (num_ranks < 1 || num_ranks > kMaxRanks) {
    return invalid_argument_error(
        str_cat("LocalTransport: num_ranks ", num_ranks, " is out of range; valid is 1..", kMaxRanks));
  }
  auto hub = std::make_shared<LocalHub>(num_ranks);
  std::vector<std::unique_ptr<LocalTransport>> group;
  for (RankId r = 0; r < num_ranks; ++r) group.emplace_back(new LocalTransport(hub, r));
  return group;
}

int32_t LocalTransport::size() const { return hub_->num_ranks; }

Status LocalTransport::barrier(Timeout timeout) {
  std::lock_guard<std::mutex> collective(collective_mu_);
  return run_round(*hub_, *this, next_round_++, {RoundKind::kBarrier, 0, 0}, {}, ok_status(), timeout).status();
}

template <typename T>
Status LocalTransport::all_reduce_impl(std::span<T> data, ReduceOp op, Timeout timeout) {
  std::lock_guard<std::mutex> collective(collective_mu_);
  constexpr RoundKind kKind = std::is_same_v<T, int64_t> ? RoundKind::kAllReduceInt64 : RoundKind::kAllReduceDouble;
  const RoundSignature signature{kKind, data.size_bytes(), static_cast<int32_t>(op)};
  OMNI_ASSIGN_OR_RETURN(std::shared_ptr<Round> round,
                        run_round(*hub_, *this, next_round_++, signature, std::as_bytes(data), ok_status(), timeout));
  // Rank order, starting from the lowest live rank: the same on every rank.
  bool first = true;
  bool saturated = false;
  for (size_t r = 0; r < round->contributions.size(); ++r) {
    if (!round->expected[r]) continue;
    const auto* in = reinterpret_cast<const T*>(round->contributions[r].data());
    if (first) {
      std::copy(in, in + data.size(), data.begin());
      first = false;
      if constexpr (std::is_same_v<T, int64_t>) saturated = transport_internal::any_saturated(data);
      continue;
    }
    if constexpr (std::is_same_v<T, int64_t>) {
      saturated |= transport_internal::reduce_into(data, std::span<const T>(in, data.size()), op);
    } else {
      transport_internal::reduce_into(data, std::span<const T>(in, data.size()), op);
    }
  }
  if (saturated && op == ReduceOp::kSum) {
    return out_of_range_error(str_cat(where(*this), ": all_reduce(int64, sum) of ", data.size(),
                                      " elements overflowed int64; overflowed elements are saturated"));
  }
  return ok_status();
}

Status LocalTransport::all_reduce(std::span<int64_t> data, ReduceOp op, Timeout timeout) {
  return all_reduce_impl(data, op, timeout);
}
Status LocalTransport::all_reduce(std::span<double> data, ReduceOp op, Timeout timeout) {
  return all_reduce_impl(data, op, timeout);
}

Status LocalTransport::all_gather(std::span<const std::byte> send, std::span<std::byte> recv, Timeout timeout) {
  std::lock_guard<std::mutex> collective(collective_mu_);
  const size_t n = send.size();
  Status poison;
  if (recv.size() != n * static_cast<size_t>(size())) {
    poison = invalid_argument_error(str_cat(where(*this), ": all_gather recv has ", recv.size(),
                                            " bytes; it must have size() * send.size() = ", size(), " * ", n));
  }
  OMNI_ASSIGN_OR_RETURN(std::shared_ptr<Round> round,
                        run_round(*hub_, *this, next_round_++, {RoundKind::kAllGather, n, 0}, send, poison, timeout));
  for (size_t r = 0; r < round->contributions.size(); ++r) {
    std::byte* out = recv.data() + r * n;
    if (round->expected[r]) {
      if (n > 0) std::memcpy(out, round->contributions[r].data(), n);
    } else if (n > 0) {
      std::memset(out, 0, n);
    }
  }
  return ok_status();
}

Status LocalTransport::broadcast(std::span<std::byte> data, RankId root, Timeout timeout) {
  std::lock_guard<std::mutex> collective(collective_mu_);
  const uint64_t number = next_round_++;
  Status poison = transport_internal::check_peer(*this, root, "broadcast root", /*allow_self=*/true);
  if (poison.code() == StatusCode::kUnavailable) return poison;  // every survivor sees the same failed root
  const std::span<const std::byte> contribution = rank_ == root ? std::span<const std::byte>(data) : std::span<const std::byte>();
  OMNI_ASSIGN_OR_RETURN(std::shared_ptr<Round> round,
                        run_round(*hub_, *this, number, {RoundKind::kBroadcast, data.size(), root}, contribution,
                                  poison, timeout));
  if (rank_ != root && !data.empty()) {
    std::memcpy(data.data(), round->contributions[static_cast<size_t>(root)].data(), data.size());
  }
  return ok_status();
}

StatusOr<std::unique_ptr<Transport>> LocalTransport::duplicate(Timeout timeout) {
  std::lock_guard<std::mutex> collective(collective_mu_);
  const uint64_t number = next_round_++;
  OMNI_ASSIGN_OR_RETURN(std::shared_ptr<Round> round,
                        run_round(*hub_, *this, number, {RoundKind::kDuplicate, 0, 0}, {}, ok_status(), timeout));
  std::shared_ptr<LocalHub> hub = round->duplicated;
  {
    std::lock_guard<std::mutex> lock(hub->mu);
    std::lock_guard<std::mutex> old_lock(hub_->mu);
    hub->failed[static_cast<size_t>(rank_)] = hub_->failed[static_cast<size_t>(rank_)];
  }
  return std::unique_ptr<Transport>(new LocalTransport(std::move(hub), rank_));
}

Status LocalTransport::send(RankId dst, int32_t tag, std::span<const std::byte> data, Timeout timeout) {
  OMNI_RETURN_IF_ERROR(transport_internal::check_peer(*this, dst, "send to", /*allow_self=*/false));
  OMNI_RETURN_IF_ERROR(transport_internal::check_tag(*this, tag));
  const Deadline deadline(timeout);
  PendingSend pending;
  pending.data = data.data();
  pending.size = data.size();
  std::unique_lock<std::mutex> lock(hub_->mu);
  OMNI_RETURN_IF_ERROR(hub_->fence_status(rank_));
  auto& queue = hub_->queues[{rank_, dst, tag}];
  queue.push_back(&pending);
  hub_->cv.notify_all();
  const auto settled = [&] {
    return pending.state == PendingSend::State::kDone || pending.state == PendingSend::State::kRejected;
  };
  hub_->cv.wait_until(lock, deadline.at(),
                      [&] { return settled() || hub_->is_failed(rank_, dst) || hub_->is_fenced(rank_); });
  if (pending.state == PendingSend::State::kQueued) {
    // Nobody took it: withdraw it so that no receiver can touch our buffer later.
    auto& q = hub_->queues[{rank_, dst, tag}];
    q.erase(std::find(q.begin(), q.end(), &pending));
    if (hub_->is_fenced(rank_)) return hub_->fence_status(rank_);
    if (hub_->is_failed(rank_, dst)) {
      return unavailable_error(str_cat(where(*this), ": send to rank ", dst, " (tag ", tag, ", ", data.size(),
                                       " bytes): the rank was marked failed while the message waited"));
    }
    return deadline_exceeded_error(str_cat(where(*this), ": send to rank ", dst, " (tag ", tag, ", ", data.size(),
                                           " bytes) timed out after ", transport_internal::timeout_ms(timeout),
                                           " ms: no matching recv"));
  }
  // Claimed: the receiver is copying from our buffer right now; that ends in
  // bounded time whatever the deadline says, and we must not return before.
  hub_->cv.wait(lock, settled);
  if (pending.state == PendingSend::State::kRejected) {
    return invalid_argument_error(str_cat(where(*this), ": send to rank ", dst, " (tag ", tag, ") of ", data.size(),
                                          " bytes was rejected: the receiver expected ", pending.receiver_expected,
                                          " bytes"));
  }
  return ok_status();
}

Status LocalTransport::receive_into(RankId src, int32_t tag, std::span<std::byte> fixed,
                                    std::vector<std::byte>* grown, Timeout timeout) {
  OMNI_RETURN_IF_ERROR(transport_internal::check_peer(*this, src, "recv from", /*allow_self=*/false));
  OMNI_RETURN_IF_ERROR(transport_internal::check_tag(*this, tag));
  const Deadline deadline(timeout);
  std::unique_lock<std::mutex> lock(hub_->mu);
  OMNI_RETURN_IF_ERROR(hub_->fence_status(rank_));
  auto& queue = hub_->queues[{src, rank_, tag}];
  const bool arrived = hub_->cv.wait_until(lock, deadline.at(), [&] {
    return !queue.empty() || hub_->is_failed(rank_, src) || hub_->is_fenced(rank_);
  });
  if (hub_->is_fenced(rank_)) return hub_->fence_status(rank_);
  if (hub_->is_failed(rank_, src)) {
    return unavailable_error(str_cat(where(*this), ": recv from rank ", src, " (tag ", tag,
                                     "): the rank was marked failed"));
  }
  if (!arrived) {
    return deadline_exceeded_error(str_cat(where(*this), ": recv from rank ", src, " (tag ", tag, ") timed out after ",
                                           transport_internal::timeout_ms(timeout), " ms: no message"));
  }
  PendingSend* pending = queue.front();
  queue.pop_front();
  std::span<std::byte> out = fixed;
  if (grown != nullptr) {
    grown->resize(pending->size);
    out = *grown;
  } else if (pending->size != fixed.size()) {
    pending->state = PendingSend::State::kRejected;
    pending->receiver_expected = fixed.size();
    hub_->cv.notify_all();
    return invalid_argument_error(str_cat(where(*this), ": recv from rank ", src, " (tag ", tag, ") expected ",
                                          fixed.size(), " bytes, the message has ", pending->size,
                                          " bytes (message discarded)"));
  }
  pending->state = PendingSend::State::kClaimed;
  lock.unlock();
  // The one copy of the transfer, straight from the sender's buffer.
  if (pending->size > 0) std::memcpy(out.data(), pending->data, pending->size);
  lock.lock();
  pending->state = PendingSend::State::kDone;
  hub_->cv.notify_all();
  return ok_status();
}

Status LocalTransport::recv(RankId src, int32_t tag, std::span<std::byte> data, Timeout timeout) {
  return receive_into(src, tag, data, nullptr, timeout);
}

StatusOr<std::vector<std::byte>> LocalTransport::recv_message(RankId src, int32_t tag, Timeout timeout) {
  std::vector<std::byte> message;
  OMNI_RETURN_IF_ERROR(receive_into(src, tag, {}, &message, timeout));
  return message;
}

Status LocalTransport::mark_failed(RankId r) {
  if (r < 0 || r >= size()) {
    return invalid_argument_error(
        str_cat(where(*this), ": mark_failed rank ", r, " is out of range; valid ranks are 0..", size() - 1));
  }
  if (r == rank_) return invalid_argument_error(str_cat(where(*this), ": mark_failed of this rank itself"));
  std::lock_guard<std::mutex> lock(hub_->mu);
  hub_->failed[static_cast<size_t>(rank_)][static_cast<size_t>(r)] = 1;
  if (!hub_->is_fenced(r) && !hub_->is_fenced(rank_)) hub_->fenced_by[static_cast<size_t>(r)] = rank_;
  // A round still waiting for r can never complete: fail it for every
  // participant at once, so that all survivors see the same outcome.
  for (auto& [number, round] : hub_->rounds) {
    if (round->error.ok() && !round->complete() && round->expected[static_cast<size_t>(r)] &&
        !round->arrived[static_cast<size_t>(r)]) {
      round->error = unavailable_error(str_cat(where(*this), ": collective #", number, " (",
                                               transport_internal::describe(round->signature), ") was waiting for rank ",
                                               r, ", which rank ", rank_, " marked failed; retry among the survivors"));
    }
  }
  hub_->cv.notify_all();
  return ok_status();
}

void LocalTransport::fence_self(std::string_view why) {
  std::lock_guard<std::mutex> lock(hub_->mu);
  if (hub_->is_fenced(rank_)) return;
  hub_->fenced_by[static_cast<size_t>(rank_)] = rank_;
  hub_->self_fence_reason[static_cast<size_t>(rank_)] = std::string(why);
  hub_->cv.notify_all();
}

Status LocalTransport::fence_status() const {
  std::lock_guard<std::mutex> lock(hub_->mu);
  return hub_->fence_status(rank_);
}

std::vector<RankId> LocalTransport::failed_ranks() const {
  std::lock_guard<std::mutex> lock(hub_->mu);
  std::vector<RankId> out;
  for (RankId r = 0; r < size(); ++r) {
    if (hub_->is_failed(rank_, r)) out.push_back(r);
  }
  return out;
}

// --- LocalGroup -----------------------------------------------------------

StatusOr<LocalGroup> LocalGroup::create(int32_t num_ranks) {
  OMNI_ASSIGN_OR_RETURN(auto transports, LocalTransport::create_group(num_ranks));
  LocalGroup group;
  group.transports_ = std::move(transports);
  return group;
}

Transport& LocalGroup::transport(RankId r) {
  OMNI_CHECK_MSG(r >= 0 && r < size(), str_cat("LocalGroup::transport(", r, ") with ", size(), " ranks"));
  return *transports_[static_cast<size_t>(r)];
}

std::vector<Status> LocalGroup::run(const std::function<Status(Transport&)>& fn) {
  std::vector<Status> statuses(transports_.size());
  std::vector<std::thread> threads;
  threads.reserve(transports_.size());
  for (size_t r = 0; r < transports_.size(); ++r) {
    threads.emplace_back([&, r] {
      try {
        statuses[r] = fn(*transports_[r]);
      } catch (const std::exception& e) {
        statuses[r] = internal_error(str_cat("LocalGroup: rank ", r, " threw: ", e.what()));
      } catch (...) {
        statuses[r] = internal_error(str_cat("LocalGroup: rank ", r, " threw a non-standard exception"));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return statuses;
}

std::vector<Status> LocalGroup::run(int32_t num_ranks, const std::function<Status(Transport&)>& fn) {
  StatusOr<LocalGroup> group = create(num_ranks);
  if (!group.ok()) return {group.status()};
  return group->run(fn);
}

}  // namespace omni
