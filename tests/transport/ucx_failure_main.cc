// UcxTransport when a process really dies or stops (label mpi). ctest runs
// it under `mpirun --enable-recovery -np 4`, once per scenario:
//
//   kill   the last rank SIGKILLs itself. Survivors: a receive waiting for it
//          returns UNAVAILABLE at once (its connection broke), their
//          FailureDetectors declare it failed, collectives among the survivors
//          work, sends to it fail, and finalize() does not block.
//   stall  the last rank SIGSTOPs itself for 3 s (a child process resumes
//          it). Survivors: their FailureDetectors declare it failed after the
//          heartbeat timeout; a 256 MB transfer rank 1 had started towards it
//          is taken back (UNAVAILABLE) instead of holding the buffer; the
//          survivors carry on. The stopped rank, once resumed, finds its
//          transports fenced (FAILED_PRECONDITION: its detector found it was
//          away longer than the heartbeat timeout, or a survivor's notice
//          came first): it can neither send nor take part in a collective, on
//          any of its transports.
//   bulk   nobody fails: every rank runs a detector with a short timeout
//          (kBulkTimeout) while the ranks all-reduce large arrays
//          (kBulkBytes per rank; each contribution takes longer to arrive
//          than the timeout, and each peer's heartbeats wait behind it, as
//          the wire delivers a peer's messages in order). No rank may be
//          declared failed: what arrived from a peer meanwhile is evidence
//          that it is alive (Transport::last_arrival).
//
// Every process prints one line "rank R: PASS (...)" or "rank R: FAIL: ..."
// and exits 0 only if every check of its role passed; the killed rank prints
// nothing. ctest runs it through run_expect_pass.py, which wants the PASS
// lines of every rank that should print one.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "omniplacement/core/str_cat.h"
#include "omniplacement/transport/failure_detector.h"
#include "omniplacement/transport/ucx_transport.h"

