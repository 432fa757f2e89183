#include "omniplacement/transport/mpi_transport.h"

#include "omniplacement/core/str_cat.h"
#include "deadline.h"
#include "transport_util.h"

#if OMNI_HAVE_MPI

#include <mpi.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstring>
#include <thread>

namespace omni {

using transport_internal::Deadline;
using transport_internal::timeout_ms;
using transport_internal::where;

namespace {

// --- Process-wide MPI state --------------------------------------------------

std::mutex g_init_mu;
bool g_we_initialised = false;  // guarded by g_init_mu
MPI_Op g_saturating_sum = MPI_OP_NULL;
int g_tag_ub = 0;

// MPI user operation: int64 sums that saturate stickily, as LocalTransport's.
void saturating_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto n = static_cast<size_t>(*len);
  transport_internal::reduce_into(std::span<int64_t>(static_cast<int64_t*>(inout), n),
                                  std::span<const int64_t>(static_cast<const int64_t*>(in), n), ReduceOp::kSum);
}

Status mpi_status(int rc, const char* call, const std::string& who) {
  if (rc == MPI_SUCCESS) return ok_status();
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  return internal_error(str_cat(who, ": ", call, " failed: ", std::string(text, static_cast<size_t>(length))));
}

#define OMNI_MPI_CALL(who, call) OMNI_RETURN_IF_ERROR(mpi_status((call), #call, (who)))

// Requests that outlived the call that started them (a collective abandoned at
// its deadline, an eager control message not yet known to be sent), with the
// memory they use. Reaped by later calls and by finalize().
struct Parked {
  std::vector<MPI_Request> requests;
  std::vector<std::shared_ptr<void>> keep_alive;
};
std::mutex g_parked_mu;
std::vector<Parked>* g_parked = new std::vector<Parked>();  // leaked on purpose: may outlive static destruction

void park(std::vector<MPI_Request> requests, std::vector<std::shared_ptr<void>> keep_alive) {
  std::lock_guard<std::mutex> lock(g_parked_mu);
  g_parked->push_back({std::move(requests), std::move(keep_alive)});
}

// A communicator freed when the last user lets go: the transport, and every
// parked request on it. Open MPI 4.1 crashes when it progresses a pending
// non-blocking collective whose communicator was freed, so a communicator
// with an abandoned collective must live until that collective ends.
struct Comm {
  MPI_Comm comm = MPI_COMM_NULL;
  Comm() = default;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  ~Comm() {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (comm != MPI_COMM_NULL && !finalised) MPI_Comm_free(&comm);
  }
};
using CommPtr = std::shared_ptr<Comm>;

// Frees the parked entries whose requests have completed.
void reap_parked() {
  std::lock_guard<std::mutex> lock(g_parked_mu);
  std::erase_if(*g_parked, [](Parked& p) {
    int done = 0;
    MPI_Testall(static_cast<int>(p.requests.size()), p.requests.data(), &done, MPI_STATUSES_IGNORE);
    return done != 0;
  });
}

// Polling with back-off: yields first (oversubscribed ranks need the core to
// make progress), then sleeps a little, so that an idle wait costs no core.
void back_off(int64_t spins) {
  if (spins < 2000) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(spins < 20000 ? 20 : 200));
  }
}

enum class Wait { kDone, kExpired, kFailed, kError };

// Calls step() until it reports done, the deadline passes or stop() is true.
// step returns an MPI return code and sets *done.
template <typename Step, typename Stop>
Wait poll(Deadline::Clock::time_point deadline, Step step, Stop stop, Status* error, const char* what,
          const std::string& who) {
  for (int64_t spins = 0;; ++spins) {
    int done = 0;
    const int rc = step(&done);
    if (rc != MPI_SUCCESS) {
      *error = mpi_status(rc, what, who);
      return Wait::kError;
    }
    if (done) return Wait::kDone;
    if (stop()) return Wait::kFailed;
    if (Deadline::Clock::now() >= deadline) return Wait::kExpired;
    back_off(spins);
  }
}

// Cancels an unmatched receive. Returns true if it was cancelled, false if
// it had matched a message meanwhile (which then has been received).
bool cancel_receive(MPI_Request* request) {
  if (*request == MPI_REQUEST_NULL) return false;
  MPI_Cancel(request);
  MPI_Status status;
  MPI_Wait(request, &status);
  int cancelled = 0;
  MPI_Test_cancelled(&status, &cancelled);
  return cancelled != 0;
}

// Point-to-point rendezvous messages (see mpi_transport.h).
struct Header {
  uint64_t seq = 0;
  uint64_t size = 0;
  int64_t sender_remaining_ns = 0;  // how long the sender waits for the clear-to-send
};
struct Control {
  enum Kind : int64_t { kAccept = 1, kReject = 2, kWithdraw = 3 };
  uint64_t seq = 0;
  int64_t kind = 0;
  uint64_t size = 0;  // kReject: the size the receiver expected
};

