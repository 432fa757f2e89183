// omniplace validate / convert / eval through the real binary: a small case
// computed by hand, round trips through convert, exit codes and --help.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "../io/io_test_util.h"
#include "cli_run.h"

namespace {

using Result = omni::testing::CliResult;
Result run(const std::string& args) { return omni::testing::run_omniplace(args); }

// 2 ranks (one per host), 3 experts. Layer 0: [0 1 | 0 2] (expert 0 on both
// ranks), layer 1: [1 2 | 0 -1].
const char* kPlacement = R"({"format": "omniplacement.placement", "version": 1, "num_ranks": 2, "num_experts": 3,
  "slots_per_rank": [2, 2], "phy2log": [[0, 1, 0, 2], [1, 2, 0, -1]]})";
const char* kLoad = "10,4,6\n6,6,6\n";

TEST(CliIoTest, EvalMatchesAHandComputedCase) {
  omni::testing::ScratchDir dir;
  omni::testing::spit(dir.file("p.json"), kPlacement);
  omni::testing::spit(dir.file("l.csv"), kLoad);
  Result r = run("eval --placement " + dir.file("p.json") + " --load " + dir.file("l.csv") +
                 " --ranks-per-host 1 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  const auto& l0 = j["layers"][0];
  const auto& l1 = j["layers"][1];
  // Layer 0: rank 0 = 10/2 + 4 = 9, rank 1 = 10/2 + 6 = 11; mean 10. With 4 slots,
  // water-filling gives expert 0 two replicas: max(5, 4, 6) = 6 < W/R = 10, so the
  // bound is 10. Tokens of expert 1 (4) and 2 (6) from the other rank cross: 5 of 20.
  EXPECT_DOUBLE_EQ(l0["max"].get<double>(), 11);
  EXPECT_DOUBLE_EQ(l0["mean"].get<double>(), 10);
  EXPECT_DOUBLE_EQ(l0["max_over_mean"].get<double>(), 1.1);
  EXPECT_DOUBLE_EQ(l0["bound_over_mean"].get<double>(), 1.0);
  EXPECT_NEAR(l0["excess"].get<double>(), 0.1, 1e-12);
  EXPECT_EQ(l0["duplicates"].get<int>(), 0);
  EXPECT_DOUBLE_EQ(l0["cross_host_share"].get<double>(), 0.25);
  // Layer 1: rank 0 = 6 + 6 = 12, rank 1 = 6; mean 9; bound 9; every expert on one rank: half crosses.
  EXPECT_DOUBLE_EQ(l1["max"].get<double>(), 12);
  EXPECT_NEAR(l1["max_over_mean"].get<double>(), 12.0 / 9, 1e-12);
  EXPECT_NEAR(l1["excess"].get<double>(), 3.0 / 9, 1e-12);
  EXPECT_DOUBLE_EQ(l1["cross_host_share"].get<double>(), 0.5);
  const auto& s = j["summary"];
  EXPECT_NEAR(s["mean_max_over_mean"].get<double>(), (1.1 + 12.0 / 9) / 2, 1e-12);
  EXPECT_NEAR(s["balancedness"].get<double>(), 19.0 / 23, 1e-12);
  EXPECT_DOUBLE_EQ(s["sum_max"].get<double>(), 23);
  EXPECT_DOUBLE_EQ(s["sum_lower_bound"].get<double>(), 19);
  EXPECT_NEAR(s["cross_host_share"].get<double>(), 14.0 / 38, 1e-12);
  // The table shows the same numbers.
  Result t = run("eval --placement " + dir.file("p.json") + " --load " + dir.file("l.csv") + " --ranks-per-host 1");
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find("    0      2         11.0         10.0    1.100      1.000   0.100     0      0.250"),
            std::string::npos)
      << t.out;
  EXPECT_NE(t.out.find("same-rank duplicates 0; dispatch: 63.2% same rank, 0.0% same host, 36.8% cross host"),
            std::string::npos)
      << t.out;
}

TEST(CliIoTest, EvalOnShippedQwenTraceAndPlacement) {
  const std::string data = std::string(OMNI_SOURCE_DIR) + "/data/";
  Result r = run("eval --placement " + data + "placements/qwen15moe_contiguous_12ranks_6slots.json --load " + data +
                 "traces/qwen15moe_expert_freq_by_iteration.csv --select dataset=wikitext,iteration=0");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("12 ranks on 3 hosts (4 per host)"), std::string::npos) << r.out;
  Result g = run("eval --placement contiguous:12:6 --ranks-per-host 4 --load " + data +
                 "traces/qwen15moe_expert_freq_by_iteration.csv --select dataset=wikitext,iteration=0");
  ASSERT_EQ(g.code, 0) << g.out;
  // The generated placement is the shipped one: everything from the topology line on is the same.
  EXPECT_EQ(r.out.substr(r.out.find("topology:")), g.out.substr(g.out.find("topology:")));
}

