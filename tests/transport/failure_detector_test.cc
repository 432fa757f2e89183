#include "omniplacement/transport/failure_detector.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "omniplacement/core/str_cat.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

using namespace std::chrono_literals;

// Generous timeouts: these tests check agreement, not speed, and must not see
// false failures on a loaded 2-core CI machine.
FailureDetectorOptions test_options() {
  FailureDetectorOptions o;
  o.period = 5ms;
  o.timeout = 500ms;
  return o;
}

// Runs n ranks: each starts a detector after a barrier, then `body`.
std::vector<Status> run_ranks(int32_t n, const std::function<Status(Transport&, FailureDetector&)>& body) {
  return LocalGroup::run(n, [&](Transport& t) -> Status {
    OMNI_RETURN_IF_ERROR(t.barrier(10s));
    OMNI_ASSIGN_OR_RETURN(auto detector, FailureDetector::start(t, test_options()));
    return body(t, *detector);
  });
}

Status expect_membership(FailureDetector& d, Transport& t, const std::vector<RankId>& failed) {
  if (!d.wait_for_epoch(failed.size(), 10s)) {
    return deadline_exceeded_error(str_cat("rank ", t.rank(), ": membership epoch stayed at ", d.membership().epoch));
  }
  Membership m = d.membership();
  if (m.failed != failed || t.failed_ranks() != failed) {
    return internal_error(str_cat("rank ", t.rank(), ": disagreeing failed set (", m.failed.size(), " ranks)"));
  }
  return ok_status();
}

TEST(FailureDetectorTest, SurvivorsAgreeOnACrashedRankAndKeepCollectives) {
  constexpr RankId kCrashed = 5;
  auto statuses = run_ranks(8, [&](Transport& t, FailureDetector& d) -> Status {
    if (t.rank() == kCrashed) {
      std::this_thread::sleep_for(50ms);
      d.stop(/*graceful=*/false);  // goes silent, like a dead process
      return ok_status();
    }
    OMNI_RETURN_IF_ERROR(expect_membership(d, t, {kCrashed}));
    // Collectives now run among the 7 survivors.
    std::vector<int64_t> one = {1};
    OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(one), ReduceOp::kSum, 10s));
    if (one[0] != 7) return internal_error(str_cat("rank ", t.rank(), ": survivor count ", one[0]));
    // Exactly one survivor (the crashed rank's successor) detected it.
    std::vector<int64_t> detections = {d.stats().detections};
    OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(detections), ReduceOp::kSum, 10s));
    if (detections[0] != 1) return internal_error(str_cat("detections: ", detections[0]));
    return t.barrier(10s);
  });
  for (size_t r = 0; r < statuses.size(); ++r) EXPECT_TRUE(statuses[r].ok()) << "rank " << r << ": " << statuses[r];
}

TEST(FailureDetectorTest, AdjacentCrashesAndAReportedFailureSpread) {
  auto statuses = run_ranks(6, [&](Transport& t, FailureDetector& d) -> Status {
    if (t.rank() == 2 || t.rank() == 3 || t.rank() == 0) {
      std::this_thread::sleep_for(30ms);
      d.stop(false);
      return ok_status();
    }
    // The engine on rank 4 learns of rank 0's failure first.
    if (t.rank() == 4) OMNI_RETURN_IF_ERROR(d.report_failure(0));
    OMNI_RETURN_IF_ERROR(expect_membership(d, t, {0, 2, 3}));
    return t.barrier(10s);
  });
  for (size_t r = 0; r < statuses.size(); ++r) EXPECT_TRUE(statuses[r].ok()) << "rank " << r << ": " << statuses[r];
}

TEST(FailureDetectorTest, GracefulStopsAreNotFailures) {
  std::atomic<int64_t> detections{0};
  auto statuses = run_ranks(4, [&](Transport& t, FailureDetector& d) -> Status {
    // Ranks leave one after another, each later than the heartbeat timeout.
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + 600 * t.rank()));
    d.stop(/*graceful=*/true);
    detections += d.stats().detections;
    if (d.membership().epoch != 0) return internal_error(str_cat("rank ", t.rank(), " saw a failure"));
    return ok_status();
  });
  for (size_t r = 0; r < statuses.size(); ++r) EXPECT_TRUE(statuses[r].ok()) << "rank " << r << ": " << statuses[r];
  EXPECT_EQ(detections.load(), 0);
}