constexpr size_t kChunkBytes = size_t{16} << 20;
constexpr auto kCommittedGrace = std::chrono::seconds(5);

// Starts one request per kChunkBytes of a message of `bytes` (at least one,
// so that a 0-byte message is still a message): post(offset, count, request).
template <typename Post>
Status post_chunks(size_t bytes, const std::string& what, std::vector<MPI_Request>& requests, Post post) {
  for (size_t offset = 0; offset < bytes || requests.empty(); offset += kChunkBytes) {
    const size_t n = std::min(kChunkBytes, bytes - offset);
    requests.push_back(MPI_REQUEST_NULL);
    OMNI_RETURN_IF_ERROR(mpi_status(post(offset, static_cast<int>(n), &requests.back()), "posting a chunk", what));
  }
  return ok_status();
}

// Owned bytes that must stay alive while MPI may touch them.
template <typename T>
std::shared_ptr<T> owned(T value) {
  return std::make_shared<T>(std::move(value));
}

}  // namespace

// --- Impl ------------------------------------------------------------------------

struct MpiTransport::Impl {
  RankId rank = 0;
  int32_t size = 0;
  std::string who;  // "rank 2 (mpi)"
  // Group rank r is rank comm_rank[r] of every communicator below (-1: r was
  // failed when this transport was made and has no place in them).
  std::vector<int> comm_rank;
  CommPtr base;   // for MPI_Comm_create_group
  CommPtr hdr;    // message headers, tag = user tag
  // From a receiver to a sender: clear-to-send or rejection. From a sender to
  // a receiver: withdrawal. Two communicators, because the replies of the
  // messages A sends to B and the withdrawals of those B sends to A both go
  // from B to A with a sequence number as tag, and could match each other.
  CommPtr ctl;       // tag = message sequence of the sender
  CommPtr withdraw;  // tag = message sequence of the sender
  CommPtr data;   // message chunks, tag = message sequence
  CommPtr agree;  // failed-set agreement, tag = rebuild epoch
  // Collectives (touched by the collective thread only, under collective_mu_).
  CommPtr coll;   // survivors' communicator
  std::vector<RankId> coll_members;  // group ranks in coll's rank order
  std::vector<char> coll_failed;     // the failed set coll was built for
  int rebuild_epoch = 0;
  // Failures (any thread).
  mutable std::mutex failed_mu;
  std::vector<char> failed;  // guarded by failed_mu
  std::atomic<uint64_t> failure_generation{0};
  std::unique_ptr<std::atomic<uint64_t>[]> next_seq;  // per destination

  bool is_failed(RankId r) const {
    std::lock_guard<std::mutex> lock(failed_mu);
    return failed[static_cast<size_t>(r)] != 0;
  }
  std::vector<char> failed_snapshot() const {
    std::lock_guard<std::mutex> lock(failed_mu);
    return failed;
  }
  int seq_tag(uint64_t seq) const { return static_cast<int>(seq % (static_cast<uint64_t>(g_tag_ub) + 1)); }
};

namespace {

// Seven duplicates of parent (whose rank i is group rank members[i]).
StatusOr<std::unique_ptr<MpiTransport::Impl>> make_impl(MPI_Comm parent, RankId rank,
                                                        const std::vector<RankId>& members,
                                                        std::vector<char> failed, const Deadline& deadline) {
  auto impl = std::make_unique<MpiTransport::Impl>();
  impl->rank = rank;
  impl->size = static_cast<int32_t>(failed.size());
  impl->who = str_cat("rank ", rank, " (mpi)");
  impl->comm_rank.assign(failed.size(), -1);
  for (size_t i = 0; i < members.size(); ++i) impl->comm_rank[static_cast<size_t>(members[i])] = static_cast<int>(i);
  impl->coll_members = members;
  impl->coll_failed = failed;
  impl->failed = std::move(failed);
  impl->next_seq = std::make_unique<std::atomic<uint64_t>[]>(static_cast<size_t>(impl->size));
  // The new handles are written when the duplication completes, possibly
  // after a timeout: they live in shared memory parked with the requests.
  std::array<CommPtr, 7> comms;
  std::vector<std::shared_ptr<void>> keep_alive;
  std::vector<MPI_Request> requests(comms.size(), MPI_REQUEST_NULL);
  for (size_t i = 0; i < comms.size(); ++i) {
    comms[i] = std::make_shared<Comm>();
    keep_alive.push_back(comms[i]);
    OMNI_MPI_CALL(impl->who, MPI_Comm_idup(parent, &comms[i]->comm, &requests[i]));
  }
  Status error;
  const Wait w = poll(
      deadline.at(),
      [&](int* done) {
        return MPI_Testall(static_cast<int>(requests.size()), requests.data(), done, MPI_STATUSES_IGNORE);
      },
      [] { return false; }, &error, "MPI_Comm_idup", impl->who);
  if (w == Wait::kError) return error;
  if (w != Wait::kDone) {
    park(std::move(requests), std::move(keep_alive));
    return deadline_exceeded_error(str_cat(impl->who, ": creating the transport's communicators timed out: "
                                                      "not every rank of the group called it"));
  }
  for (const CommPtr& c : comms) OMNI_MPI_CALL(impl->who, MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN));
  impl->base = comms[0];
  impl->hdr = comms[1];
  impl->ctl = comms[2];
  impl->data = comms[3];
  impl->agree = comms[4];
  impl->coll = comms[5];
  impl->withdraw = comms[6];
  return impl;
}

