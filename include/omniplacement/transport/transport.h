// Transport: how the ranks of an expert-parallel group talk to each other.
//
// One small interface with three full backends: LocalTransport (ranks are
// threads of one process, local_transport.h), MpiTransport (ranks are Open MPI
// processes on one or many hosts, mpi_transport.h) and UcxTransport (ranks are
// processes connected by UCX, where a peer that dies is an error, not the end
// of the job; ucx_transport.h). The runtime uses
// it for the tiny agreement collectives of an epoch commit, to aggregate
// activation windows (load_aggregation.h) and to move expert weights between
// ranks (tagged point-to-point messages of any size).
//
//   // Every rank runs this (here 4 threads; under MPI, 4 processes):
//   omni::LocalGroup::run(4, [](omni::Transport& t) -> omni::Status {
//     using namespace std::chrono_literals;
//     std::vector<int64_t> load = {t.rank(), 1};
//     OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(load), omni::ReduceOp::kSum, 5s));
//     // load == {0 + 1 + 2 + 3, 4} on every rank.
//     std::vector<std::byte> weights(1 << 20);
//     if (t.rank() == 0) return t.send(1, /*tag=*/7, weights, 5s);
//     if (t.rank() == 1) return t.recv(0, /*tag=*/7, weights, 5s);
//     return omni::ok_status();
//   });
//
// Timeouts. Every call that waits for another rank takes a timeout and returns
// DEADLINE_EXCEEDED when it runs out instead of hanging. A collective that
// timed out on one rank may still complete on the others (the late rank's
// contribution was already handed over): treat DEADLINE_EXCEEDED as a failure
// of the protocol step that made the call (e.g. abort the migration batch),
// not as proof that nobody else saw the result.
//
// Failed ranks. mark_failed(r) removes rank r from this rank's view: later
// collectives run among the survivors, point-to-point calls with r return
// UNAVAILABLE at once, and a collective or receive that is waiting for r when
// it is marked failed returns UNAVAILABLE. Every survivor must mark the same
// set of ranks failed before its next collective (the runtime's failover
// agrees on it first); a collective entered with a different failed set on two
// survivors returns FAILED_PRECONDITION or DEADLINE_EXCEEDED, never a wrong
// result.
// In all_gather the slots of failed ranks are filled with zero bytes. A rank is
// never un-failed: a restarted process joins a new group (a new Transport).
//
// Fencing. Marking r failed also tells r (when it can still hear it, e.g. a
// process that was stopped and resumes): r's transport is then fenced, every
// call on it returns FAILED_PRECONDITION naming the rank that declared it
// failed, and fence_status() says so. Messages r sends after it was marked
// failed are dropped by the rank that marked it. So a rank declared failed
// never again takes part in the group, whatever it was doing when it stalled.
// A rank that cannot hear the notice (its peers are gone, or the notice is
// queued behind what piled up while it was stopped) fences itself when it
// finds it was away longer than the heartbeat timeout (fence_self,
// FailureDetector).
//
// Threads. Each method documents who may call it. In short: rank(), size()
// and failed_ranks() from any thread; mark_failed() from any thread (a
// failure detector may call it while another thread waits in a collective);
// send()/recv() from any number of threads at once (distinct tags run
// concurrently; messages with the same (peer, tag) are delivered in the order
// their send() calls started); collectives from one thread at a time per
// Transport object, in the same order on every rank (a second thread that
// needs its own collectives, e.g. the engine thread's commit while a planner
// thread aggregates loads, uses its own Transport from duplicate()).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"

namespace omni {

// How long a call may wait for other ranks. Any std::chrono duration converts.
using Timeout = std::chrono::nanoseconds;

enum class ReduceOp { kSum, kMax, kMin };

// "sum", "max", "min".
std::string_view reduce_op_name(ReduceOp op);

// Point-to-point tags are chosen by the caller: 0 <= tag <= kMaxTag.
inline constexpr int32_t kMaxTag = (1 << 20) - 1;

class Transport {
 public:
  virtual ~Transport() = default;

  // This rank, 0 <= rank() < size(). Any thread.
  virtual RankId rank() const = 0;
  // Ranks in the group when it was created, failed ones included. Any thread.
  virtual int32_t size() const = 0;
  // Backend name: "local", "mpi" or "ucx". Any thread.
  virtual std::string_view backend() const = 0;

  // --- Collectives: one thread at a time per Transport, same order on every rank.

  // Returns once every surviving rank has entered the barrier.
  virtual Status barrier(Timeout timeout) = 0;

