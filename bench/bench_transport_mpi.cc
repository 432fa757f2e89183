// omniplace_transport_bench: transport figures of every backend in one run,
// next to memcpy on the same machine (docs/BENCHMARKS.md, "Transport").
//
//   mpirun -np 2 build/bin/omniplace_transport_bench      # add --allow-run-as-root as root
//
// For each message size, repetitions alternate: rank 0 measures memcpy and
// LocalTransport (two ranks as threads of rank 0's process) while the other
// processes wait (sleeping, not spinning), then rank 0 sends to rank 1 over
// MpiTransport, then over UcxTransport (when built). One message at a time;
// each figure is the best repetition. Round trip: rank 0 and rank 1 bounce a
// small message (the size of a heartbeat, of a demo request). All-reduce: sum
// of doubles over every process, and over as many LocalTransport threads.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "omniplacement/transport/local_transport.h"
#include "omniplacement/transport/mpi_transport.h"
#include "omniplacement/transport/ucx_transport.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr size_t kMiB = size_t{1} << 20;
const std::vector<size_t> kMessageSizes = {1 * kMiB, 4 * kMiB, 16 * kMiB, 64 * kMiB, 256 * kMiB};
const std::vector<size_t> kReduceSizes = {8, 1024, 64 * 1024, 1024 * 1024};
const std::vector<size_t> kPingSizes = {8, 1024, 64 * 1024};

// Messages per repetition: about 512 MB moved, at least 2.
int messages_for(size_t bytes) { return static_cast<int>(std::max<size_t>(2, (512 * kMiB) / bytes)); }
int reduces_for(size_t bytes) { return bytes >= kMiB ? 50 : bytes >= 64 * 1024 ? 300 : 2000; }
constexpr int kRepetitions = 5;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// CPU seconds used by this process so far (all its threads).
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// One repetition: GB moved per wall-clock second, and per CPU second of the
// processes involved. On a machine shared with other work the wall-clock rate
// depends on how much of a core the copying thread got; the CPU rate does not
// (it shows the cost of the copies themselves, and of MPI's polling).
struct Rate {
  double wall = 0;
  double cpu = 0;
  void keep_best(const Rate& r) {
    wall = std::max(wall, r.wall);
    cpu = std::max(cpu, r.cpu);
  }
};

Rate measure(size_t bytes, int messages, const std::function<void()>& one) {
  const double cpu0 = process_cpu_seconds();
  const auto start = Clock::now();
  for (int i = 0; i < messages; ++i) one();
  const double gb = static_cast<double>(bytes) * messages / 1e9;
  return {gb / seconds_since(start), gb / (process_cpu_seconds() - cpu0)};
}

// Buffers are allocated for each run, as the LocalTransport run does, so
// that both copy between equally fresh pages.
Rate memcpy_rate(size_t bytes) {
  std::vector<std::byte> src(bytes, std::byte{1}), dst(bytes, std::byte{0});
  return measure(bytes, messages_for(bytes), [&] {
    std::memcpy(dst.data(), src.data(), bytes);
    asm volatile("" : : "r"(dst.data()) : "memory");
  });
}

bool check(const omni::Status& s, const char* what) {
  if (!s.ok()) std::fprintf(stderr, "%s: %s\n", what, s.to_string().c_str());
  return s.ok();
}

Rate local_send_rate(size_t bytes) {
  auto group = omni::LocalGroup::create(2);
  std::vector<std::byte> src(bytes, std::byte{1}), dst(bytes, std::byte{0});
  const int messages = messages_for(bytes);
  std::thread receiver([&] {
    for (int i = 0; i < messages; ++i) {
      if (!check(group->transport(1).recv(0, 1, dst, 60s), "local recv")) return;
    }
  });
  const Rate rate = measure(bytes, messages, [&] { check(group->transport(0).send(1, 1, src, 60s), "local send"); });
  receiver.join();
  return rate;
}

