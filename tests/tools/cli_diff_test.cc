// omniplace diff through the real binary: hand-computed plans (transfers, bytes,
// rounds, times), the topology from a file, round limits, a shipped DeepSeek-V3
// pattern against a rank-rotated copy of itself, and exit codes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "../io/io_test_util.h"
#include "cli_run.h"
#include "omniplacement/io/placement_file.h"

namespace {

using omni::testing::run_omniplace;

std::string placement_json(int ranks, int experts, int slots, const std::string& phy2log,
                           const std::string& extra = "") {
  return "{\"format\": \"omniplacement.placement\", \"version\": 1, \"num_ranks\": " + std::to_string(ranks) +
         ", \"num_experts\": " + std::to_string(experts) + ", \"slots_per_rank\": [" + std::to_string(slots) +
         "], \"phy2log\": [" + phy2log + "]" + extra + "}";
}

// Seconds of one transfer with the default bandwidths: 10 us + bytes / bandwidth.
constexpr double kCrossHostDeepSeek = 10e-6 + 44040192.0 / 50e9;

class CliDiffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // [0 | 1] -> [1 | 0]: a swap between two ranks.
    omni::testing::spit(dir_.file("p0.json"), placement_json(2, 2, 1, "[0, 1]"));
    omni::testing::spit(dir_.file("p1.json"), placement_json(2, 2, 1, "[1, 0]"));
  }
  std::string p0() const { return dir_.file("p0.json"); }
  std::string p1() const { return dir_.file("p1.json"); }
  omni::testing::ScratchDir dir_;
};