// Makes impl.coll the communicator of the current survivors: every survivor
// sends its failed set to every other one, all must agree, then the
// survivors (and only they) build the communicator.
Status ensure_survivor_comm(MpiTransport::Impl& impl, const Deadline& deadline) {
  const std::vector<char> failed = impl.failed_snapshot();
  if (failed == impl.coll_failed) return ok_status();
  std::vector<RankId> live;
  for (RankId r = 0; r < impl.size; ++r) {
    if (!failed[static_cast<size_t>(r)]) live.push_back(r);
  }
  for (RankId r : live) {
    if (impl.comm_rank[static_cast<size_t>(r)] < 0) {
      return failed_precondition_error(str_cat(impl.who, ": rank ", r,
                                               " is live here but was failed when this transport was made"));
    }
  }
  const auto n = static_cast<int>(failed.size());
  auto mine = owned(failed);
  auto theirs = owned(std::vector<std::vector<char>>(live.size(), std::vector<char>(failed.size())));
  std::vector<MPI_Request> sends, recvs;
  for (size_t i = 0; i < live.size(); ++i) {
    if (live[i] == impl.rank) continue;
    const int peer = impl.comm_rank[static_cast<size_t>(live[i])];
    sends.push_back(MPI_REQUEST_NULL);
    OMNI_MPI_CALL(impl.who, MPI_Isend(mine->data(), n, MPI_CHAR, peer, impl.rebuild_epoch, impl.agree->comm, &sends.back()));
    recvs.push_back(MPI_REQUEST_NULL);
    OMNI_MPI_CALL(impl.who,
                  MPI_Irecv((*theirs)[i].data(), n, MPI_CHAR, peer, impl.rebuild_epoch, impl.agree->comm, &recvs.back()));
  }
  park(std::move(sends), {mine, impl.agree});
  Status error;
  const Wait w = poll(
      deadline.at(),
      [&](int* done) { return MPI_Testall(static_cast<int>(recvs.size()), recvs.data(), done, MPI_STATUSES_IGNORE); },
      [] { return false; }, &error, "MPI_Testall(failed-set agreement)", impl.who);
  if (w == Wait::kError) return error;
  if (w != Wait::kDone) {
    std::string missing;
    for (size_t i = 0, k = 0; i < live.size(); ++i) {
      if (live[i] == impl.rank) continue;
      if (!cancel_receive(&recvs[k++])) continue;
      missing += str_cat(missing.empty() ? "" : ", ", live[i]);
    }
    if (!missing.empty()) {
      return deadline_exceeded_error(str_cat(impl.who, ": survivors did not all confirm the failed set within ",
                                             timeout_ms(deadline.remaining()), " ms; no answer from ranks ", missing,
                                             " (every survivor must mark the same ranks failed)"));
    }
  }
  const auto describe = [](const std::vector<char>& f) {
    std::string s = "{";
    for (size_t r = 0; r < f.size(); ++r) {
      if (f[r]) s += str_cat(s.size() > 1 ? ", " : "", r);
    }
    return s + "}";
  };
  for (size_t i = 0; i < live.size(); ++i) {
    if (live[i] == impl.rank || (*theirs)[i] == failed) continue;
    return failed_precondition_error(str_cat(impl.who, ": survivors disagree on the failed set: rank ", live[i],
                                             " has ", describe((*theirs)[i]), ", this rank has ", describe(failed),
                                             "; mark the same ranks failed everywhere"));
  }
  // Everyone agreed, so every survivor is about to make this same call.
  MPI_Group base_group = MPI_GROUP_NULL, survivors = MPI_GROUP_NULL;
  std::vector<int> ranks;
  for (RankId r : live) ranks.push_back(impl.comm_rank[static_cast<size_t>(r)]);
  OMNI_MPI_CALL(impl.who, MPI_Comm_group(impl.base->comm, &base_group));
  OMNI_MPI_CALL(impl.who, MPI_Group_incl(base_group, static_cast<int>(ranks.size()), ranks.data(), &survivors));
  auto comm = std::make_shared<Comm>();
  const int rc = MPI_Comm_create_group(impl.base->comm, survivors, impl.rebuild_epoch, &comm->comm);
  MPI_Group_free(&survivors);
  MPI_Group_free(&base_group);
  OMNI_RETURN_IF_ERROR(mpi_status(rc, "MPI_Comm_create_group", impl.who));
  OMNI_MPI_CALL(impl.who, MPI_Comm_set_errhandler(comm->comm, MPI_ERRORS_RETURN));
  // The old communicator lives on while a collective abandoned on it is parked.
  impl.coll = std::move(comm);
  impl.coll_members = std::move(live);
  impl.coll_failed = failed;
  ++impl.rebuild_epoch;
  return ok_status();
}

