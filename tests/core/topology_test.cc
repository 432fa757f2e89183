#include "omniplacement/core/topology.h"

#include <gtest/gtest.h>

namespace omni {
namespace {

TEST(TopologyTest, UniformHosts) {
  auto t = Topology::uniform(32, 8);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->num_ranks(), 32);
  EXPECT_EQ(t->num_hosts(), 4);
  EXPECT_EQ(t->host_of(9), 1);
  EXPECT_EQ(t->link(9, 9), LinkClass::kSameRank);
  EXPECT_EQ(t->link(8, 15), LinkClass::kSameHost);
  EXPECT_EQ(t->link(3, 9), LinkClass::kCrossHost);
  EXPECT_TRUE(t->is_uniform());
  auto h2 = t->ranks_of_host(2);
  ASSERT_EQ(h2.size(), 8u);
  EXPECT_EQ(h2[0], 16);
  EXPECT_EQ(t->to_string(), "32 ranks on 4 hosts (8 per host)");
}

TEST(TopologyTest, ExplicitUnevenHostMap) {
  auto t = Topology::from_host_map({0, 1, 0, 1, 1});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->num_hosts(), 2);
  EXPECT_FALSE(t->is_uniform());
  auto h1 = t->ranks_of_host(1);
  ASSERT_EQ(h1.size(), 3u);
  EXPECT_EQ(h1[0], 1);
  EXPECT_EQ(h1[2], 4);
  EXPECT_EQ(t->link(0, 2), LinkClass::kSameHost);
}

TEST(TopologyTest, TransferTimeUsesLinkBandwidth) {
  LinkBandwidths bw;
  bw.same_host_bytes_per_s = 400e9;
  bw.cross_host_bytes_per_s = 50e9;
  bw.latency_s = 0;
  auto t = Topology::uniform(16, 8, bw);
  ASSERT_TRUE(t.ok());
  // One 44 MB FP8 DeepSeek-V3 expert: 0.11 ms at 400 GB/s, 0.88 ms at 50 GB/s (docs/REFERENCES.md §5).
  EXPECT_NEAR(t->transfer_seconds(0, 1, 44e6), 0.11e-3, 1e-9);
  EXPECT_NEAR(t->transfer_seconds(0, 8, 44e6), 0.88e-3, 1e-9);
}

struct BadTopology {
  const char* name;
  int32_t ranks;
  int32_t per_host;
  const char* message_part;
};

class TopologyRejects : public ::testing::TestWithParam<BadTopology> {};

TEST_P(TopologyRejects, WithMessage) {
  auto t = Topology::uniform(GetParam().ranks, GetParam().per_host);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find(GetParam().message_part), std::string::npos) << t.status();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TopologyRejects,
    ::testing::Values(BadTopology{"ZeroRanks", 0, 1, "num_ranks must be in"},
                      BadTopology{"NegativeRanks", -5, 1, "num_ranks must be in"},
                      BadTopology{"HugeRanks", 1 << 30, 1, "num_ranks must be in"},
                      BadTopology{"ZeroPerHost", 8, 0, "ranks_per_host must be in"},
                      BadTopology{"PerHostAboveRanks", 8, 9, "ranks_per_host must be in"},
                      BadTopology{"NotAMultiple", 10, 4, "multiple of ranks_per_host"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(TopologyTest, RejectsBadHostMaps) {
  EXPECT_FALSE(Topology::from_host_map({}).ok());
  auto gap = Topology::from_host_map({0, 2, 2});
  ASSERT_FALSE(gap.ok());
  EXPECT_NE(gap.status().message().find("host 1 has no rank"), std::string::npos);
  auto neg = Topology::from_host_map({0, -1});
  ASSERT_FALSE(neg.ok());
  EXPECT_NE(neg.status().message().find("rank 1 has host -1"), std::string::npos);
  LinkBandwidths bw;
  bw.cross_host_bytes_per_s = 0;
  EXPECT_FALSE(Topology::uniform(4, 2, bw).ok());
}

}  // namespace
}  // namespace omni
