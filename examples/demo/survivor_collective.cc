#include "demo/survivor_collective.h"

#include <algorithm>
#include <chrono>
#include <thread>

namespace omni {
namespace {

template <typename T>
Status retry_all_reduce(Transport& t, std::span<T> data, ReduceOp op, Timeout timeout, bool failures_expected) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::max<Timeout>(std::chrono::milliseconds(1), deadline - Clock::now());
    Status s = t.all_reduce(data, op, left);
    if (s.ok() || !failures_expected || Clock::now() >= deadline ||
        (s.code() != StatusCode::kUnavailable && s.code() != StatusCode::kFailedPrecondition))
      return s;
    // Fenced (this rank was declared failed): no retry can help.
    OMNI_RETURN_IF_ERROR(t.fence_status());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

Status all_reduce_among_survivors(Transport& t, std::span<int64_t> data, ReduceOp op, Timeout timeout,
                                  bool failures_expected) {
  return retry_all_reduce(t, data, op, timeout, failures_expected);
}

Status all_reduce_among_survivors(Transport& t, std::span<double> data, ReduceOp op, Timeout timeout,
                                  bool failures_expected) {
  return retry_all_reduce(t, data, op, timeout, failures_expected);
}

}  // namespace omni
