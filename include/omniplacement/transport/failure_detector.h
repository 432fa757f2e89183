// FailureDetector: heartbeats over a Transport, and agreement on who failed.
//
// The live ranks form a ring (ascending rank order, wrapping). Each rank runs
// two threads: one sends a heartbeat to its successor every `period`, the
// other waits for heartbeats from its predecessor; when none arrives within
// `timeout`, the predecessor is declared failed. Every heartbeat carries the
// sender's set of failed ranks, and a rank that learns of a new failure
// forwards its set at once (not at the next period), so a failure spreads
// around the ring in one message hop per rank. The ring then closes over the
// failed rank. Engines that learn of a failure first (a CUDA error, a dead
// NIC) call report_failure(r), which spreads the same way.
//
// Agreement. The failed set only grows, and every rank forwards what it
// knows, so all survivors end with the same set; the membership epoch is the
// size of that set, so the same set means the same epoch. Each new failure is
// applied to the Transport with mark_failed() before it is published here, so
// a caller that sees epoch k in membership() can run collectives among the
// survivors of epoch k.
//
//   omni::FailureDetectorOptions opt;
//   opt.period = std::chrono::milliseconds(10);
//   opt.timeout = std::chrono::milliseconds(50);
//   auto detector = omni::FailureDetector::start(transport, opt);
//   ...
//   omni::Membership m = (*detector)->membership();   // epoch, failed ranks
//
// A rank that stops its detector with stop() says goodbye to its successor,
// which then stops watching it (no false failure at shutdown); stop(false)
// simulates a crash (tests) by going silent.
//
// A rank whose predecessor changed (the ring closed over a failure) waits
// `timeout` plus one `period` per live rank for the new predecessor's first
// heartbeat: the news of the failure must travel around the ring to it before
// it sends to its new successor. So a second failure right next to a first is
// detected that much later (e.g. 64 ranks, 10 ms period: up to 640 ms more).
//
// A transport that reports a peer unreachable without it being marked failed
// (UcxTransport: the peer's process died and its connection broke) makes the
// detector declare that peer at once, without waiting for the timeout. A
// detector whose transport was fenced (this rank was declared failed by the
// others, transport.h) stops sending and watching: the rank is out.
//
// Stalls of this rank's own process. A third thread ticks every `period`;
// when it finds more than 2 x `timeout` + `period` passed since its last
// tick, this process was stopped (SIGSTOP, a frozen VM) or starved that long,
// so its successor has declared it failed: the detector fences its transport
// from this side (Transport::fence_self) and stops. (A shorter stall that was
// still declared is fenced by the survivors' notices.) A rank never declares
// others by the time it was itself away (its watching thread declares only
// while the ticks are at most `timeout` old), so a rank that resumes cannot
// fence or declare the survivors; and after a long stall it leaves even when
// the survivors' fence notices never reach it (they were queued behind a full
// connection, or the survivors are gone).
//
// Limits: a rank that is alive but silent for longer than `timeout` (stalled
// process, overloaded host) is declared failed; a rank is never un-failed.
// Choose `timeout` several times the worst scheduling delay you expect.
//
// Threads: start() from any thread; membership(), wait_for_epoch(),
// report_failure() and stop() from any thread. The on_change callback runs on
// a detector thread and must not block for long.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"
#include "omniplacement/transport/transport.h"

namespace omni {

struct Membership {
  uint64_t epoch = 0;            // number of failed ranks
  std::vector<RankId> failed;    // ascending
  friend bool operator==(const Membership&, const Membership&) = default;
};

struct FailureDetectorOptions {
  std::chrono::microseconds period{10000};   // heartbeat interval (10 ms)
  std::chrono::microseconds timeout{50000};  // predecessor silence that declares it failed (50 ms)
  int32_t tag = kMaxTag;                     // point-to-point tag reserved for heartbeats
  // Called on a detector thread after each change of membership.
  std::function<void(const Membership&)> on_change;
};

struct FailureDetectorStats {
  int64_t heartbeats_sent = 0;
  int64_t heartbeats_received = 0;
  int64_t detections = 0;  // failures this rank declared itself (timeouts)
  bool fenced_itself = false;  // this process was found stopped longer than the timeout allows
};

class FailureDetector {
 public:
  // transport must outlive the detector. period and timeout must be > 0 and
  // timeout >= period; tag in [0, kMaxTag] and not used by anything else.
  static StatusOr<std::unique_ptr<FailureDetector>> start(Transport& transport, FailureDetectorOptions options);
  ~FailureDetector();  // stop()

  FailureDetector(const FailureDetector&) = delete;
  FailureDetector& operator=(const FailureDetector&) = delete;

  Membership membership() const;
  // Blocks until membership().epoch >= epoch; false on timeout.
  bool wait_for_epoch(uint64_t epoch, Timeout timeout) const;
  // Declares rank r failed here and spreads it. r == this rank or out of range
  // is INVALID_ARGUMENT; reporting twice is OK.
  Status report_failure(RankId r);
  // graceful: send a goodbye to the successor first; false: just go silent.
  // Joins the threads (waits at most about `timeout`). Idempotent.
  void stop(bool graceful = true);
  // Goes silent for `duration` (sends no heartbeat, declares nobody), as the
  // detector of a stopped process would; then carries on. Ranks that are
  // threads of one process simulate a stalled rank with it (the demo's
  // --stall-rank on LocalTransport). Any thread.
  void silence_for(std::chrono::milliseconds duration);
  FailureDetectorStats stats() const;

 private:
  FailureDetector(Transport& transport, FailureDetectorOptions options);
  void sender_loop();
  void receiver_loop();
  void watchdog_loop();
  // How long this process may be away (no tick) before it counts as stopped.
  std::chrono::microseconds stall_threshold() const;
  // Adds ranks to the failed set (marks them on the transport); returns true if anything changed.
  bool add_failed(const std::vector<RankId>& ranks, bool detected_here);
  RankId successor_locked() const;
  RankId predecessor_locked() const;
  std::vector<std::byte> encode_locked(bool goodbye) const;

  Transport& transport_;
  const FailureDetectorOptions options_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<char> failed_;  // by rank
  Membership membership_;
  uint64_t version_ = 0;      // bumps on every change (wakes the sender)
  bool stopping_ = false;
  bool graceful_ = true;
  RankId released_pred_ = -1;  // predecessor that said goodbye
  std::chrono::steady_clock::time_point silent_until_{};  // silence_for(): no heartbeat before this
  std::chrono::steady_clock::time_point last_tick_{};     // the watchdog's last tick
  FailureDetectorStats stats_;
  std::thread sender_;
  std::thread receiver_;
  std::thread watchdog_;
};

}  // namespace omni
