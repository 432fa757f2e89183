// Deadline: a point in steady time computed once from a caller's Timeout, so
// that a call made of several waits (handshake, chunks, ...) never waits longer
// in total than the caller allowed. Internal to the transport module.
#pragma once

#include <algorithm>
#include <chrono>

#include "omniplacement/transport/transport.h"

namespace omni::transport_internal {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  // Negative timeouts act as zero (poll once). Timeouts are capped at a year so
  // that now + timeout cannot overflow (Timeout::max() means "practically forever").
  explicit Deadline(Timeout timeout) {
    const Timeout kCap = std::chrono::hours(24 * 365);
    const Timeout t = std::clamp(timeout, Timeout::zero(), kCap);
    at_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(t);
  }

  Clock::time_point at() const { return at_; }
  bool expired() const { return Clock::now() >= at_; }
  // Time left, >= 0.
  Timeout remaining() const {
    const auto now = Clock::now();
    return now >= at_ ? Timeout::zero() : std::chrono::duration_cast<Timeout>(at_ - now);
  }

 private:
  Clock::time_point at_;
};

// "250 ms" (whole milliseconds) for error messages.
inline long long timeout_ms(Timeout t) { return std::chrono::duration_cast<std::chrono::milliseconds>(t).count(); }

}  // namespace omni::transport_internal