  // In place: data[i] becomes op over data[i] of every surviving rank. Every
  // rank passes the same length (LocalTransport checks it: INVALID_ARGUMENT;
  // MPI cannot detect a mismatch, which is erroneous there). An int64 sum that
  // overflows is left saturated (INT64_MAX or INT64_MIN) and the call returns
  // OUT_OF_RANGE (a sum exactly at INT64_MAX or INT64_MIN is reported too). Double sums are added in rank order
  // on LocalTransport (every rank gets bitwise the same result); under MPI the
  // order is Open MPI's choice (all_reduce_load() in load_aggregation.h
  // guarantees bitwise agreement on both backends).
  virtual Status all_reduce(std::span<int64_t> data, ReduceOp op, Timeout timeout) = 0;
  virtual Status all_reduce(std::span<double> data, ReduceOp op, Timeout timeout) = 0;

  // Every rank contributes send (the same number of bytes n on every rank);
  // recv has size() * n bytes and receives rank r's bytes at [r * n, (r + 1) * n).
  // Slots of failed ranks are filled with zero bytes.
  virtual Status all_gather(std::span<const std::byte> send, std::span<std::byte> recv, Timeout timeout) = 0;

  // root's data is copied into data on every other surviving rank (same length
  // on every rank). A failed root is UNAVAILABLE.
  virtual Status broadcast(std::span<std::byte> data, RankId root, Timeout timeout) = 0;

  // A new, independent Transport over the same ranks and the same failed set,
  // with its own collective order and its own tag space. Collective: every
  // surviving rank calls it (in its collective order). The caller owns the
  // result; it must be destroyed before *this.
  virtual StatusOr<std::unique_ptr<Transport>> duplicate(Timeout timeout) = 0;

  // --- Point-to-point: any thread, concurrently.

  // Sends data to rank dst with tag (0 <= tag <= kMaxTag). Returns once the
  // receiver has the bytes (LocalTransport) or once a receive took the
  // message and its bytes have left data (MpiTransport, UcxTransport); data
  // may be reused after it returns OK. A send that returns DEADLINE_EXCEEDED
  // was not delivered. Any size: large messages are chunked internally.
  // dst == rank() is INVALID_ARGUMENT.
  virtual Status send(RankId dst, int32_t tag, std::span<const std::byte> data, Timeout timeout) = 0;

  // Receives the next message from src with tag into data; the message must
  // have exactly data.size() bytes (else INVALID_ARGUMENT on both sides, and the
  // message is consumed).
  virtual Status recv(RankId src, int32_t tag, std::span<std::byte> data, Timeout timeout) = 0;

  // Receives the next message from src with tag, whatever its size.
  virtual StatusOr<std::vector<std::byte>> recv_message(RankId src, int32_t tag, Timeout timeout) = 0;

  // --- Failure handling: any thread.

  // Removes rank r from this rank's view of the group (see the overview).
  // Marking this rank itself is INVALID_ARGUMENT; marking twice is OK.
  virtual Status mark_failed(RankId r) = 0;
  // Ranks marked failed, ascending.
  virtual std::vector<RankId> failed_ranks() const = 0;
  // OK while this rank belongs to the group; once another rank declared it
  // failed (see Fencing above), the FAILED_PRECONDITION status every later
  // call returns.
  virtual Status fence_status() const = 0;
  // Fences this rank from its own side: a rank that knows the others have
  // declared it failed without having heard so (a FailureDetector that finds
  // its process was stopped for longer than the heartbeat timeout: the fence
  // notices may be stuck behind what queued up meanwhile, or gone with the
  // peers). Every later call returns FAILED_PRECONDITION with `why`. On the
  // process backends every transport of the process is fenced (the process
  // is out of the group); on LocalTransport this transport. Any thread.
  virtual void fence_self(std::string_view why) = 0;
  // When the last wire message from peer r arrived at this process (steady
  // clock; on any channel of the process), as evidence that r is alive even
  // while its messages wait behind a large one still being received (the
  // process backends deliver each peer's messages in order, so a heartbeat
  // can be held up for as long as a big collective contribution takes).
  // time_point::min() when never, when r is out of range, and on backends
  // that keep no such record (the default; LocalTransport has no such delays).
  // Any thread.
  virtual std::chrono::steady_clock::time_point last_arrival(RankId r) const;
  // Whether rank r is marked failed (r in range; else false).
  bool is_failed(RankId r) const;
  // Ranks not marked failed, ascending (this rank included).
  std::vector<RankId> live_ranks() const;
};

}  // namespace omni
