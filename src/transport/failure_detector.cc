#include "omniplacement/transport/failure_detector.h"

#include <algorithm>

#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {
// Heartbeat layout: byte 0 = flags (bit 0: goodbye), then one byte per rank
// (1 = failed). Fixed size per group, so recv() can use a fixed buffer.
constexpr std::byte kGoodbye{1};
}  // namespace

StatusOr<std::unique_ptr<FailureDetector>> FailureDetector::start(Transport& transport,
                                                                  FailureDetectorOptions options) {
  if (options.period.count() <= 0 || options.timeout < options.period) {
    return invalid_argument_error(str_cat("failure detector: need period > 0 and timeout >= period, got period ",
                                          options.period.count(), " us, timeout ", options.timeout.count(), " us"));
  }
  if (options.tag < 0 || options.tag > kMaxTag) {
    return invalid_argument_error(str_cat("failure detector: tag ", options.tag, " out of [0, ", kMaxTag, "]"));
  }
  std::unique_ptr<FailureDetector> d(new FailureDetector(transport, std::move(options)));
  d->last_tick_ = std::chrono::steady_clock::now();
  d->sender_ = std::thread([p = d.get()] { p->sender_loop(); });
  d->receiver_ = std::thread([p = d.get()] { p->receiver_loop(); });
  d->watchdog_ = std::thread([p = d.get()] { p->watchdog_loop(); });
  return d;
}

FailureDetector::FailureDetector(Transport& transport, FailureDetectorOptions options)
    : transport_(transport), options_(std::move(options)) {
  failed_.assign(static_cast<size_t>(transport_.size()), 0);
  for (RankId r : transport_.failed_ranks()) failed_[static_cast<size_t>(r)] = 1;
  for (RankId r = 0; r < transport_.size(); ++r)
    if (failed_[static_cast<size_t>(r)]) membership_.failed.push_back(r);
  membership_.epoch = membership_.failed.size();
}

FailureDetector::~FailureDetector() { stop(true); }

void FailureDetector::stop(bool graceful) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      graceful_ = graceful;
    }
  }
  cv_.notify_all();
  if (sender_.joinable()) sender_.join();
  if (receiver_.joinable()) receiver_.join();
  if (watchdog_.joinable()) watchdog_.join();
}

Membership FailureDetector::membership() const {
  std::lock_guard<std::mutex> lock(mu_);
  return membership_;
}

bool FailureDetector::wait_for_epoch(uint64_t epoch, Timeout timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return membership_.epoch >= epoch; });
}

std::chrono::microseconds FailureDetector::stall_threshold() const {
  // Twice the timeout: a process away that long was certainly declared failed
  // (its successor waited `timeout`), while a busy machine that only delays
  // the ticks does not make a live rank leave. A stall between the two is
  // left to the survivors' fence notices.
  return 2 * options_.timeout + options_.period;
}

void FailureDetector::watchdog_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, options_.period, [&] { return stopping_; });
    if (stopping_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now < silent_until_) {
      // Silenced (a simulated stall): the ticks stop too.
      cv_.wait_until(lock, silent_until_, [&] { return stopping_; });
      continue;
    }
    const auto away = now - last_tick_;
    if (away > stall_threshold()) {
      stats_.fenced_itself = true;
      const RankId me = transport_.rank();
      lock.unlock();
      transport_.fence_self(str_cat(
          "rank ", me, " was stopped (or starved) for ",
          std::chrono::duration_cast<std::chrono::milliseconds>(away).count(), " ms, longer than the heartbeat timeout (",
          std::chrono::duration_cast<std::chrono::milliseconds>(options_.timeout).count(),
          " ms) allows: the others have declared it failed; a rank is never un-failed, this one must leave the group"));
      cv_.notify_all();
      return;
    }
    last_tick_ = now;
  }
}

void FailureDetector::silence_for(std::chrono::milliseconds duration) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    silent_until_ = std::max(silent_until_, std::chrono::steady_clock::now() + duration);
  }
  cv_.notify_all();
}

