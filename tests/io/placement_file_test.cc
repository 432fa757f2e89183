#include "omniplacement/io/placement_file.h"

#include <gtest/gtest.h>

#include <random>

#include "common/random_placement.h"
#include "io_test_util.h"

namespace omni {
namespace {

using testing::data_path;

PlacementFile small_file(bool with_shares, bool with_topology) {
  PlacementLayout layout;
  layout.num_ranks = 2;
  layout.num_experts = 3;
  layout.slots_per_rank = {2, 2};
  layout.phy2log = {{0, 1, 2, -1}, {2, 0, 1, 2}};
  if (with_shares) layout.shares = {{1, 1, 1, 0}, {0.25, 1, 1, 0.75}};
  PlacementFile f;
  f.placement = *Placement::create(layout);
  if (with_topology) f.topology = *Topology::from_host_map({0, 1});
  return f;
}

TEST(PlacementJsonTest, SmallFileMatchesTheDocumentedText) {
  auto text = encode_placement_json(small_file(true, true));
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text,
            "{\n"
            "  \"format\": \"omniplacement.placement\",\n"
            "  \"version\": 1,\n"
            "  \"num_layers\": 2,\n"
            "  \"num_ranks\": 2,\n"
            "  \"num_experts\": 3,\n"
            "  \"slots_per_rank\": [2, 2],\n"
            "  \"phy2log\": [\n"
            "    [0, 1, 2, -1],\n"
            "    [2, 0, 1, 2]\n"
            "  ],\n"
            "  \"shares\": [\n"
            "    [1, 1, 1, 0],\n"
            "    [0.25, 1, 1, 0.75]\n"
            "  ],\n"
            "  \"topology\": {\n"
            "    \"host_of_rank\": [0, 1],\n"
            "    \"bandwidths\": {\"same_rank_bytes_per_s\": 1e+12, \"same_host_bytes_per_s\": 3e+11, "
            "\"cross_host_bytes_per_s\": 5e+10, \"latency_s\": 1e-05}\n"
            "  }\n"
            "}\n");
}

TEST(PlacementJsonTest, RoundTripsExactlyWithAndWithoutSharesAndTopology) {
  for (bool shares : {false, true}) {
    for (bool topo : {false, true}) {
      const PlacementFile f = small_file(shares, topo);
      auto text = encode_placement_json(f);
      ASSERT_TRUE(text.ok());
      auto back = parse_placement_json(*text);
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_TRUE(back->placement == f.placement);
      EXPECT_EQ(back->topology.has_value(), topo);
      if (topo) {
        EXPECT_TRUE(*back->topology == *f.topology);
      }
      EXPECT_EQ(*encode_placement_json(*back), *text);
    }
  }
}

TEST(PlacementJsonTest, RandomUnevenPlacementsWithIrrationalSharesRoundTrip) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    auto layout = testing::random_layout(rng, 1 + static_cast<int32_t>(rng() % 6), 4, 10, 0, 3, false);
    // Shares: each expert's replicas split by random weights (not short decimals).
    layout.shares.resize(layout.phy2log.size());
    for (size_t l = 0; l < layout.phy2log.size(); ++l) {
      const auto& row = layout.phy2log[l];
      std::vector<double> w(row.size(), 0), sum(10, 0);
      for (size_t g = 0; g < row.size(); ++g)
        if (row[g] >= 0) sum[static_cast<size_t>(row[g])] += (w[g] = 1.0 + static_cast<double>(rng() % 1000) / 7.0);
      for (size_t g = 0; g < row.size(); ++g)
        if (row[g] >= 0) w[g] /= sum[static_cast<size_t>(row[g])];
      layout.shares[l] = w;
    }
    PlacementFile f;
    auto p = Placement::create(layout);
    ASSERT_TRUE(p.ok()) << p.status();
    f.placement = *p;
    auto back = parse_placement_json(*encode_placement_json(f));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(back->placement == f.placement);
    EXPECT_EQ(back->placement.checksum(), f.placement.checksum());
  }
}

TEST(PlacementJsonTest, ErrorsNameTheFieldLayerAndSlot) {
  struct Case {
    const char* name;
    const char* text;
    const char* message_part;
  };
  const std::string head = R"({"format": "omniplacement.placement", "version": 1, "num_ranks": 2, "num_experts": 3, )";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "not valid JSON"},
      {"[1]", "top level must be a JSON object"},
      {R"({"format": "x", "version": 1})", "\"format\" must be"},
      {head + R"("slots_per_rank": [2], "phy2log": [[0, 1, 2]]})", "phy2log[0] must have num_ranks * slots_per_rank[0] = 4"},
      {head + R"("slots_per_rank": [2], "phy2log": [[0, 1, 5, -1]]})", "phy2log[0][2] (layer 0, rank 1, slot 0) = 5 is out of range"},
      {head + R"("slots_per_rank": [2], "phy2log": [[0, 1, 1.5, -1]]})", "must be an integer"},
      {head + R"("slots_per_rank": [2], "phy2log": [[0, 1, 1, -1]]})", "expert 2"},
      {head + R"("slots_per_rank": [2], "phy2log": [[0, 1, 2, -1]], "colour": 1})", "unknown key \"colour\""},
      {head + R"("slots_per_rank": [2], "phy2log": [[0, 1, 2, -1]], "topology": {"host_of_rank": [0]}})",
       "host_of_rank\" must be an array of num_ranks = 2"},
      {head + R"("slots_per_rank": [2], "phy2log": [[0, 1, 2, -1]], "shares": [[1, 1, 0.5, 0]]})", "share"},
      {head + R"("slots_per_rank": [0], "phy2log": [[]]})", "slots_per_rank[0] = 0 is out of range"},
      {head + R"("num_layers": 2, "slots_per_rank": [2], "phy2log": [[0, 1, 2, -1]]})", "num_layers = 2 but"},
  };
  for (const auto& [text, part] : cases) {
    auto r = parse_placement_json(text, "case.json");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.status().message().find(part), std::string::npos) << text << "\n -> " << r.status();
    EXPECT_NE(r.status().message().find("case.json"), std::string::npos);
  }
}

TEST(PlacementFileTest, ConvertsBetweenEveryContainer) {
  testing::ScratchDir dir;
  auto p = read_placement_file(data_path("patterns/placement_pattern_test_for_optimizer.txt"));
  ASSERT_TRUE(p.ok()) << p.status();
  for (const char* name : {"a.json", "a.npy", "a.txt", "a.bin"}) {
    ASSERT_TRUE(write_placement_file(dir.file(name), p->placement).ok()) << name;
    auto back = read_placement_file(dir.file(name));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(back->placement == p->placement) << name;
  }
}

TEST(PlacementFileTest, PatternContainersRefuseSharesAndTopology) {
  testing::ScratchDir dir;
  EXPECT_NE(write_placement_file(dir.file("x.npy"), small_file(true, false)).message().find("shares"), std::string::npos);
  EXPECT_NE(write_placement_file(dir.file("x.txt"), small_file(false, true)).message().find("topology"), std::string::npos);
  EXPECT_FALSE(write_placement_file(dir.file("x.yaml"), small_file(false, false)).ok());
  EXPECT_FALSE(read_placement_file(dir.file("x.yaml")).ok());
}

TEST(PlacementFileTest, RulesApplyToPatternsToo) {
  ValidationRules rules;
  rules.max_replicas_per_expert = 1;
  auto r = read_placement_file(data_path("patterns/placement_pattern_test_for_optimizer.txt"), rules);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("replicas"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace omni