namespace omni {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

#define CHECK_OR_FAIL(cond, ...)                                                                   \
  do {                                                                                            \
    if (!(cond)) return internal_error(str_cat(__FILE__, ":", __LINE__, ": " #cond ". ", ##__VA_ARGS__)); \
  } while (0)

// Generous, so that two busy loops beside the test cause no false failure;
// the stall lasts well beyond it.
constexpr auto kHeartbeatPeriod = 20ms;
constexpr auto kHeartbeatTimeout = 1000ms;
constexpr auto kStall = 3000ms;

// Joins a thread on every path out of a scope (an early error return included).
struct Joiner {
  std::thread& t;
  ~Joiner() {
    if (t.joinable()) t.join();
  }
};

std::unique_ptr<FailureDetector> start_detector(Transport& t) {
  FailureDetectorOptions o;
  o.period = kHeartbeatPeriod;
  o.timeout = kHeartbeatTimeout;
  auto d = FailureDetector::start(t, o);
  return d.ok() ? std::move(*d) : nullptr;
}

// Survivors' common part: the victim is declared failed, and the group works without it.
Status survivors_carry_on(Transport& t, FailureDetector& detector, RankId victim, Clock::time_point since,
                          std::string& facts) {
  CHECK_OR_FAIL(detector.wait_for_epoch(1, 20s), "the detector never declared a failure");
  facts += str_cat(" declared after ", static_cast<int64_t>(ms_since(since)), " ms;");
  const Membership m = detector.membership();
  std::string set;
  for (RankId r : m.failed) set += str_cat(set.empty() ? "" : ", ", r);
  CHECK_OR_FAIL(m.failed == std::vector<RankId>{victim}, "the failed set is {", set, "}");
  CHECK_OR_FAIL(t.is_failed(victim), "the transport was not marked");
  std::vector<int64_t> sum = {t.rank(), 1};
  OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(sum), ReduceOp::kSum, 30s).with_context("survivors' all_reduce"));
  const int64_t n = t.size() - 1;
  CHECK_OR_FAIL(sum[0] == n * (n - 1) / 2 && sum[1] == n, "survivors' sum ", sum[0], ", ", sum[1]);
  std::vector<std::byte> one(8, std::byte{7});
  const Status to_victim = t.send(victim, 3, one, 5s);
  CHECK_OR_FAIL(to_victim.code() == StatusCode::kUnavailable, "send to the failed rank returned ", to_victim);
  return ok_status();
}

Status run_kill(Transport& t, std::string& facts) {
  const RankId victim = t.size() - 1;
  auto detector = start_detector(t);
  CHECK_OR_FAIL(detector != nullptr);
  OMNI_RETURN_IF_ERROR(t.barrier(30s));
  if (t.rank() == victim) {
    std::this_thread::sleep_for(300ms);
    raise(SIGKILL);
  }
  const auto start = Clock::now();
  if (t.rank() == 0) {
    // A receive waiting for the victim when it dies ends at once.
    std::vector<std::byte> buf(16);
    const Status s = t.recv(victim, 5, buf, 60s);
    CHECK_OR_FAIL(s.code() == StatusCode::kUnavailable, "recv from the killed rank returned ", s);
    CHECK_OR_FAIL(ms_since(start) < 20000, "recv from the killed rank took ", ms_since(start), " ms");
    facts += str_cat(" recv ended ", static_cast<int64_t>(ms_since(start)), " ms after the barrier (",
                     s.message().find("connection") != std::string::npos ? "connection lost" : "marked failed", ");");
  }
  OMNI_RETURN_IF_ERROR(survivors_carry_on(t, *detector, victim, start, facts));
  detector->stop();
  return ok_status();
}

Status run_stall(Transport& t, Transport& side, std::string& facts) {
  const RankId victim = t.size() - 1;
  constexpr size_t kBig = size_t{256} << 20;
  auto detector = start_detector(t);
  CHECK_OR_FAIL(detector != nullptr);
  std::vector<std::byte> payload;
  if (t.rank() == 1) payload.assign(kBig, std::byte{0x5a});  // before the barrier: the send starts at once
  OMNI_RETURN_IF_ERROR(t.barrier(30s));
  if (t.rank() == victim) {
    // Take part in rank 1's big transfer, then stop in the middle of it.
    std::thread receiver([&] { t.recv_message(1, 9, 60s).status().ignore(); });
    Joiner join_receiver{receiver};
    std::this_thread::sleep_for(50ms);
    const pid_t self = getpid();
    const pid_t waker = fork();
    if (waker == 0) {  // async-signal-safe calls only
      usleep(static_cast<useconds_t>(std::chrono::microseconds(kStall).count()));
      kill(self, SIGCONT);
      _exit(0);
    }
    const auto stopped_at = Clock::now();
    raise(SIGSTOP);
    facts += str_cat(" stopped for ", static_cast<int64_t>(ms_since(stopped_at)), " ms;");
    waitpid(waker, nullptr, 0);
    // Fenced: it learns it was declared failed, and nothing gets through.
    const auto resumed = Clock::now();
    while (t.fence_status().ok() && ms_since(resumed) < 10000) std::this_thread::sleep_for(5ms);
    const Status fenced = t.fence_status();
    CHECK_OR_FAIL(fenced.code() == StatusCode::kFailedPrecondition, "not fenced 10 s after resuming: ", fenced);
    CHECK_OR_FAIL(fenced.message().find("fenced") != std::string::npos, fenced.message());
    facts += str_cat(" fenced ", static_cast<int64_t>(ms_since(resumed)), " ms after resuming (", fenced.message(), ");");
    std::vector<std::byte> stale(100, std::byte{1});
    const Status sent = t.send(0, 4, stale, 2s);
    CHECK_OR_FAIL(sent.code() == StatusCode::kFailedPrecondition, "a send after fencing returned ", sent);
    std::vector<int64_t> x = {1};
    const Status coll = t.all_reduce(std::span<int64_t>(x), ReduceOp::kSum, 2s);
    CHECK_OR_FAIL(coll.code() == StatusCode::kFailedPrecondition, "a collective after fencing returned ", coll);
    // Every transport of the process is out, not only the detector's.
    std::vector<std::byte> one(1);
    const Status side_sent = side.send(0, 1, one, 2s);
    CHECK_OR_FAIL(side_sent.code() == StatusCode::kFailedPrecondition || side_sent.code() == StatusCode::kUnavailable,
                  "a send on another transport after fencing returned ", side_sent);
    receiver.join();
    detector->stop(false);
    return ok_status();
  }
  const auto start = Clock::now();
  std::thread big;
  Status big_status;
  double big_ms = 0;
  Joiner join_big{big};
  if (t.rank() == 1) {
    big = std::thread([&] {
      const auto t0 = Clock::now();
      big_status = t.send(victim, 9, payload, 60s);
      big_ms = ms_since(t0);
    });
  }
  OMNI_RETURN_IF_ERROR(survivors_carry_on(t, *detector, victim, start, facts));
  if (big.joinable()) {
    big.join();
    // Taken back once the victim was declared failed, not held until the 60 s deadline.
    CHECK_OR_FAIL(big_status.code() == StatusCode::kUnavailable, "the 256 MB send returned ", big_status);
    CHECK_OR_FAIL(big_ms < 20000, "the 256 MB send took ", big_ms, " ms");
    facts += str_cat(" 256 MB send ended after ", static_cast<int64_t>(big_ms), " ms (", big_status.message(), ");");
  }
  detector->stop();
  return ok_status();
}

// Short enough that one large contribution takes longer to arrive (a few
// hundred ms for kBulkBytes from each of 3 peers on 2 shared cores).
constexpr auto kBulkPeriod = 10ms;
constexpr auto kBulkTimeout = 100ms;
constexpr size_t kBulkBytes = size_t{8} << 20;
constexpr int kBulkRounds = 8;

Status run_bulk(Transport& t, std::string& facts) {
  FailureDetectorOptions o;
  o.period = kBulkPeriod;
  o.timeout = kBulkTimeout;
  OMNI_ASSIGN_OR_RETURN(auto detector, FailureDetector::start(t, o));
  OMNI_RETURN_IF_ERROR(t.barrier(30s).with_context("barrier after the detectors started"));
  std::vector<int64_t> data(kBulkBytes / sizeof(int64_t));
  double slowest_ms = 0;
  for (int round = 0; round < kBulkRounds; ++round) {
    std::fill(data.begin(), data.end(), int64_t{t.rank() + round});
    const auto t0 = Clock::now();
    OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(data), ReduceOp::kSum, 60s)
                             .with_context(str_cat("bulk all_reduce round ", round)));
    slowest_ms = std::max(slowest_ms, ms_since(t0));
    const int64_t n = t.size();
    const int64_t want = n * (n - 1) / 2 + n * round;
    CHECK_OR_FAIL(data.front() == want && data.back() == want, "round ", round, ": sum ", data.front(), ", want ", want);
  }
  OMNI_RETURN_IF_ERROR(t.barrier(30s).with_context("barrier after the bulk rounds"));
  const Membership m = detector->membership();
  std::string set;
  for (RankId r : m.failed) set += str_cat(set.empty() ? "" : ", ", r);
  detector->stop();
  CHECK_OR_FAIL(m.failed.empty(), "live ranks declared failed during large all-reduces: {", set, "}");
  OMNI_RETURN_IF_ERROR(t.fence_status());
  facts += str_cat(" slowest all_reduce of ", kBulkBytes >> 20, " MiB ", static_cast<int64_t>(slowest_ms),
                   " ms, heartbeat timeout ", kBulkTimeout.count(), " ms; nobody declared;");
  return ok_status();
}

}  // namespace
}  // namespace omni

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  const std::string scenario = argc > 1 ? argv[1] : "";
  if (scenario != "kill" && scenario != "stall" && scenario != "bulk") {
    std::fprintf(stderr, "usage: %s kill|stall|bulk (under mpirun --enable-recovery -np 4)\n", argv[0]);
    return 2;
  }
  const omni::Status init = omni::UcxTransport::init(&argc, &argv, 60s);
  if (!init.ok()) {
    std::fprintf(stderr, "FAIL: %s\n", init.to_string().c_str());
    return 1;
  }
  omni::Status result;
  std::string facts;
  int rank = -1;
  {
    auto t = omni::UcxTransport::create_world(60s);
    auto side = omni::UcxTransport::create_world(60s);
    if (!t.ok() || !side.ok()) {
      result = t.ok() ? side.status() : t.status();
    } else if ((*t)->size() < 3) {
      result = omni::invalid_argument_error("needs at least 3 processes");
    } else {
      rank = (*t)->rank();
      result = scenario == "kill"    ? omni::run_kill(**t, facts)
               : scenario == "stall" ? omni::run_stall(**t, **side, facts)
                                     : omni::run_bulk(**t, facts);
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  const omni::Status fin = omni::UcxTransport::finalize();
  facts += omni::str_cat(" finalize ", static_cast<int64_t>(omni::ms_since(t0)), " ms");
  if (result.ok() && !fin.ok()) result = fin;
  if (result.ok()) {
    std::printf("rank %d: PASS (%s:%s)\n", rank, scenario.c_str(), facts.c_str());
  } else {
    std::printf("rank %d: FAIL: %s\n", rank, result.to_string().c_str());
  }
  std::fflush(stdout);
  return result.ok() ? 0 : 1;
}
