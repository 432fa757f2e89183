// Transport figures (docs/BENCHMARKS.md, "Transport"): memcpy bandwidth (the
// physical limit of an in-process transfer), LocalTransport point-to-point
// bandwidth for 1 MB to 256 MB, and LocalTransport all-reduce latency for
// 8 B to 1 MB. The MPI figures come from bench/bench_transport_mpi.cc under
// mpirun. Bytes/s are the message bytes moved per second.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "omniplacement/transport/local_transport.h"

namespace {

using namespace std::chrono_literals;

constexpr int64_t kMiB = 1 << 20;

// Buffers whose pages are already mapped, so that first-touch page faults are
// not measured as copy time.
std::vector<std::byte> touched(size_t bytes, std::byte value) { return std::vector<std::byte>(bytes, value); }

void BM_Memcpy(benchmark::State& state) {
  const auto bytes = static_cast<size_t>(state.range(0));
  std::vector<std::byte> src = touched(bytes, std::byte{1});
  std::vector<std::byte> dst = touched(bytes, std::byte{0});
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
}
BENCHMARK(BM_Memcpy)->RangeMultiplier(4)->Range(kMiB, 256 * kMiB)->Unit(benchmark::kMillisecond)->UseRealTime();

// Rank 0 (the benchmark thread) sends, rank 1 (a thread) receives; one
// message per iteration, sent only once the previous one was received.
void BM_LocalSendRecv(benchmark::State& state) {
  const auto bytes = static_cast<size_t>(state.range(0));
  auto group = omni::LocalGroup::create(2);
  std::vector<std::byte> src = touched(bytes, std::byte{1});
  std::vector<std::byte> dst = touched(bytes, std::byte{0});
  const int64_t count = state.max_iterations;
  omni::Status received;
  std::thread receiver([&] {
    for (int64_t i = 0; i < count && received.ok(); ++i) received = group->transport(1).recv(0, 1, dst, 60s);
  });
  omni::Status sent;
  for (auto _ : state) {
    sent = group->transport(0).send(1, 1, src, 60s);
    if (!sent.ok()) break;
  }
  receiver.join();
  if (!sent.ok() || !received.ok()) state.SkipWithError((sent.ok() ? received : sent).to_string().c_str());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
}
BENCHMARK(BM_LocalSendRecv)->RangeMultiplier(4)->Range(kMiB, 256 * kMiB)->Unit(benchmark::kMillisecond)->UseRealTime();

// All-reduce (sum of doubles) over range(1) ranks, each a thread; the peers
// run exactly as many all-reduces as the benchmark thread.
void BM_LocalAllReduce(benchmark::State& state) {
  const auto bytes = static_cast<size_t>(state.range(0));
  const auto num_ranks = static_cast<int32_t>(state.range(1));
  auto group = omni::LocalGroup::create(num_ranks);
  const int64_t count = state.max_iterations;
  std::vector<omni::Status> peer_status(static_cast<size_t>(num_ranks));
  std::vector<std::thread> peers;
  for (int32_t r = 1; r < num_ranks; ++r) {
    peers.emplace_back([&, r] {
      std::vector<double> v(bytes / sizeof(double), 1.0);
      for (int64_t i = 0; i < count; ++i) {
        omni::Status s = group->transport(r).all_reduce(std::span<double>(v), omni::ReduceOp::kSum, 60s);
        if (!s.ok()) {
          peer_status[static_cast<size_t>(r)] = s;
          return;
        }
      }
    });
  }
  std::vector<double> v(bytes / sizeof(double), 1.0);
  omni::Status mine;
  for (auto _ : state) {
    mine = group->transport(0).all_reduce(std::span<double>(v), omni::ReduceOp::kSum, 60s);
    if (!mine.ok()) break;
  }
  for (auto& p : peers) p.join();
  for (const omni::Status& s : peer_status) {
    if (!s.ok()) mine = s;
  }
  if (!mine.ok()) state.SkipWithError(mine.to_string().c_str());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
  state.SetLabel(std::to_string(num_ranks) + " ranks");
}
BENCHMARK(BM_LocalAllReduce)
    ->ArgsProduct({{8, 1 << 10, 64 << 10, 1 << 20}, {2, 4}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
