// MessageEngine: the protocol of the process-based transports (MpiTransport,
// UcxTransport) written once over a Wire (wire.h). Internal to the module.
//
// One engine per process and wire. It owns a progress thread, the only
// thread that touches the wire, so no two threads ever call into MPI or UCX
// at once; callers' threads register operations under one mutex and sleep on
// a condition variable until the progress thread completes them or their
// deadline passes. Nothing is cancelled inside MPI or UCX: every timeout is
// settled by the protocol below.
//
// Channels. A Transport is a channel of the engine: a 64-bit id that every
// rank derives the same way (the k-th world transport, the j-th duplicate of
// channel c), its failed set, its tag space and its collective order. A
// message for a channel this process has not opened yet waits for it; one
// for a channel it closed is dropped.
//
// Point-to-point: a rendezvous the sender's deadline can settle.
//   sender                                  receiver
//   HEADER(seq, size, time left[, bytes])  ->  queued per (sender, tag)
//                                          <-  CLAIM(seq, accept|reject)   when a recv matches it
//   DATA(bytes) or DECISION(confirm)       ->  delivered                   (still waiting for a claim)
//   DECISION(withdrawn)                    ->  skipped, next message       (gave up before the claim)
//   WITHDRAW(seq) when the sender's deadline passes first: the header is dropped unclaimed.
// The sender alone decides whether a message counts, so both sides always
// agree: a send that returned DEADLINE_EXCEEDED was never delivered, and a
// size mismatch fails on both. Messages up to kInlineBytes ride in the header
// (copied); larger ones are sent from the caller's buffer after the claim.
//
// Collectives: every rank sends its contribution, prefixed with its failed
// set, straight to every live peer, tagged with the channel's collective
// sequence number; each rank combines what it received in rank order, so
// double sums are bitwise identical on every rank. Contributions that name a
// different failed set fail the call (FAILED_PRECONDITION), a contribution of
// another shape fails it (INVALID_ARGUMENT). A rank that timed out has still
// handed its contribution over, so the others may complete; a contribution
// for a collective this rank gave up on is dropped.
//
// A rank that dies while it hands its contribution over may reach some
// survivors and not others. So that every survivor gets the same outcome, a
// survivor missing the contribution of a rank that failed asks the other
// survivors for it (RELAY): one that has it sends it on, and the collective
// completes everywhere; only when every survivor answers that it has none
// (each answers so only once it has itself marked the rank failed or lost its
// connection, after which it can never accept that contribution) does the
// collective fail everywhere, with UNAVAILABLE. Each channel keeps the
// contributions of its last few completed collectives for such questions.
//
// Failures. mark_failed(r) on a channel ends that channel's operations with r
// (UNAVAILABLE), drops what r sends on it from then on, and sends r a FENCE:
// when r runs again (a stopped process that resumed) its channel is fenced
// and every call on it returns FAILED_PRECONDITION naming who declared it
// failed. A peer whose connection breaks (wire on_peer_lost) fails every
// operation with it on every channel (UNAVAILABLE) without being marked.
//
// Threads: every public method may be called from any thread; see
// transport.h for which Transport calls may run concurrently.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "omniplacement/transport/transport.h"
#include "deadline.h"
#include "wire.h"