// Runs one non-blocking collective on the survivors' communicator and waits
// for it. keep_alive owns every buffer the collective uses.
template <typename Start>
Status run_collective(MpiTransport::Impl& impl, const char* what, Timeout timeout, Start start,
                      std::shared_ptr<void> keep_alive) {
  const Deadline deadline(timeout);
  reap_parked();
  OMNI_RETURN_IF_ERROR(ensure_survivor_comm(impl, deadline).with_context(what));
  MPI_Request request = MPI_REQUEST_NULL;
  OMNI_RETURN_IF_ERROR(mpi_status(start(impl.coll->comm, &request), what, impl.who));
  const uint64_t generation = impl.failure_generation.load();
  const auto member_failed = [&] {
    if (impl.failure_generation.load() == generation) return false;
    const std::vector<char> failed = impl.failed_snapshot();
    return std::any_of(impl.coll_members.begin(), impl.coll_members.end(),
                       [&](RankId r) { return failed[static_cast<size_t>(r)] != 0; });
  };
  Status error;
  const Wait w = poll(
      deadline.at(), [&](int* done) { return MPI_Test(&request, done, MPI_STATUS_IGNORE); }, member_failed, &error,
      what, impl.who);
  if (w == Wait::kDone) return ok_status();
  if (w == Wait::kError) return error;
  // Still pending inside MPI: it keeps our copies, never the caller's memory.
  park({request}, {std::move(keep_alive), impl.coll});
  if (w == Wait::kFailed) {
    return unavailable_error(str_cat(impl.who, ": ", what, " was waiting for a rank that was marked failed; "
                                     "retry among the survivors"));
  }
  return deadline_exceeded_error(
      str_cat(impl.who, ": ", what, " timed out after ", timeout_ms(timeout), " ms: not every survivor joined it"));
}

Status check_count(const MpiTransport::Impl& impl, const char* what, size_t count) {
  if (count > static_cast<size_t>(INT_MAX)) {
    return invalid_argument_error(str_cat(impl.who, ": ", what, " of ", count,
                                          " elements exceeds MPI's int count limit ", INT_MAX, "; split it"));
  }
  return ok_status();
}

}  // namespace

// --- Process setup -------------------------------------------------------------

bool MpiTransport::available() { return true; }

Status MpiTransport::init(int* argc, char*** argv) {
  std::lock_guard<std::mutex> lock(g_init_mu);
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (finalised) return failed_precondition_error("MpiTransport::init: MPI was already finalized");
  int provided = 0;
  if (!initialised) {
    const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
    OMNI_RETURN_IF_ERROR(mpi_status(rc, "MPI_Init_thread", "MpiTransport::init"));
    g_we_initialised = true;
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_MULTIPLE) {
    return failed_precondition_error(str_cat("MpiTransport::init: the MPI library provides thread level ", provided,
                                             ", MPI_THREAD_MULTIPLE (", MPI_THREAD_MULTIPLE,
                                             ") is required (a planner thread and the engine thread both use it)"));
  }
  if (g_saturating_sum == MPI_OP_NULL) {
    OMNI_MPI_CALL("MpiTransport::init", MPI_Op_create(&saturating_sum, /*commute=*/1, &g_saturating_sum));
    int* tag_ub = nullptr;
    int found = 0;
    OMNI_MPI_CALL("MpiTransport::init", MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &tag_ub, &found));
    g_tag_ub = found ? *tag_ub : 32767;
    if (g_tag_ub < kMaxTag) {
      return failed_precondition_error(str_cat("MpiTransport::init: MPI_TAG_UB is ", g_tag_ub, ", below kMaxTag ",
                                               kMaxTag));
    }
  }
  return ok_status();
}

Status MpiTransport::finalize() {
  std::lock_guard<std::mutex> lock(g_init_mu);
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (!g_we_initialised || finalised) return ok_status();
  // Give abandoned requests a moment to finish (a late rank joining them).
  const Deadline grace(std::chrono::milliseconds(200));
  while (!grace.expired()) {
    reap_parked();
    std::lock_guard<std::mutex> parked(g_parked_mu);
    if (g_parked->empty()) break;
  }
  if (g_saturating_sum != MPI_OP_NULL) MPI_Op_free(&g_saturating_sum);
  return mpi_status(MPI_Finalize(), "MPI_Finalize", "MpiTransport::finalize");
}