TEST(FailureDetectorTest, CallbackSeesEachNewMembership) {
  auto statuses = LocalGroup::run(3, [&](Transport& t) -> Status {
    std::vector<uint64_t> seen;
    std::mutex mu;
    FailureDetectorOptions o = test_options();
    o.on_change = [&](const Membership& m) {
      std::lock_guard<std::mutex> lock(mu);
      seen.push_back(m.epoch);
    };
    OMNI_RETURN_IF_ERROR(t.barrier(10s));
    OMNI_ASSIGN_OR_RETURN(auto d, FailureDetector::start(t, o));
    if (t.rank() == 1) {
      d->stop(false);
      return ok_status();
    }
    OMNI_RETURN_IF_ERROR(expect_membership(*d, t, {1}));
    d->stop();
    std::lock_guard<std::mutex> lock(mu);
    if (seen != std::vector<uint64_t>{1}) return internal_error(str_cat("rank ", t.rank(), ": callbacks ", seen.size()));
    return ok_status();
  });
  for (size_t r = 0; r < statuses.size(); ++r) EXPECT_TRUE(statuses[r].ok()) << "rank " << r << ": " << statuses[r];
}

TEST(FailureDetectorTest, RejectsBadOptionsAndReports) {
  auto group = LocalGroup::create(2);
  ASSERT_TRUE(group.ok());
  FailureDetectorOptions bad;
  bad.period = 0ms;
  EXPECT_EQ(FailureDetector::start(group->transport(0), bad).status().code(), StatusCode::kInvalidArgument);
  bad = FailureDetectorOptions{};
  bad.timeout = 1ms;
  bad.period = 10ms;
  EXPECT_FALSE(FailureDetector::start(group->transport(0), bad).ok());
  bad = FailureDetectorOptions{};
  bad.tag = -1;
  EXPECT_FALSE(FailureDetector::start(group->transport(0), bad).ok());
  FailureDetectorOptions o = test_options();
  auto d = FailureDetector::start(group->transport(0), o);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->report_failure(0).code(), StatusCode::kInvalidArgument);  // itself
  EXPECT_EQ((*d)->report_failure(2).code(), StatusCode::kInvalidArgument);  // out of range
  EXPECT_TRUE((*d)->report_failure(1).ok());
  EXPECT_EQ((*d)->membership().failed, std::vector<RankId>{1});
  EXPECT_TRUE(group->transport(0).is_failed(1));
  (*d)->stop();
}

// A rank whose detector is silenced for longer than the timeout (a stalled
// rank simulated on threads) is declared failed by the others and, when it
// comes back, finds its transport fenced; it declares nobody itself.
TEST(FailureDetectorTest, SilencedRankIsDeclaredFailedAndFencedWhenItComesBack) {
  constexpr RankId kStalled = 2;
  auto statuses = run_ranks(4, [&](Transport& t, FailureDetector& d) -> Status {
    if (t.rank() == kStalled) {
      d.silence_for(2s);
      std::this_thread::sleep_for(2s);  // the rank's own thread is away too
      // Back: the others declared it failed meanwhile (timeout 500 ms).
      for (int i = 0; i < 200 && t.fence_status().ok(); ++i) std::this_thread::sleep_for(10ms);
      const Status fenced = t.fence_status();
      if (fenced.code() != StatusCode::kFailedPrecondition || fenced.message().find("fenced") == std::string::npos) {
        return internal_error(str_cat("rank ", t.rank(), ": not fenced after the stall: ", fenced));
      }
      std::vector<int64_t> x = {1};
      const Status coll = t.all_reduce(std::span<int64_t>(x), ReduceOp::kSum, 1s);
      if (coll.code() != StatusCode::kFailedPrecondition) {
        return internal_error(str_cat("rank ", t.rank(), ": a collective after fencing returned ", coll));
      }
      if (d.stats().detections != 0) {
        return internal_error(str_cat("rank ", t.rank(), ": the stalled rank declared ", d.stats().detections,
                                      " other rank(s) failed"));
      }
      return ok_status();
    }
    OMNI_RETURN_IF_ERROR(expect_membership(d, t, {kStalled}));
    std::vector<int64_t> one = {1};
    OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(one), ReduceOp::kSum, 10s));
    if (one[0] != 3) return internal_error(str_cat("rank ", t.rank(), ": survivor count ", one[0]));
    return ok_status();
  });
  for (const Status& s : statuses) EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace omni