// Rank 0 sends to rank 1 over a process transport; the CPU rate counts both processes.
Rate process_send_rate(omni::Transport& t, size_t bytes, std::vector<std::byte>& buf) {
  const int messages = messages_for(bytes);
  const double cpu0 = process_cpu_seconds();
  Rate rate;
  if (t.rank() == 0) {
    rate = measure(bytes, messages, [&] { check(t.send(1, 1, buf, 60s), "send"); });
  } else if (t.rank() == 1) {
    for (int m = 0; m < messages; ++m) check(t.recv(0, 1, buf, 60s), "recv");
  }
  std::vector<double> cpu = {t.rank() < 2 ? process_cpu_seconds() - cpu0 : 0.0};
  check(t.all_reduce(std::span<double>(cpu), omni::ReduceOp::kSum, 60s), "cpu all_reduce");
  rate.cpu = static_cast<double>(bytes) * messages / 1e9 / cpu[0];
  return rate;
}

// Microseconds per round trip of a `bytes` message between ranks 0 and 1
// (every rank runs this; the others wait in the barriers).
double round_trip_us(omni::Transport& t, size_t bytes) {
  std::vector<std::byte> buf(bytes, std::byte{3});
  const int n = bytes >= 64 * 1024 ? 200 : 1000;
  double best = 1e30;
  for (int rep = 0; rep < kRepetitions; ++rep) {
    if (!check(t.barrier(60s), "barrier")) return -1;
    const auto start = Clock::now();
    for (int i = 0; i < n && t.rank() < 2; ++i) {
      if (t.rank() == 0) {
        if (!check(t.send(1, 2, buf, 60s), "ping") || !check(t.recv(1, 2, buf, 60s), "pong")) return -1;
      } else {
        if (!check(t.recv(0, 2, buf, 60s), "ping") || !check(t.send(0, 2, buf, 60s), "pong")) return -1;
      }
    }
    best = std::min(best, seconds_since(start) / n * 1e6);
  }
  return best;
}

// Microseconds per all-reduce of `bytes` over `t` (every rank runs this).
double all_reduce_us(omni::Transport& t, size_t bytes) {
  std::vector<double> v(bytes / sizeof(double), 1.0);
  const int n = reduces_for(bytes);
  double best = 1e30;
  for (int rep = 0; rep < kRepetitions; ++rep) {
    if (!check(t.barrier(60s), "barrier")) return -1;
    const auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
      if (!check(t.all_reduce(std::span<double>(v), omni::ReduceOp::kSum, 60s), "all_reduce")) return -1;
    }
    best = std::min(best, seconds_since(start) / n * 1e6);
  }
  return best;
}