StatusOr<std::unique_ptr<MpiTransport>> MpiTransport::create_world(Timeout timeout) {
  const Deadline deadline(timeout);
  OMNI_RETURN_IF_ERROR(init(nullptr, nullptr));
  int rank = 0, size = 0;
  OMNI_MPI_CALL("MpiTransport::create_world", MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  OMNI_MPI_CALL("MpiTransport::create_world", MPI_Comm_size(MPI_COMM_WORLD, &size));
  if (size > kMaxRanks) {
    return invalid_argument_error(str_cat("MpiTransport::create_world: ", size, " processes, at most ", kMaxRanks));
  }
  std::vector<RankId> members(static_cast<size_t>(size));
  for (int i = 0; i < size; ++i) members[static_cast<size_t>(i)] = i;
  OMNI_ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl, make_impl(MPI_COMM_WORLD, rank, members,
                                                              std::vector<char>(static_cast<size_t>(size), 0),
                                                              deadline));
  return std::unique_ptr<MpiTransport>(new MpiTransport(std::move(impl)));
}

MpiTransport::MpiTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MpiTransport::~MpiTransport() { reap_parked(); }

RankId MpiTransport::rank() const { return impl_->rank; }
int32_t MpiTransport::size() const { return impl_->size; }

// --- Collectives ---------------------------------------------------------------

Status MpiTransport::barrier(Timeout timeout) {
  std::lock_guard<std::mutex> collective(collective_mu_);
  return run_collective(
      *impl_, "barrier", timeout, [](MPI_Comm comm, MPI_Request* r) { return MPI_Ibarrier(comm, r); }, nullptr);
}

namespace {

template <typename T>
Status mpi_all_reduce(MpiTransport::Impl& impl, std::span<T> data, ReduceOp op, Timeout timeout) {
  constexpr bool kInt = std::is_same_v<T, int64_t>;
  const char* what = kInt ? "all_reduce(int64)" : "all_reduce(double)";
  OMNI_RETURN_IF_ERROR(check_count(impl, what, data.size()));
  auto buffer = owned(std::vector<T>(data.begin(), data.end()));
  MPI_Op mpi_op = op == ReduceOp::kMax ? MPI_MAX : op == ReduceOp::kMin ? MPI_MIN : (kInt ? g_saturating_sum : MPI_SUM);
  const MPI_Datatype type = kInt ? MPI_INT64_T : MPI_DOUBLE;
  const auto count = static_cast<int>(data.size());
  OMNI_RETURN_IF_ERROR(run_collective(
      impl, what, timeout,
      [&](MPI_Comm comm, MPI_Request* r) {
        return MPI_Iallreduce(MPI_IN_PLACE, buffer->data(), count, type, mpi_op, comm, r);
      },
      buffer));
  std::copy(buffer->begin(), buffer->end(), data.begin());
  if constexpr (kInt) {
    if (op == ReduceOp::kSum && transport_internal::any_saturated(data)) {
      return out_of_range_error(str_cat(impl.who, ": all_reduce(int64, sum) of ", data.size(),
                                        " elements overflowed int64; overflowed elements are saturated"));
    }
  }
  return ok_status();
}

}  // namespace

Status MpiTransport::all_reduce(std::span<int64_t> data, ReduceOp op, Timeout timeout) {
  std::lock_guard<std::mutex> collective(collective_mu_);
  return mpi_all_reduce(*impl_, data, op, timeout);
}

Status MpiTransport::all_reduce(std::span<double> data, ReduceOp op, Timeout timeout) {
  std::lock_guard<std::mutex> collective(collective_mu_);
  return mpi_all_reduce(*impl_, data, op, timeout);
}

Status MpiTransport::all_gather(std::span<const std::byte> send, std::span<std::byte> recv, Timeout timeout) {
  std::lock_guard<std::mutex> collective(collective_mu_);
  const size_t n = send.size();
  if (recv.size() != n * static_cast<size_t>(size())) {
    return invalid_argument_error(str_cat(impl_->who, ": all_gather recv has ", recv.size(),
                                          " bytes; it must have size() * send.size() = ", size(), " * ", n));
  }
  OMNI_RETURN_IF_ERROR(check_count(*impl_, "all_gather", n));
  struct Buffers {
    std::vector<std::byte> send, recv;
  };
  auto buffers = std::make_shared<Buffers>();
  buffers->send.assign(send.begin(), send.end());
  // Sized when the communicator is known: run_collective builds it first.
  const auto count = static_cast<int>(n);
  Impl& impl = *impl_;
  OMNI_RETURN_IF_ERROR(run_collective(
      impl, "all_gather", timeout,
      [&](MPI_Comm comm, MPI_Request* r) {
        buffers->recv.resize(n * impl.coll_members.size());
        return MPI_Iallgather(buffers->send.data(), count, MPI_BYTE, buffers->recv.data(), count, MPI_BYTE, comm, r);
      },
      buffers));
  if (n == 0) return ok_status();
  std::fill(recv.begin(), recv.end(), std::byte{0});
  for (size_t i = 0; i < impl.coll_members.size(); ++i) {
    std::memcpy(recv.data() + static_cast<size_t>(impl.coll_members[i]) * n, buffers->recv.data() + i * n, n);
  }
  return ok_status();
}