TEST_F(CliDiffTest, SwapAcrossHostsAsJson) {
  auto r = run_omniplace("diff " + p0() + " " + p1() + " --ranks-per-host 1 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["num_transfers"], 2);
  EXPECT_EQ(j["total_bytes"], 88080384);
  EXPECT_EQ(j["num_rounds"], 1);
  EXPECT_EQ(j["num_over_limit_rounds"], 0);
  EXPECT_EQ(j["max_per_round"], 8);
  EXPECT_EQ(j["transfers_by_link"]["cross-host"], 2);
  EXPECT_NEAR(j["total_seconds"].get<double>(), kCrossHostDeepSeek, 1e-12);
  EXPECT_EQ(j["verified"], true);
  const auto& t = j["rounds"][0]["transfers"][0];
  EXPECT_EQ(t, nlohmann::json::parse(R"({"layer": 0, "expert": 1, "src_rank": 1, "src_slot": 0, "dst_rank": 0,
      "dst_slot": 0, "replaced": 0, "link": "cross-host", "bytes": 44040192})"));
  EXPECT_EQ(j["topology"]["num_hosts"], 2);
}

TEST_F(CliDiffTest, SwapAsTextWithExpertBytes) {
  auto r = run_omniplace("diff " + p0() + " " + p1() + " --ranks-per-host 2 --expert-bytes 3000000");
  ASSERT_EQ(r.code, 0) << r.out;
  // One host: 10 us + 3 MB / 300 GB/s = 20 us per transfer; each rank sends one.
  EXPECT_NE(r.out.find("round 0: 2 transfers, 0.006 GB, est. 0.020 ms (busiest rank sends 1, receives 1)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("  layer 0 expert 1: rank 1 slot 0 -> rank 0 slot 0 (same-host, replaces expert 0)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("total: 2 transfers (0.01 GB: 0 same-rank, 2 same-host, 0 cross-host) in 1 round, est. "
                       "2e-05 s; 0 slots unchanged, 0 released"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("verified:"), std::string::npos) << r.out;
}

TEST_F(CliDiffTest, TopologyComesFromTheFileWhenNotGiven) {
  omni::testing::spit(dir_.file("p1_hosts.json"),
                      placement_json(2, 2, 1, "[1, 0]", R"(, "topology": {"host_of_rank": [0, 1]})"));
  auto r = run_omniplace("diff " + p0() + " " + dir_.file("p1_hosts.json") + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["transfers_by_link"]["cross-host"], 2);
  // Without a topology anywhere: one host.
  auto one = run_omniplace("diff " + p0() + " " + p1() + " --json");
  ASSERT_EQ(one.code, 0) << one.out;
  EXPECT_EQ(nlohmann::json::parse(one.out)["transfers_by_link"]["same-host"], 2);
}

TEST_F(CliDiffTest, RoundLimitSplitsAFanOut) {
  // Expert 0, only on rank 0, gains a replica on each of the 4 other ranks (one host).
  omni::testing::spit(dir_.file("f0.json"), placement_json(5, 5, 2, "[0, -1, 1, -1, 2, -1, 3, -1, 4, -1]"));
  omni::testing::spit(dir_.file("f1.json"), placement_json(5, 5, 2, "[0, -1, 1, 0, 2, 0, 3, 0, 4, 0]"));
  const std::string files = dir_.file("f0.json") + " " + dir_.file("f1.json");
  auto one = run_omniplace("diff " + files + " --max-per-round 1 --json");
  ASSERT_EQ(one.code, 0) << one.out;
  const auto j = nlohmann::json::parse(one.out);
  // Round 0: 0 -> 1; round 1: 1 -> 2 and 0 -> 3; round 2: 2 -> 4 (copies of earlier rounds are sources).
  ASSERT_EQ(j["num_rounds"], 3);
  EXPECT_EQ(j["rounds"][1]["transfers"].size(), 2u);
  EXPECT_EQ(j["rounds"][2]["transfers"][0]["src_rank"], 2);
  auto all = run_omniplace("diff " + files + " --max-per-round 0 --json");
  ASSERT_EQ(all.code, 0) << all.out;
  EXPECT_EQ(nlohmann::json::parse(all.out)["num_rounds"], 1);
  EXPECT_EQ(nlohmann::json::parse(all.out)["rounds"][0]["max_sends"], 4);
}

TEST_F(CliDiffTest, ShippedPatternAgainstARankRotatedCopy) {
  // The GSM8K decode placement (58 layers, 32 ranks, 8-9 slots per rank: layer-wise uneven), and the
  // same placement with every rank's slots moved to the previous rank.
  const std::string shipped = omni::testing::data_path(
      "patterns/DSV3_0427_GSM8K_decode_RedFullLays_+10_58_MoELayers_32_dies_epmaxdeploy_12.npy");
  auto f = omni::read_placement_file(shipped);
  ASSERT_TRUE(f.ok()) << f.status();
  const omni::Placement& a = f->placement;
  omni::PlacementLayout rotated = a.layout();
  int64_t changed = 0;
  for (omni::LayerId l = 0; l < a.num_layers(); ++l) {
    const int32_t spr = a.slots_per_rank(l);
    for (omni::RankId r = 0; r < a.num_ranks(); ++r)
      for (omni::SlotId s = 0; s < spr; ++s) {
        const omni::ExpertId e = a.expert_at(l, (r + 1) % a.num_ranks(), s);
        rotated.phy2log[static_cast<size_t>(l)][static_cast<size_t>(r * spr + s)] = e;
        changed += e != omni::kEmptySlot && e != a.expert_at(l, r, s);
      }
  }
  auto b = omni::Placement::create(rotated);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(omni::write_placement_file(dir_.file("rotated.npy"), *b).ok());
  ASSERT_EQ(omni::read_placement_file(dir_.file("rotated.npy"))->placement, *b);

  auto r = run_omniplace("diff '" + shipped + "' " + dir_.file("rotated.npy") + " --ranks-per-host 8 --json");
  ASSERT_EQ(r.code, 0) << r.out.substr(0, 2000);
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["num_transfers"].get<int64_t>(), changed);
  EXPECT_EQ(j["total_bytes"].get<int64_t>(), changed * 44040192);
  EXPECT_EQ(j["verified"], true);
  int64_t listed = 0;
  for (const auto& round : j["rounds"]) {
    listed += static_cast<int64_t>(round["transfers"].size());
    if (!round["over_limit"].get<bool>()) {
      EXPECT_LE(round["max_sends"].get<int>(), 8);
      EXPECT_LE(round["max_receives"].get<int>(), 8);
    }
  }
  EXPECT_EQ(listed, changed);
  // Rank r receives rank r+1's experts: all but the host boundaries are same-host.
  EXPECT_GT(j["transfers_by_link"]["same-host"].get<int64_t>(), j["transfers_by_link"]["cross-host"].get<int64_t>());

  // Identical contents in two containers: nothing to move.
  auto same = run_omniplace(
      "diff " +
      omni::testing::data_path("patterns/placement_pattern_3d_v3_indevrrori0322_58moe_4devices_SC_64eps.bin") + " " +
      omni::testing::data_path("patterns/placement_pattern_3d_v3_indevrrori0322_58moe_4devices_SC_64eps.txt") +
      " --brief");
  ASSERT_EQ(same.code, 0) << same.out;
  EXPECT_NE(same.out.find("total: 0 transfers"), std::string::npos) << same.out;
  EXPECT_NE(same.out.find("3944 slots unchanged"), std::string::npos) << same.out;
}

TEST_F(CliDiffTest, ContiguousPlacementTakesItsSizesFromTheOtherFile) {
  // contiguous:2:1 of 1 layer x 2 experts is [0 | 1]: the same swap.
  auto r = run_omniplace("diff contiguous:2:1 " + p1() + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["num_transfers"], 2);
  auto back = run_omniplace("diff " + p1() + " contiguous:2:1 --json");
  ASSERT_EQ(back.code, 0) << back.out;
  EXPECT_EQ(nlohmann::json::parse(back.out)["num_transfers"], 2);
}

TEST_F(CliDiffTest, ExitCodesAndMessages) {
  omni::testing::spit(dir_.file("three.json"), placement_json(3, 2, 1, "[0, 1, 0]"));
  auto shape = run_omniplace("diff " + p0() + " " + dir_.file("three.json"));
  EXPECT_EQ(shape.code, 1) << shape.out;
  EXPECT_NE(shape.out.find("differ in shape"), std::string::npos) << shape.out;
  auto missing = run_omniplace("diff " + p0() + " " + dir_.file("nope.json"));
  EXPECT_EQ(missing.code, 1) << missing.out;
  auto hosts = run_omniplace("diff " + p0() + " " + p1() + " --ranks-per-host 3");
  EXPECT_EQ(hosts.code, 1) << hosts.out;
  EXPECT_NE(hosts.out.find("ranks_per_host"), std::string::npos) << hosts.out;
  EXPECT_EQ(run_omniplace("diff contiguous:2:1 contiguous:2:1").code, 1);
  EXPECT_EQ(run_omniplace("diff " + p0() + " " + p1() + " --max-per-round -1").code, 2);
  EXPECT_EQ(run_omniplace("diff " + p0()).code, 2);
  auto help = run_omniplace("diff --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("--max-per-round"), std::string::npos) << help.out;
}

}  // namespace
