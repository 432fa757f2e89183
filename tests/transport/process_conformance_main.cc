// The conformance suite on the process-based transports. Built twice, as
// transport_mpi_test (MpiTransport) and transport_ucx_test (UcxTransport,
// OMNI_CONFORMANCE_UCX); ctest runs each under mpirun with 4 processes
// (label mpi). Every rank runs every case in the same order on a fresh world
// transport. Rank 0 prints the full gtest report, the other ranks only their
// failures; the exit code is non-zero on every rank if any rank failed.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "omniplacement/transport/mpi_transport.h"
#include "omniplacement/transport/ucx_transport.h"
#include "transport/conformance.h"

#if !OMNI_CONFORMANCE_UCX
#include <mpi.h>
#endif

namespace omni {
namespace {

using namespace std::chrono_literals;

#if OMNI_CONFORMANCE_UCX
using Backend = UcxTransport;
#else
using Backend = MpiTransport;
#endif

// Kept for the whole run: lines the ranks up between cases, and votes at the end.
Transport* g_control = nullptr;

class ProcessConformance : public ::testing::TestWithParam<size_t> {};

TEST_P(ProcessConformance, PassesOnEveryRank) {
  const auto& c = testing::conformance_cases()[GetParam()];
  {
    StatusOr<std::unique_ptr<Backend>> t = Backend::create_world(60s);
    EXPECT_TRUE(t.ok()) << t.status();
    // Every rank holds the new transport before any case starts (a case that
    // marks a rank failed fences it; that must not reach a rank still
    // creating the transport). No early return: every rank must reach both
    // barriers, or the next cases would pair different barriers.
    const Status ready = g_control->barrier(120s);
    EXPECT_TRUE(ready.ok()) << ready;
    if (t.ok() && ready.ok() && (*t)->size() >= c.min_ranks) {
      const Status s = c.body(**t);
      EXPECT_TRUE(s.ok()) << "rank " << (*t)->rank() << ": " << s;
    }
  }
  // Cases must not bleed into each other: everyone finishes before the next.
  const Status lined_up = g_control->barrier(120s);
  EXPECT_TRUE(lined_up.ok()) << lined_up;
}

INSTANTIATE_TEST_SUITE_P(Cases, ProcessConformance,
                         ::testing::Range<size_t>(0, testing::conformance_cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return testing::conformance_cases()[info.param].name;
                         });

TEST(ProcessTransport, RanksAreDistinctAndCoverTheJob) {
  StatusOr<std::unique_ptr<Backend>> t = Backend::create_world(60s);
  ASSERT_TRUE(t.ok()) << t.status();  // every rank fails alike here (nothing is failed yet)
  const int32_t n = (*t)->size();
  std::vector<std::byte> mine(sizeof(int32_t));
  const int32_t r = (*t)->rank();
  std::memcpy(mine.data(), &r, sizeof(r));
  std::vector<std::byte> all(mine.size() * static_cast<size_t>(n));
  ASSERT_TRUE((*t)->all_gather(mine, all, 60s).ok());
  for (int32_t i = 0; i < n; ++i) {
    int32_t got = -1;
    std::memcpy(&got, all.data() + static_cast<size_t>(i) * sizeof(int32_t), sizeof(got));
    EXPECT_EQ(got, i);
  }
  EXPECT_TRUE(Backend::available());
  EXPECT_TRUE((*t)->fence_status().ok()) << (*t)->fence_status();
#if OMNI_CONFORMANCE_UCX
  EXPECT_EQ((*t)->backend(), "ucx");
#else
  EXPECT_EQ((*t)->backend(), "mpi");
  int rank = 0, size = 0, level = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Query_thread(&level);
  EXPECT_EQ(r, rank);
  EXPECT_EQ(n, size);
  EXPECT_EQ(level, MPI_THREAD_MULTIPLE);
#endif
  ASSERT_TRUE(g_control->barrier(120s).ok());
}

// Ranks other than 0 report only their failed checks, prefixed with the rank.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, result.file_name() ? result.file_name() : "?",
                 result.line_number(), result.summary());
  }

 private:
  int rank_;
};

}  // namespace
}  // namespace omni

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  ::testing::InitGoogleTest(&argc, argv);
#if OMNI_CONFORMANCE_UCX
  const omni::Status init = omni::UcxTransport::init(&argc, &argv, 60s);
#else
  const omni::Status init = omni::MpiTransport::init(&argc, &argv);
#endif
  if (!init.ok()) {
    std::fprintf(stderr, "%s\n", init.to_string().c_str());
    return 1;
  }
  int any_failed = 1;
  {
    auto control = omni::Backend::create_world(60s);
    if (!control.ok()) {
      std::fprintf(stderr, "%s\n", control.status().to_string().c_str());
      return 1;
    }
    omni::g_control = control->get();
    const int rank = (*control)->rank();
    if (rank != 0) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new omni::FailurePrinter(rank));
    }
    std::vector<int64_t> failed = {RUN_ALL_TESTS() != 0 ? 1 : 0};
    const omni::Status vote = (*control)->all_reduce(std::span<int64_t>(failed), omni::ReduceOp::kMax, 120s);
    if (!vote.ok()) std::fprintf(stderr, "%s\n", vote.to_string().c_str());
    any_failed = vote.ok() ? static_cast<int>(failed[0]) : 1;
    omni::g_control = nullptr;
  }
  const omni::Status fin = omni::Backend::finalize();
  if (!fin.ok()) std::fprintf(stderr, "%s\n", fin.to_string().c_str());
  return any_failed != 0 || !fin.ok() ? 1 : 0;
}