FailureDetectorStats FailureDetector::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

Status FailureDetector::report_failure(RankId r) {
  if (r < 0 || r >= transport_.size() || r == transport_.rank()) {
    return invalid_argument_error(str_cat("failure detector on rank ", transport_.rank(), ": cannot report rank ", r,
                                          " as failed; valid are the other ranks in [0, ", transport_.size(), ")"));
  }
  add_failed({r}, /*detected_here=*/false);
  return ok_status();
}

bool FailureDetector::add_failed(const std::vector<RankId>& ranks, bool detected_here) {
  Membership snapshot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    bool changed = false;
    for (RankId r : ranks) {
      if (r < 0 || r >= transport_.size() || r == transport_.rank() || failed_[static_cast<size_t>(r)]) continue;
      // Mark on the transport first: whoever sees the new epoch may rely on it.
      transport_.mark_failed(r).ignore();
      failed_[static_cast<size_t>(r)] = 1;
      changed = true;
      if (detected_here) ++stats_.detections;
    }
    if (!changed) return false;
    membership_.failed.clear();
    for (RankId r = 0; r < transport_.size(); ++r)
      if (failed_[static_cast<size_t>(r)]) membership_.failed.push_back(r);
    membership_.epoch = membership_.failed.size();
    ++version_;
    snapshot = membership_;
  }
  cv_.notify_all();
  if (options_.on_change) options_.on_change(snapshot);
  return true;
}

RankId FailureDetector::successor_locked() const {
  const int32_t n = transport_.size();
  for (int32_t k = 1; k < n; ++k) {
    const RankId r = (transport_.rank() + k) % n;
    if (!failed_[static_cast<size_t>(r)]) return r;
  }
  return -1;  // alone
}

RankId FailureDetector::predecessor_locked() const {
  const int32_t n = transport_.size();
  for (int32_t k = 1; k < n; ++k) {
    const RankId r = (transport_.rank() - k + n) % n;
    if (!failed_[static_cast<size_t>(r)]) return r;
  }
  return -1;
}

std::vector<std::byte> FailureDetector::encode_locked(bool goodbye) const {
  std::vector<std::byte> msg(1 + failed_.size());
  msg[0] = goodbye ? kGoodbye : std::byte{0};
  for (size_t r = 0; r < failed_.size(); ++r) msg[1 + r] = static_cast<std::byte>(failed_[r]);
  return msg;
}

void FailureDetector::sender_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t sent_version = ~uint64_t{0};
  while (true) {
    if (stopping_) {
      const RankId succ = successor_locked();
      if (graceful_ && succ >= 0) {
        auto msg = encode_locked(/*goodbye=*/true);
        lock.unlock();
        transport_.send(succ, options_.tag, msg, options_.timeout).ignore();
      }
      return;
    }
    if (std::chrono::steady_clock::now() < silent_until_) {
      cv_.wait_until(lock, silent_until_, [&] { return stopping_; });
      continue;
    }
    const RankId succ = successor_locked();
    if (succ >= 0) {
      auto msg = encode_locked(false);
      const uint64_t version = version_;
      lock.unlock();
      // A successor that is gone makes this time out; its own successor will
      // declare it failed, so nothing to do here but go on.
      Status s = transport_.send(succ, options_.tag, msg, options_.timeout);
      // Declared failed by the others: this rank is out. (A successor that is
      // unreachable is left to its own successor, which knows whether it said
      // goodbye first.)
      if (!transport_.fence_status().ok()) return;
      lock.lock();
      if (s.ok()) ++stats_.heartbeats_sent;
      // Tried with this view (sent or not): the next try is after `period`,
      // or sooner if the view changes. Never spin on a failing send.
      sent_version = version;
    } else {
      sent_version = version_;  // alone: nothing to send until the view changes
    }
    // Next heartbeat after `period`, or at once when the failed set changed.
    cv_.wait_for(lock, options_.period, [&] { return stopping_ || version_ != sent_version; });
  }
}