Status MpiTransport::broadcast(std::span<std::byte> data, RankId root, Timeout timeout) {
  std::lock_guard<std::mutex> collective(collective_mu_);
  OMNI_RETURN_IF_ERROR(transport_internal::check_peer(*this, root, "broadcast root", /*allow_self=*/true));
  OMNI_RETURN_IF_ERROR(check_count(*impl_, "broadcast", data.size()));
  auto buffer = owned(std::vector<std::byte>(data.begin(), data.end()));
  Impl& impl = *impl_;
  OMNI_RETURN_IF_ERROR(run_collective(
      impl, "broadcast", timeout,
      [&](MPI_Comm comm, MPI_Request* r) {
        const auto it = std::find(impl.coll_members.begin(), impl.coll_members.end(), root);
        const int root_index = static_cast<int>(it - impl.coll_members.begin());
        return MPI_Ibcast(buffer->data(), static_cast<int>(buffer->size()), MPI_BYTE, root_index, comm, r);
      },
      buffer));
  if (rank() != root && !data.empty()) std::memcpy(data.data(), buffer->data(), data.size());
  return ok_status();
}

StatusOr<std::unique_ptr<Transport>> MpiTransport::duplicate(Timeout timeout) {
  std::lock_guard<std::mutex> collective(collective_mu_);
  const Deadline deadline(timeout);
  reap_parked();
  OMNI_RETURN_IF_ERROR(ensure_survivor_comm(*impl_, deadline).with_context("duplicate"));
  OMNI_ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl,
                        make_impl(impl_->coll->comm, impl_->rank, impl_->coll_members, impl_->coll_failed, deadline));
  return std::unique_ptr<Transport>(new MpiTransport(std::move(impl)));
}

// --- Point-to-point ------------------------------------------------------------

Status MpiTransport::send(RankId dst, int32_t tag, std::span<const std::byte> data, Timeout timeout) {
  OMNI_RETURN_IF_ERROR(transport_internal::check_peer(*this, dst, "send to", /*allow_self=*/false));
  OMNI_RETURN_IF_ERROR(transport_internal::check_tag(*this, tag));
  const Deadline deadline(timeout);
  Impl& impl = *impl_;
  reap_parked();
  const int peer = impl.comm_rank[static_cast<size_t>(dst)];
  const uint64_t seq = impl.next_seq[static_cast<size_t>(dst)].fetch_add(1);
  const int seq_tag = impl.seq_tag(seq);
  const std::string what = str_cat(impl.who, ": send to rank ", dst, " (tag ", tag, ", ", data.size(), " bytes)");
  // 1. Header. Small, so MPI sends it eagerly; parked until known sent.
  auto header = owned(Header{seq, data.size(), static_cast<int64_t>(deadline.remaining().count())});
  std::vector<MPI_Request> header_request(1, MPI_REQUEST_NULL);
  OMNI_MPI_CALL(what, MPI_Isend(header.get(), sizeof(Header), MPI_BYTE, peer, tag, impl.hdr->comm, header_request.data()));
  park(std::move(header_request), {header, impl.hdr});
  // 2. Wait for the receiver's clear-to-send (or rejection).
  Control reply;
  MPI_Request reply_request = MPI_REQUEST_NULL;
  OMNI_MPI_CALL(what, MPI_Irecv(&reply, sizeof(Control), MPI_BYTE, peer, seq_tag, impl.ctl->comm, &reply_request));
  Status error;
  const Wait w = poll(
      deadline.at(), [&](int* done) { return MPI_Test(&reply_request, done, MPI_STATUS_IGNORE); },
      [&] { return impl.is_failed(dst); }, &error, "MPI_Test(clear-to-send)", what);
  if (w == Wait::kError) return error;
  if (w != Wait::kDone && cancel_receive(&reply_request)) {
    // Nothing of the caller's buffer was handed to MPI. Withdraw the header
    // so that a receiver that matches it later skips to the next message.
    auto withdraw = owned(Control{seq, Control::kWithdraw, 0});
    std::vector<MPI_Request> withdraw_request(1, MPI_REQUEST_NULL);
    OMNI_MPI_CALL(what,
                  MPI_Isend(withdraw.get(), sizeof(Control), MPI_BYTE, peer, seq_tag, impl.withdraw->comm, withdraw_request.data()));
    park(std::move(withdraw_request), {withdraw, impl.withdraw});
    if (w == Wait::kFailed) return unavailable_error(what + ": the rank was marked failed while the message waited");
    return deadline_exceeded_error(str_cat(what, " timed out after ", timeout_ms(timeout), " ms: no matching recv"));
  }
  if (reply.kind == Control::kReject) {
    return invalid_argument_error(str_cat(what, " was rejected: the receiver expected ", reply.size, " bytes"));
  }
  // 3. Committed: the receiver has posted a receive for every chunk.
  std::vector<MPI_Request> chunks;
  OMNI_RETURN_IF_ERROR(post_chunks(data.size(), what, chunks, [&](size_t offset, int n, MPI_Request* r) {
    return MPI_Isend(data.data() + offset, n, MPI_BYTE, peer, seq_tag, impl.data->comm, r);
  }));
  const Wait sent = poll(
      std::max(deadline.at(), Deadline::Clock::now()) + kCommittedGrace,
      [&](int* done) { return MPI_Testall(static_cast<int>(chunks.size()), chunks.data(), done, MPI_STATUSES_IGNORE); },
      [] { return false; }, &error, "MPI_Testall(message chunks)", what);
  if (sent == Wait::kDone) return ok_status();
  if (sent == Wait::kError) return error;
  park(std::move(chunks), {impl.data});  // the caller's buffer stays lent: see mpi_transport.h, "Limits"
  return deadline_exceeded_error(str_cat(what, ": the receiver stopped progressing in the middle of the transfer; "
                                               "the buffer must outlive the transport"));
}