namespace omni::transport_internal {

// What a collective is; every rank of one collective must pass the same.
enum class CollKind : int32_t { kBarrier = 1, kAllReduceInt64, kAllReduceDouble, kAllGather, kBroadcast, kDuplicate };

struct CollMeta {
  CollKind kind = CollKind::kBarrier;
  int32_t op_or_root = 0;  // ReduceOp (all_reduce) or root (broadcast)
  uint64_t bytes = 0;      // contribution bytes (all_reduce, all_gather) or payload bytes (broadcast)
};

struct Incoming;

// Contributions of one collective, by rank; by_rank[r] is null for ranks
// whose contribution was not waited for (this rank's own included).
struct Contributions {
  size_t offset = 0;  // where the contribution starts in each payload (after the failed set)
  std::vector<std::shared_ptr<const Incoming>> by_rank;
  // Rank r's contribution (empty when not waited for).
  std::span<const std::byte> bytes(RankId r) const;
};

struct Channel;  // defined in message_engine.cc
struct SendOp;

// The fixed head of every wire message (kFrameBytes). What each field means
// depends on kind (see message_engine.cc).
struct Frame {
  uint32_t magic = 0;
  uint16_t kind = 0;
  uint16_t flags = 0;
  uint64_t channel = 0;
  uint64_t seq = 0;
  uint64_t size = 0;
  int64_t remaining_ns = 0;
  int32_t tag = 0;
  int32_t arg = 0;
  uint64_t arg2 = 0;
  uint64_t reserved = 0;
};
static_assert(sizeof(Frame) == kFrameBytes);

// A message received from the wire.
struct Incoming {
  RankId src = -1;
  Frame frame;
  Payload payload;
  std::chrono::steady_clock::time_point arrived;
};

// A message waiting for, or in, the wire. owned or user holds the payload;
// op (a send operation) completes when the wire is done with user's bytes.
struct Outgoing {
  RankId peer = -1;
  uint64_t token = 0;
  Frame frame;
  std::shared_ptr<const Payload> owned;
  std::span<const std::byte> user;
  std::shared_ptr<SendOp> op;
};

class MessageEngine final : private WireSink {
 public:
  // Payloads up to this many bytes travel inside the header message.
  static constexpr size_t kInlineBytes = kSmallPayloadBytes;
  // How long a committed transfer may run past the deadlines before the peer
  // is considered stopped.
  static constexpr std::chrono::seconds kCommittedGrace{5};

  // Starts the progress thread over wire.
  static std::shared_ptr<MessageEngine> start(std::unique_ptr<Wire> wire);
  ~MessageEngine() override;  // shutdown(2 s)

  MessageEngine(const MessageEngine&) = delete;
  MessageEngine& operator=(const MessageEngine&) = delete;

  RankId rank() const { return rank_; }
  int32_t size() const { return size_; }
  std::string_view backend() const { return backend_; }

  // Flushes what is in flight (at most `timeout`: a stopped peer never
  // drains), then stops the progress thread. Afterwards every call returns
  // FAILED_PRECONDITION. Idempotent.
  void shutdown(Timeout timeout);

  // --- Channels.
  // A channel id every rank derives alike: the k-th world transport, the j-th duplicate of a channel.
  static uint64_t world_channel_id(uint64_t k);
  static uint64_t child_channel_id(uint64_t parent, uint64_t j);
  // Opens channel id with an initial failed set (size() entries). Messages
  // that arrived for it before are handed to it now.
  StatusOr<std::shared_ptr<Channel>> open_channel(uint64_t id, std::vector<char> failed);
  // Closes it; later messages for it are dropped. No operation may be running on it.
  void close_channel(const std::shared_ptr<Channel>& channel);
  // The id of the channel's next duplicate (collective order: every rank counts alike).
  uint64_t next_child_id(Channel& channel);

  // --- Point-to-point (transport.h semantics).
  Status send(Channel& channel, RankId dst, int32_t tag, std::span<const std::byte> data, Timeout timeout);
  // Into fixed (grown == nullptr: the message must have fixed.size() bytes) or
  // into *grown (resized and copied on the calling thread).
  Status receive(Channel& channel, RankId src, int32_t tag, std::span<std::byte> fixed, std::vector<std::byte>* grown,
                 Timeout timeout);

  // --- Collectives: one at a time per channel. Sends contribution to every
  // live peer if `send`, then waits for the contribution of every live peer
  // (wait_from == kFromAll), of rank wait_from only, or of nobody (kFromNobody).
  static constexpr RankId kFromAll = -1;
  static constexpr RankId kFromNobody = -2;
  StatusOr<Contributions> collective(Channel& channel, const CollMeta& meta, std::span<const std::byte> contribution,
                                     bool send, RankId wait_from, Timeout timeout);