void FailureDetector::receiver_loop() {
  std::vector<std::byte> msg(1 + static_cast<size_t>(transport_.size()));
  RankId watched = -1;  // the predecessor we last heard from or started watching
  while (true) {
    RankId pred;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      pred = predecessor_locked();
      if (pred < 0 || pred == released_pred_) {
        // Nobody to watch (alone, or the predecessor left gracefully).
      }
    }
    if (pred < 0 || pred == released_pred_) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, options_.period, [&] { return stopping_; });
      continue;
    }
    // A newly adopted predecessor (the ring closed over a failure) learns of
    // the change only when it has travelled around the ring to it, so it gets
    // a grace of one period per live rank on top of the timeout.
    Timeout wait = options_.timeout;
    if (pred != watched && watched != -1) {
      std::lock_guard<std::mutex> lock(mu_);
      const auto live = static_cast<int64_t>(failed_.size() - membership_.failed.size());
      wait += options_.period * live;
    }
    {
      // Silenced (a simulated stall): watch nobody until it ends.
      std::unique_lock<std::mutex> lock(mu_);
      if (std::chrono::steady_clock::now() < silent_until_) {
        cv_.wait_until(lock, silent_until_, [&] { return stopping_; });
        continue;
      }
    }
    const auto recv_started = std::chrono::steady_clock::now();
    Status s = transport_.recv(pred, options_.tag, msg, wait);
    if (s.ok()) watched = pred;
    if (s.ok()) {
      std::vector<RankId> learned;
      for (size_t r = 0; r + 1 < msg.size(); ++r)
        if (msg[1 + r] != std::byte{0}) learned.push_back(static_cast<RankId>(r));
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.heartbeats_received;
        if (msg[0] == kGoodbye) released_pred_ = pred;
      }
      add_failed(learned, false);
      continue;
    }
    if (s.code() == StatusCode::kDeadlineExceeded) {
      bool declare = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        // Still our predecessor, still silent, we are not shutting down, and
        // we were not away ourselves meanwhile (a stalled rank does not judge
        // others by the time it was away: its watchdog fences it instead).
        const auto now = std::chrono::steady_clock::now();
        // And nothing at all arrived from pred meanwhile: the process
        // transports deliver a peer's messages in order, so its heartbeat
        // can wait behind a large message (a collective contribution) that
        // takes longer than the timeout to arrive on a loaded machine; what
        // pred sent is still evidence that it is alive. While held up so,
        // pred's sender posts a heartbeat, withdraws it `timeout` later and
        // posts the next one a `period` after that: the window reaches back
        // one period so that it always holds one of these arrivals.
        declare = !stopping_ && predecessor_locked() == pred && released_pred_ != pred &&
                  silent_until_ < recv_started && now - last_tick_ <= options_.timeout &&
                  transport_.last_arrival(pred) < recv_started - options_.period;
      }
      if (declare) add_failed({pred}, /*detected_here=*/true);
      continue;
    }
    if (!transport_.fence_status().ok()) return;  // declared failed by the others: this rank is out
    // UNAVAILABLE for a pred marked failed meanwhile: the loop picks the next one.
    if (s.code() == StatusCode::kUnavailable && transport_.is_failed(pred)) continue;
    if (s.code() == StatusCode::kUnavailable) {
      // Not marked failed, yet unreachable: the transport lost the connection
      // to pred (its process died). Declare it now rather than at the timeout.
      bool declare = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        const auto now = std::chrono::steady_clock::now();
        declare = !stopping_ && released_pred_ != pred && now - last_tick_ <= options_.timeout;
      }
      if (declare) {
        add_failed({pred}, /*detected_here=*/true);
        continue;
      }
    }
    // Anything else (a size mismatch from a foreign message on our tag, a
    // predecessor that left gracefully and is gone): keep watching, without
    // spinning on an error that comes back at once.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, options_.period, [&] { return stopping_; });
  }
}

}  // namespace omni
