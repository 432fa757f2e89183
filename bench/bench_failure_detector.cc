// Failure detection and agreement over LocalTransport: time from the moment a
// rank goes silent until every survivor has marked it failed (membership
// epoch 1), for 16 and 64 ranks and heartbeat timeouts of 50 and 200 ms
// (period = timeout / 5). Manual time = that latency; one crash per iteration.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "omniplacement/transport/failure_detector.h"
#include "omniplacement/transport/local_transport.h"

namespace {

using Clock = std::chrono::steady_clock;

void BM_FailureDetection(benchmark::State& state) {
  const auto n = static_cast<int32_t>(state.range(0));
  const auto timeout = std::chrono::milliseconds(state.range(1));
  const omni::RankId crashed = n / 2;
  double worst_total = 0;
  for (auto _ : state) {
    std::atomic<int64_t> crash_ns{0};
    std::atomic<int64_t> last_ns{0};
    std::atomic<int> failures{0};
    auto statuses = omni::LocalGroup::run(n, [&](omni::Transport& t) -> omni::Status {
      omni::FailureDetectorOptions o;
      o.timeout = timeout;
      o.period = timeout / 5;
      OMNI_RETURN_IF_ERROR(t.barrier(std::chrono::seconds(30)));
      OMNI_ASSIGN_OR_RETURN(auto d, omni::FailureDetector::start(t, o));
      OMNI_RETURN_IF_ERROR(t.barrier(std::chrono::seconds(30)));
      if (t.rank() == crashed) {
        std::this_thread::sleep_for(timeout);  // a few heartbeats first
        crash_ns = Clock::now().time_since_epoch().count();
        d->stop(false);
        return omni::ok_status();
      }
      if (!d->wait_for_epoch(1, std::chrono::seconds(30))) ++failures;
      const int64_t now = Clock::now().time_since_epoch().count();
      int64_t prev = last_ns.load();
      while (now > prev && !last_ns.compare_exchange_weak(prev, now)) {
      }
      // Stay until everyone has seen it, so no survivor is mistaken for failed.
      return t.barrier(std::chrono::seconds(30));
    });
    for (const auto& s : statuses)
      if (!s.ok()) state.SkipWithError(s.to_string().c_str());
    if (failures) state.SkipWithError("a survivor never saw the failure");
    const double seconds = static_cast<double>(last_ns - crash_ns) * 1e-9;
    worst_total = std::max(worst_total, seconds);
    state.SetIterationTime(seconds);
  }
  state.counters["worst_ms"] = worst_total * 1e3;
  state.SetLabel(std::to_string(n) + " local ranks, heartbeat timeout " + std::to_string(state.range(1)) + " ms");
}
BENCHMARK(BM_FailureDetection)
    ->Args({16, 50})
    ->Args({16, 200})
    ->Args({64, 50})
    ->Args({64, 200})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
