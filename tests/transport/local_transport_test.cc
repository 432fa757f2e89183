// The conformance suite on LocalTransport (threads), at 2, 3 and 4 ranks, plus
// what only LocalGroup has (threads, exceptions, group sizes).
#include "omniplacement/transport/local_transport.h"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>

#include "transport/conformance.h"

namespace omni {
namespace {

using namespace std::chrono_literals;

struct LocalParam {
  int32_t num_ranks;
  size_t case_index;
};

std::string param_name(const ::testing::TestParamInfo<LocalParam>& info) {
  return testing::conformance_cases()[info.param.case_index].name + "_" + std::to_string(info.param.num_ranks) +
         "Ranks";
}

#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer slows memory-bound cases ~30x: it checks the 4-rank group
// without the 256 MB transfers (the Release build runs everything).
constexpr bool kUnderTsan = true;
#else
constexpr bool kUnderTsan = false;
#endif

std::vector<LocalParam> all_params() {
  std::vector<LocalParam> params;
  const auto& cases = testing::conformance_cases();
  for (int32_t n : {2, 3, 4}) {
    if (kUnderTsan && n != 4) continue;
    for (size_t i = 0; i < cases.size(); ++i) {
      if (n < cases[i].min_ranks || (cases[i].heavy && (n != 4 || kUnderTsan))) continue;
      params.push_back({n, i});
    }
  }
  return params;
}

class LocalConformance : public ::testing::TestWithParam<LocalParam> {};

TEST_P(LocalConformance, PassesOnEveryRank) {
  const auto& c = testing::conformance_cases()[GetParam().case_index];
  const std::vector<Status> statuses = LocalGroup::run(GetParam().num_ranks, c.body);
  ASSERT_EQ(statuses.size(), static_cast<size_t>(GetParam().num_ranks));
  for (size_t r = 0; r < statuses.size(); ++r) EXPECT_TRUE(statuses[r].ok()) << "rank " << r << ": " << statuses[r];
}

INSTANTIATE_TEST_SUITE_P(Cases, LocalConformance, ::testing::ValuesIn(all_params()), param_name);

TEST(LocalGroup, SingleRankCollectivesAreIdentity) {
  const auto statuses = LocalGroup::run(1, [](Transport& t) -> Status {
    std::vector<double> v = {1.5, -2};
    OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<double>(v), ReduceOp::kSum, 1s));
    if (v[0] != 1.5 || v[1] != -2) return internal_error("single-rank all_reduce changed the data");
    std::vector<std::byte> send(3, std::byte{4}), recv(3);
    OMNI_RETURN_IF_ERROR(t.all_gather(send, recv, 1s));
    if (recv != send) return internal_error("single-rank all_gather differs");
    return t.barrier(1s);
  });
  ASSERT_EQ(statuses.size(), 1u);
  EXPECT_TRUE(statuses[0].ok()) << statuses[0];
}

TEST(LocalGroup, ReturnsEveryRanksStatusAndCatchesExceptions) {
  const auto statuses = LocalGroup::run(3, [](Transport& t) -> Status {
    if (t.rank() == 1) throw std::runtime_error("boom");
    if (t.rank() == 2) return not_found_error("rank 2 says so");
    return ok_status();
  });
  ASSERT_EQ(statuses.size(), 3u);
  EXPECT_TRUE(statuses[0].ok());
  EXPECT_EQ(statuses[1].code(), StatusCode::kInternal);
  EXPECT_NE(statuses[1].message().find("boom"), std::string::npos) << statuses[1];
  EXPECT_EQ(statuses[2].code(), StatusCode::kNotFound);
}

TEST(LocalGroup, RejectsBadGroupSizes) {
  for (int32_t n : {0, -1, kMaxRanks + 1}) {
    const auto statuses = LocalGroup::run(n, [](Transport&) { return ok_status(); });
    ASSERT_EQ(statuses.size(), 1u) << n;
    EXPECT_EQ(statuses[0].code(), StatusCode::kInvalidArgument) << n;
    EXPECT_FALSE(LocalGroup::create(n).ok());
  }
}

TEST(LocalGroup, MismatchedCollectivesFailOnEveryRank) {
  const auto statuses = LocalGroup::run(3, [](Transport& t) -> Status {
    std::vector<int64_t> v(t.rank() == 0 ? 2 : 3);
    return t.all_reduce(std::span<int64_t>(v), ReduceOp::kSum, 10s);
  });
  for (const Status& s : statuses) EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
}

TEST(LocalGroup, TransportsCanBeDrivenFromOwnThreads) {
  auto group = LocalGroup::create(2);
  ASSERT_TRUE(group.ok());
  Transport& a = group->transport(0);
  Transport& b = group->transport(1);
  EXPECT_EQ(a.rank(), 0);
  EXPECT_EQ(b.size(), 2);
  EXPECT_EQ(a.backend(), "local");
  std::vector<std::byte> out(5, std::byte{8}), in(5);
  Status sent;
  std::thread sender([&] { sent = a.send(1, 0, out, 5s); });
  EXPECT_TRUE(b.recv(0, 0, in, 5s).ok());
  sender.join();
  EXPECT_TRUE(sent.ok()) << sent;
  EXPECT_EQ(in, out);
}

}  // namespace
}  // namespace omni