TEST(CliIoTest, ValidateReportsAndExitCodes) {
  omni::testing::ScratchDir dir;
  const std::string data = std::string(OMNI_SOURCE_DIR) + "/data/";
  Result ok = run("validate " + data + "patterns/DSV3_0427_GSM8K_decode_RedFullLays_+10_58_MoELayers_32_dies_epmaxdeploy_12.npy --strict");
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_NE(ok.out.find("58 layers, 32 ranks, 256 experts, 8-9 slots per rank"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("replicas per layer: 256 to 288"), std::string::npos) << ok.out;
  // Two replicas of expert 0 on rank 0: fine by default, refused with --strict.
  omni::testing::spit(dir.file("dup.json"), R"({"format": "omniplacement.placement", "version": 1, "num_ranks": 2,
    "num_experts": 2, "slots_per_rank": [2], "phy2log": [[0, 0, 1, -1]]})");
  EXPECT_EQ(run("validate " + dir.file("dup.json")).code, 0);
  Result strict = run("validate " + dir.file("dup.json") + " --strict");
  EXPECT_EQ(strict.code, 1) << strict.out;
  EXPECT_NE(strict.out.find("same-rank-duplicate"), std::string::npos) << strict.out;
  omni::testing::spit(dir.file("bad.json"), "{\"format\": 1}");
  EXPECT_EQ(run("validate " + dir.file("bad.json")).code, 1);
  EXPECT_EQ(run("validate " + dir.file("missing.npy")).code, 1);
  EXPECT_EQ(run("validate " + data + "traces/qwen15moe_expert_freq_by_iteration.csv --select dataset=wmt19,iteration=0").code, 0);
  EXPECT_EQ(run("validate " + data + "traces/qwen15moe_expert_freq_by_iteration.csv --select dataset=c4").code, 1);
  Result dump = run("validate " + data + "dumps/test_for_optimizer_step0.txt --placement " + data +
                    "patterns/placement_pattern_test_for_optimizer.txt");
  EXPECT_EQ(dump.code, 0) << dump.out;
  omni::testing::spit(dir.file("c.yaml"), "enable_dynamic: true\nenable_dynamc: false\n");
  Result conf = run("validate " + dir.file("c.yaml"));
  EXPECT_EQ(conf.code, 1);
  EXPECT_NE(conf.out.find("c.yaml:2: unknown key 'enable_dynamc'"), std::string::npos) << conf.out;
  EXPECT_EQ(run("validate").code, 2);
  EXPECT_EQ(run("validate x.npy --no-such-option").code, 2);
  EXPECT_EQ(run("eval --placement x.json").code, 2);
}

TEST(CliIoTest, ConvertRoundTripsAPatternThroughEveryContainer) {
  omni::testing::ScratchDir dir;
  const std::string src = std::string(OMNI_SOURCE_DIR) + "/data/patterns/placement_pattern_3d_v3_indevrrori0322_58moe_4devices_SC_64eps.bin";
  ASSERT_EQ(run("convert " + src + " " + dir.file("a.json")).code, 0);
  ASSERT_EQ(run("convert " + dir.file("a.json") + " " + dir.file("a.npy")).code, 0);
  ASSERT_EQ(run("convert " + dir.file("a.npy") + " " + dir.file("a.txt")).code, 0);
  ASSERT_EQ(run("convert " + dir.file("a.txt") + " " + dir.file("a.bin")).code, 0);
  EXPECT_TRUE(omni::testing::slurp(dir.file("a.bin")) == omni::testing::slurp(src));
  EXPECT_EQ(run("convert " + src + " " + dir.file("a.csv")).code, 2);
  const std::string trace = std::string(OMNI_SOURCE_DIR) + "/data/traces/olmoe_expert_counts.csv";
  ASSERT_EQ(run("convert " + trace + " " + dir.file("l.npy") + " --select domain=github").code, 0);
  ASSERT_EQ(run("convert " + dir.file("l.npy") + " " + dir.file("l.csv")).code, 0);
  EXPECT_EQ(run("convert " + trace + " " + dir.file("l.json") + " --select domain=github").code, 2);
  EXPECT_EQ(run("convert " + trace + " " + dir.file("l2.npy")).code, 1);  // a trace needs --select
}

TEST(CliIoTest, EverySubcommandHelpHasAnExample) {
  for (const char* cmd : {"validate", "convert", "eval"}) {
    Result r = run(std::string(cmd) + " --help");
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_NE(r.out.find("Example"), std::string::npos) << cmd << "\n" << r.out;
    EXPECT_NE(r.out.find("omniplace " + std::string(cmd)), std::string::npos) << r.out;
  }
}

}  // namespace