double local_all_reduce_us(int32_t ranks, size_t bytes) {
  double us = 0;
  omni::LocalGroup::run(ranks, [&](omni::Transport& t) -> omni::Status {
    const double mine = all_reduce_us(t, bytes);
    if (t.rank() == 0) us = mine;
    return omni::ok_status();
  });
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  if (!check(omni::MpiTransport::init(&argc, &argv), "MPI init")) return 1;
  // UCX is bootstrapped over the same MPI (which it then leaves to MpiTransport::finalize).
  const bool with_ucx = omni::UcxTransport::available();
  if (with_ucx && !check(omni::UcxTransport::init(&argc, &argv, 60s), "UCX init")) return 1;
  int status = 0;
  {
    auto mpi_world = omni::MpiTransport::create_world(60s);
    if (!check(mpi_world.status(), "MpiTransport::create_world")) return 1;
    std::unique_ptr<omni::Transport> ucx;
    if (with_ucx) {
      auto w = omni::UcxTransport::create_world(60s);
      if (!check(w.status(), "UcxTransport::create_world")) return 1;
      ucx = std::move(*w);
    }
    omni::Transport& t = **mpi_world;
    if (t.size() < 2) {
      std::fprintf(stderr, "run under mpirun with at least 2 processes\n");
      return 1;
    }
    const bool lead = t.rank() == 0;
    // Repetitions of memcpy, LocalTransport, MpiTransport and UcxTransport
    // alternate, so that the load of a shared machine affects all alike; each
    // figure is the best repetition.
    std::vector<Rate> memcpy_rates(kMessageSizes.size()), local_rates(kMessageSizes.size()),
        mpi_rates(kMessageSizes.size()), ucx_rates(kMessageSizes.size());
    for (size_t i = 0; i < kMessageSizes.size(); ++i) {
      const size_t bytes = kMessageSizes[i];
      std::vector<std::byte> buf(t.rank() < 2 ? bytes : 0, std::byte{1});
      for (int rep = 0; rep < kRepetitions; ++rep) {
        if (lead) {
          memcpy_rates[i].keep_best(memcpy_rate(bytes));
          local_rates[i].keep_best(local_send_rate(bytes));
        }
        // The other processes wait here (the transports' waits sleep).
        if (!check(t.barrier(std::chrono::minutes(5)), "barrier")) return 1;
        mpi_rates[i].keep_best(process_send_rate(t, bytes, buf));
        if (ucx) ucx_rates[i].keep_best(process_send_rate(*ucx, bytes, buf));
      }
    }
    std::vector<double> mpi_rtt, ucx_rtt;
    for (size_t bytes : kPingSizes) {
      mpi_rtt.push_back(round_trip_us(t, bytes));
      ucx_rtt.push_back(ucx ? round_trip_us(*ucx, bytes) : 0.0);
    }
    std::vector<double> local_us, mpi_us, ucx_us;
    if (lead) {
      for (size_t bytes : kReduceSizes) local_us.push_back(local_all_reduce_us(t.size(), bytes));
    }
    if (!check(t.barrier(std::chrono::minutes(5)), "barrier")) return 1;
    for (size_t bytes : kReduceSizes) {
      mpi_us.push_back(all_reduce_us(t, bytes));
      ucx_us.push_back(ucx ? all_reduce_us(*ucx, bytes) : 0.0);
    }
    if (lead) {
      std::printf("Point-to-point, rank 0 -> rank 1, best of %d alternating repetitions.\n", kRepetitions);
      std::printf("GB/s (1e9 bytes) per wall-clock second | per CPU second of the processes involved\n");
      std::printf("%10s | %8s %8s %8s %8s %7s | %8s %8s %8s %8s %7s\n", "bytes", "memcpy", "local", "mpi", "ucx",
                  "loc/mc", "memcpy", "local", "mpi", "ucx", "loc/mc");
      for (size_t i = 0; i < kMessageSizes.size(); ++i) {
        const Rate& m = memcpy_rates[i];
        const Rate& l = local_rates[i];
        const Rate& p = mpi_rates[i];
        const Rate& u = ucx_rates[i];
        std::printf("%10zu | %8.2f %8.2f %8.2f %8.2f %6.0f%% | %8.2f %8.2f %8.2f %8.2f %6.0f%%\n", kMessageSizes[i],
                    m.wall, l.wall, p.wall, u.wall, 100 * l.wall / m.wall, m.cpu, l.cpu, p.cpu, u.cpu,
                    100 * l.cpu / m.cpu);
      }
      std::printf("\nRound trip rank 0 <-> rank 1, microseconds (wall), best of %d\n", kRepetitions);
      std::printf("%10s %12s %12s\n", "bytes", "mpi", "ucx");
      for (size_t i = 0; i < kPingSizes.size(); ++i) {
        std::printf("%10zu %12.1f %12.1f\n", kPingSizes[i], mpi_rtt[i], ucx_rtt[i]);
      }
      std::printf("\nAll-reduce (sum of doubles) over %d ranks, microseconds per call (wall), best of %d\n",
                  t.size(), kRepetitions);
      std::printf("%10s %12s %12s %12s\n", "bytes", "local", "mpi", "ucx");
      for (size_t i = 0; i < kReduceSizes.size(); ++i) {
        std::printf("%10zu %12.1f %12.1f %12.1f\n", kReduceSizes[i], local_us[i], mpi_us[i], ucx_us[i]);
      }
    }
    const auto bad = [](const std::vector<double>& v) {
      return std::any_of(v.begin(), v.end(), [](double x) { return x < 0; });
    };
    if (bad(mpi_us) || bad(ucx_us) || bad(mpi_rtt) || bad(ucx_rtt)) status = 1;
  }
  if (!check(omni::UcxTransport::finalize(), "UCX finalize")) return 1;
  if (!check(omni::MpiTransport::finalize(), "MPI finalize")) return 1;
  return status;
}