namespace {

Status mpi_receive(MpiTransport::Impl& impl, const Transport& self, RankId src, int32_t tag,
                   std::span<std::byte> fixed, std::vector<std::byte>* grown, Timeout timeout) {
  OMNI_RETURN_IF_ERROR(transport_internal::check_peer(self, src, "recv from", /*allow_self=*/false));
  OMNI_RETURN_IF_ERROR(transport_internal::check_tag(self, tag));
  const Deadline deadline(timeout);
  reap_parked();
  const int peer = impl.comm_rank[static_cast<size_t>(src)];
  const std::string what = str_cat(impl.who, ": recv from rank ", src, " (tag ", tag, ")");
  const auto peer_failed = [&] { return impl.is_failed(src); };
  Status error;
  for (;;) {
    // 1. The next header from src with this tag.
    Header header;
    MPI_Request header_request = MPI_REQUEST_NULL;
    OMNI_MPI_CALL(what, MPI_Irecv(&header, sizeof(Header), MPI_BYTE, peer, tag, impl.hdr->comm, &header_request));
    const Wait w = poll(
        deadline.at(), [&](int* done) { return MPI_Test(&header_request, done, MPI_STATUS_IGNORE); }, peer_failed,
        &error, "MPI_Test(header)", what);
    if (w == Wait::kError) return error;
    if (w != Wait::kDone && cancel_receive(&header_request)) {
      if (w == Wait::kFailed) return unavailable_error(what + ": the rank was marked failed");
      return deadline_exceeded_error(str_cat(what, " timed out after ", timeout_ms(timeout), " ms: no message"));
    }
    const auto decided_by = Deadline::Clock::now() + std::chrono::nanoseconds(std::max<int64_t>(0, header.sender_remaining_ns));
    const int seq_tag = impl.seq_tag(header.seq);
    if (grown == nullptr && header.size != fixed.size()) {
      auto reject = owned(Control{header.seq, Control::kReject, fixed.size()});
      std::vector<MPI_Request> reject_request(1, MPI_REQUEST_NULL);
      OMNI_MPI_CALL(what, MPI_Isend(reject.get(), sizeof(Control), MPI_BYTE, peer, seq_tag, impl.ctl->comm,
                                    reject_request.data()));
      park(std::move(reject_request), {reject, impl.ctl});
      return invalid_argument_error(str_cat(what, " expected ", fixed.size(), " bytes, the message has ", header.size,
                                            " bytes (message discarded)"));
    }
    std::span<std::byte> out = fixed;
    if (grown != nullptr) {
      grown->resize(header.size);
      out = *grown;
    }
    // 2. Post every chunk receive, and one for a withdrawal, then clear the sender to send.
    std::vector<MPI_Request> chunks;
    OMNI_RETURN_IF_ERROR(post_chunks(out.size(), what, chunks, [&](size_t offset, int n, MPI_Request* r) {
      return MPI_Irecv(out.data() + offset, n, MPI_BYTE, peer, seq_tag, impl.data->comm, r);
    }));
    Control withdraw;
    MPI_Request withdraw_request = MPI_REQUEST_NULL;
    OMNI_MPI_CALL(what, MPI_Irecv(&withdraw, sizeof(Control), MPI_BYTE, peer, seq_tag, impl.withdraw->comm, &withdraw_request));
    auto accept = owned(Control{header.seq, Control::kAccept, header.size});
    std::vector<MPI_Request> accept_request(1, MPI_REQUEST_NULL);
    OMNI_MPI_CALL(what,
                  MPI_Isend(accept.get(), sizeof(Control), MPI_BYTE, peer, seq_tag, impl.ctl->comm, accept_request.data()));
    park(std::move(accept_request), {accept, impl.ctl});
    // 3. The sender either sends every chunk or withdraws, by its own deadline.
    bool withdrawn = false;
    const Wait got = poll(
        std::max(deadline.at(), decided_by) + kCommittedGrace,
        [&](int* done) {
          int rc = MPI_Testall(static_cast<int>(chunks.size()), chunks.data(), done, MPI_STATUSES_IGNORE);
          if (rc != MPI_SUCCESS || *done) return rc;
          int w_done = 0;
          rc = MPI_Test(&withdraw_request, &w_done, MPI_STATUS_IGNORE);
          withdrawn = w_done != 0;
          *done = w_done;
          return rc;
        },
        [] { return false; }, &error, "MPI_Testall(message chunks)", what);
    if (got == Wait::kError) return error;
    if (got == Wait::kDone && !withdrawn) {
      cancel_receive(&withdraw_request);
      return ok_status();
    }
    if (withdrawn) {
      // The header was stale (its sender gave up): no chunk will come.
      for (MPI_Request& c : chunks) cancel_receive(&c);
      if (grown != nullptr) grown->clear();
      continue;
    }
    // The sender's process stopped progressing in the middle of a committed transfer.
    cancel_receive(&withdraw_request);
    park(std::move(chunks), {impl.data});
    return deadline_exceeded_error(str_cat(what, ": the sender stopped progressing in the middle of the transfer; "
                                                 "the buffer must outlive the transport"));
  }
}

}  // namespace