  // --- Failures.
  Status mark_failed(Channel& channel, RankId r);
  std::vector<char> failed(const Channel& channel) const;
  // OK, or the FAILED_PRECONDITION every call on this channel returns since
  // another rank declared this one failed (or the engine shut down).
  Status fence_status(const Channel& channel) const;
  // Fences every channel of this process, and every one opened later
  // (Transport::fence_self).
  void fence_process(std::string_view why);
  // When a wire message from peer last started to arrive (on_arrival), or
  // time_point::min(). Any thread.
  std::chrono::steady_clock::time_point last_arrival(RankId peer) const;

  // Figures for tests and benchmarks.
  struct Stats {
    int64_t messages_sent = 0;      // wire messages posted
    int64_t messages_received = 0;  // wire messages delivered
    int64_t dropped_from_failed = 0;  // messages from ranks marked failed on their channel, dropped
    int64_t fences_sent = 0;
  };
  Stats stats() const;

  std::string who() const;  // "rank 2 (ucx)"

 private:
  explicit MessageEngine(std::unique_ptr<Wire> wire);

  // WireSink (progress thread).
  void on_message(RankId src, std::span<const std::byte> frame, Payload payload) override;
  void on_sent(uint64_t token, Status status) override;
  void on_peer_lost(RankId peer, Status why) override;
  void on_arrival(RankId src) override;

  void run();  // the progress thread

  // Everything below runs with mu_ held.
  void handle(Channel& ch, Incoming in);
  void enqueue(RankId peer, const Frame& frame, std::shared_ptr<const Payload> owned = nullptr,
               std::span<const std::byte> user = {}, std::shared_ptr<SendOp> op = nullptr);
  void match(Channel& ch, RankId src, int32_t tag);
  void on_contribution(Channel& ch, Incoming in);
  // Relay (see the overview): this rank misses r's contribution to the active collective.
  void start_relay(Channel& ch, RankId r, const Status& why);
  void on_relay_request(Channel& ch, RankId asker, const Frame& f);
  void on_relay_reply(Channel& ch, RankId from, Incoming in);
  // Answers the relay questions about r that waited for r to be failed or lost here.
  void answer_deferred_relays(Channel& ch, RankId r);
  // A survivor that was asked for a relay is gone: as if it had answered "none".
  void drop_relay_peer(Channel& ch, RankId gone);
  void fail_peer_ops(Channel& ch, RankId r, const Status& why);
  void fail_all_ops(Channel& ch, const Status& why);
  void send_fence(Channel& ch, RankId r);
  void fence(Channel& ch, RankId by, std::span<const std::byte> their_failed);
  Status usable(const Channel& ch, RankId peer, const char* what) const;

  std::unique_ptr<Wire> wire_;
  const RankId rank_;
  const int32_t size_;
  const std::string backend_;

  mutable std::mutex mu_;
  bool stopping_ = false;           // guarded by mu_: no new operations
  Status process_fenced_;           // guarded by mu_: fence_process() was called
  bool exit_ = false;               // guarded by mu_: the progress thread leaves
  std::once_flag shutdown_once_;
  std::condition_variable flushed_cv_;
  std::map<uint64_t, std::shared_ptr<Channel>> channels_;  // guarded by mu_
  std::set<uint64_t> retired_;                             // guarded by mu_
  std::map<uint64_t, std::vector<Incoming>> orphans_;      // guarded by mu_: for channels not open yet
  std::vector<Status> lost_;                               // guarded by mu_: per peer, OK while connected
  // Per peer: steady-clock nanoseconds of the last on_arrival, 0 if none.
  // Written by the progress thread, read by any (no lock).
  std::unique_ptr<std::atomic<int64_t>[]> last_arrival_ns_;
  std::vector<char> declared_;  // guarded by mu_: per peer, marked failed on some channel (not waited for at shutdown)
  std::deque<Outgoing> outbox_;                            // guarded by mu_
  std::vector<RankId> drop_requests_;                      // guarded by mu_
  int64_t in_flight_ = 0;                                  // guarded by mu_: posted, not yet on_sent
  uint64_t next_token_ = 1;                                // guarded by mu_
  Stats stats_;                                            // guarded by mu_
  std::map<uint64_t, Outgoing> posted_;  // progress thread only: by token
  std::thread thread_;
};

}  // namespace omni::transport_internal