Status MpiTransport::recv(RankId src, int32_t tag, std::span<std::byte> data, Timeout timeout) {
  return mpi_receive(*impl_, *this, src, tag, data, nullptr, timeout);
}

StatusOr<std::vector<std::byte>> MpiTransport::recv_message(RankId src, int32_t tag, Timeout timeout) {
  std::vector<std::byte> message;
  OMNI_RETURN_IF_ERROR(mpi_receive(*impl_, *this, src, tag, {}, &message, timeout));
  return message;
}

// --- Failures --------------------------------------------------------------------

Status MpiTransport::mark_failed(RankId r) {
  if (r < 0 || r >= size()) {
    return invalid_argument_error(
        str_cat(impl_->who, ": mark_failed rank ", r, " is out of range; valid ranks are 0..", size() - 1));
  }
  if (r == rank()) return invalid_argument_error(str_cat(impl_->who, ": mark_failed of this rank itself"));
  std::lock_guard<std::mutex> lock(impl_->failed_mu);
  impl_->failed[static_cast<size_t>(r)] = 1;
  impl_->failure_generation.fetch_add(1);
  return ok_status();
}

std::vector<RankId> MpiTransport::failed_ranks() const {
  const std::vector<char> failed = impl_->failed_snapshot();
  std::vector<RankId> out;
  for (RankId r = 0; r < size(); ++r) {
    if (failed[static_cast<size_t>(r)]) out.push_back(r);
  }
  return out;
}

}  // namespace omni

#else  // !OMNI_HAVE_MPI

namespace omni {

namespace {
Status not_built() {
  return unimplemented_error(
      "MpiTransport: this build has no MPI; configure with -DOMNI_WITH_MPI=ON (Debian: libopenmpi-dev, openmpi-bin)");
}
}  // namespace

struct MpiTransport::Impl {};

bool MpiTransport::available() { return false; }
Status MpiTransport::init(int*, char***) { return not_built(); }
Status MpiTransport::finalize() { return ok_status(); }
StatusOr<std::unique_ptr<MpiTransport>> MpiTransport::create_world(Timeout) { return not_built(); }
MpiTransport::MpiTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MpiTransport::~MpiTransport() = default;
// No MpiTransport object can exist in this build: the members below are never reached.
RankId MpiTransport::rank() const { return 0; }
int32_t MpiTransport::size() const { return 1; }
Status MpiTransport::barrier(Timeout) { return not_built(); }
Status MpiTransport::all_reduce(std::span<int64_t>, ReduceOp, Timeout) { return not_built(); }
Status MpiTransport::all_reduce(std::span<double>, ReduceOp, Timeout) { return not_built(); }
Status MpiTransport::all_gather(std::span<const std::byte>, std::span<std::byte>, Timeout) { return not_built(); }
Status MpiTransport::broadcast(std::span<std::byte>, RankId, Timeout) { return not_built(); }
StatusOr<std::unique_ptr<Transport>> MpiTransport::duplicate(Timeout) { return not_built(); }
Status MpiTransport::send(RankId, int32_t, std::span<const std::byte>, Timeout) { return not_built(); }
Status MpiTransport::recv(RankId, int32_t, std::span<std::byte>, Timeout) { return not_built(); }
StatusOr<std::vector<std::byte>> MpiTransport::recv_message(RankId, int32_t, Timeout) { return not_built(); }
Status MpiTransport::mark_failed(RankId) { return not_built(); }
std::vector<RankId> MpiTransport::failed_ranks() const { return {}; }

}  // namespace omni

#endif  // OMNI_HAVE_MPI
