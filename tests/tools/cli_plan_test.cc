// omniplace plan through the real binary, on the shipped traces: the written
// file validates and reads back, eval agrees with plan's summary, log2phy and
// logcnt agree with phy2log, a move budget holds per rank and layer, the
// layer-wise budget is respected, and exit codes.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "../io/io_test_util.h"
#include "cli_run.h"
#include "omniplacement/core/metrics.h"
#include "omniplacement/io/load_file.h"
#include "omniplacement/io/npy.h"
#include "omniplacement/io/placement_file.h"

namespace {

using omni::testing::run_omniplace;

const std::string kData = std::string(OMNI_SOURCE_DIR) + "/data/";
const std::string kQwen = kData + "traces/qwen15moe_expert_freq_by_iteration.csv";
const std::string kOlmoe = kData + "traces/olmoe_expert_counts.csv";

class CliPlanTest : public ::testing::Test {
 protected:
  std::string file(const std::string& name) const { return dir_.file(name); }
  omni::testing::ScratchDir dir_;
};

TEST_F(CliPlanTest, JsonOutputValidatesRoundTripsAndMatchesEval) {
  const std::string out = file("plan.json");
  auto r = run_omniplace("plan --load " + kQwen + " --select dataset=bookcorpus,iteration=0 --num-ranks 12 "
                         "--redundant-per-rank 1 --num-nodes 3 --output " + out + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["planner"], "omni");
  EXPECT_EQ(j["slots_per_rank"], nlohmann::json(std::vector<int>(12, 6)));  // ceil(60 / 12) + 1
  EXPECT_EQ(j["after"]["duplicates"], 0);
  EXPECT_LT(j["after"]["mean_max_over_mean"].get<double>(), j["before"]["mean_max_over_mean"].get<double>());

  auto v = run_omniplace("validate " + out);
  EXPECT_EQ(v.code, 0) << v.out;
  auto f = omni::read_placement_file(out);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(f->topology.has_value());  // --num-nodes 3 is kept in the JSON file
  EXPECT_EQ(f->topology->num_hosts(), 3);
  EXPECT_EQ(f->placement.num_ranks(), 12);

  // eval of the written file gives the figures plan printed.
  auto e = run_omniplace("eval --placement " + out + " --load " + kQwen + " --select dataset=bookcorpus,iteration=0 --json");
  ASSERT_EQ(e.code, 0) << e.out;
  const auto je = nlohmann::json::parse(e.out);
  EXPECT_DOUBLE_EQ(je["summary"]["mean_max_over_mean"].get<double>(), j["after"]["mean_max_over_mean"].get<double>());
  EXPECT_DOUBLE_EQ(je["summary"]["cross_host_share"].get<double>(), j["after"]["cross_host_share"].get<double>());

  // The derived maps agree with phy2log, and the reader checks them.
  const auto text = omni::testing::slurp(out);
  auto doc = nlohmann::json::parse(text);
  ASSERT_TRUE(doc.contains("log2phy"));
  ASSERT_TRUE(doc.contains("logcnt"));
  const omni::Placement& p = f->placement;
  for (omni::LayerId l = 0; l < p.num_layers(); ++l)
    for (omni::ExpertId x = 0; x < p.num_experts(); ++x) {
      ASSERT_EQ(doc["logcnt"][l][x], p.replica_count(l, x));
      const auto reps = p.replicas(l, x);
      for (size_t k = 0; k < doc["log2phy"][l][x].size(); ++k)
        EXPECT_EQ(doc["log2phy"][l][x][k], k < reps.size() ? reps[k] : -1) << "layer " << l << " expert " << x;
    }
  doc["logcnt"][2][7] = doc["logcnt"][2][7].get<int>() + 1;
  auto bad = omni::parse_placement_json(doc.dump(), "tampered.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("logcnt[2][7] (layer 2, expert 7)"), std::string::npos) << bad.status();
}

TEST_F(CliPlanTest, EplbPatternOutputReadsBackWithTheSameBalance) {
  const std::string npy = file("olmoe.npy");
  auto r = run_omniplace("plan --load " + kOlmoe + " --select domain=arxiv --planner eplb --num-ranks 16 "
                         "--num-replicas 80 --output " + npy + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["planner"], "eplb");
  auto v = run_omniplace("validate " + npy);
  EXPECT_EQ(v.code, 0) << v.out;
  auto e = run_omniplace("eval --placement " + npy + " --load " + kOlmoe + " --select domain=arxiv --json");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(e.out)["summary"]["mean_max_over_mean"].get<double>(),
                   j["after"]["mean_max_over_mean"].get<double>());
}

TEST_F(CliPlanTest, IncrementalRespectsTheMoveBudgetPerRankAndLayer) {
  const std::string cur = kData + "placements/qwen15moe_contiguous_12ranks_6slots.json";
  for (int budget : {1, 2}) {
    const std::string out = file("next" + std::to_string(budget) + ".json");
    auto r = run_omniplace("plan --load " + kQwen + " --select dataset=wikitext,iteration=0 --current " + cur +
                           " --max-moves-per-rank " + std::to_string(budget) + " --output " + out + " --json");
    ASSERT_EQ(r.code, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["planner"], "omni");
    EXPECT_EQ(j["max_moves_per_rank"], budget);  // a typed value, not spliced into the spec
    EXPECT_EQ(j["num_nodes"], 3);  // the current file's topology (4 ranks per host)
    EXPECT_TRUE(j["after"].contains("cross_host_share"));
    EXPECT_GT(j["moved_experts"].get<int>(), 0);
    EXPECT_LE(j["max_moved_per_rank_per_layer"].get<int>(), budget);
    EXPECT_LT(j["after"]["mean_max_over_mean"].get<double>(), j["before"]["mean_max_over_mean"].get<double>());
    // Independently of plan's own count: compare the two files slot by slot.
    auto c = omni::read_placement_file(cur);
    auto n = omni::read_placement_file(out);
    ASSERT_TRUE(c.ok() && n.ok());
    int64_t moved = 0;
    for (omni::LayerId l = 0; l < c->placement.num_layers(); ++l)
      for (omni::RankId rk = 0; rk < c->placement.num_ranks(); ++rk) {
        int changed = 0;
        for (omni::SlotId s = 0; s < c->placement.slots_per_rank(l); ++s) {
          const auto x = n->placement.expert_at(l, rk, s);
          changed += x != omni::kEmptySlot && x != c->placement.expert_at(l, rk, s);
        }
        EXPECT_LE(changed, budget) << "layer " << l << " rank " << rk;
        moved += changed;
      }
    EXPECT_EQ(moved, j["moved_experts"].get<int64_t>());
    EXPECT_EQ(j["moves"].size(), static_cast<size_t>(moved));
  }
  // The text summary lists the moves.
  auto t = run_omniplace("plan --load " + kQwen + " --select dataset=wikitext,iteration=0 --current " + cur +
                         " --max-moves-per-rank 1 --show-moves 3 --output " + file("t.json"));
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find("moved experts:"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("more (--show-moves N"), std::string::npos) << t.out;
}

TEST_F(CliPlanTest, RedundantBudgetIsSpreadOverLayersWithinTheBudget) {
  const std::string out = file("uneven.json");
  auto r = run_omniplace("plan --load " + kQwen + " --select dataset=bookcorpus,iteration=0 --num-ranks 12 "
                         "--redundant-budget 12 --output " + out + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  int sum = 0;
  for (const auto& s : j["slots_per_rank"]) sum += s.get<int>() - 5;
  EXPECT_LE(sum, 12);
  EXPECT_GT(sum, 0);
  int per_layer_sum = 0;
  for (const auto& k : j["redundant_budget"]["redundant_per_rank"]) per_layer_sum += k.get<int>();
  EXPECT_EQ(per_layer_sum, sum);
  auto v = run_omniplace("validate " + out);
  EXPECT_EQ(v.code, 0) << v.out;
}

// --load several times: the recent windows (oldest first) reach omni as
// PlanInput::samples; with the placement in force it plans incrementally
// and reports the moves; a window of another shape is named.
TEST_F(CliPlanTest, SeveralLoadsAreTheRecentWindows) {
  const std::string first = file("first.json");
  auto r0 = run_omniplace("plan --load " + kQwen + " --select dataset=bookcorpus,iteration=0 --num-ranks 12 "
                          "--redundant-per-rank 1 --num-nodes 3 --output " + first);
  ASSERT_EQ(r0.code, 0) << r0.out;
  std::string loads;
  for (int it = 0; it < 3; ++it)
    loads += " --load " + kQwen + " --select dataset=wikitext,iteration=" + std::to_string(it);
  auto r = run_omniplace("plan" + loads + " --current " + first + " --output " + file("next.json") +
                         " --expert-mb 0 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["windows"], 3);
  EXPECT_EQ(j["load"]["select"], "dataset=wikitext,iteration=2");
  // Free moves after a shift of corpus: the plan follows it.
  EXPECT_GT(j["moved_experts"].get<int64_t>(), 0);
  EXPECT_LT(j["after"]["mean_max_over_mean"].get<double>(), j["before"]["mean_max_over_mean"].get<double>());
  omni::testing::spit(file("other.csv"), "10,10,10\n");
  auto bad = run_omniplace("plan --load " + kQwen + " --select dataset=wikitext,iteration=0 --load " + file("other.csv") +
                           " --num-ranks 12 --output " + file("x.json"));
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_NE(bad.out.find("--load 2 of 2"), std::string::npos) << bad.out;
}

TEST_F(CliPlanTest, CoactivationLocalityReadsTheMatrix) {
  // 1 layer x 4 experts, 4 ranks on 2 hosts: experts 0+3 and 1+2 fire together.
  omni::testing::spit(file("load.csv"), "10,10,10,10\n");
  omni::NpyArray a;
  a.dtype = omni::NpyDtype::kInt64;
  a.shape = {1, 4, 4};
  a.ints = {0, 0, 0, 9, 0, 0, 9, 0, 0, 9, 0, 0, 9, 0, 0, 0};
  ASSERT_TRUE(omni::write_npy(file("co.npy"), a).ok());
  auto r = run_omniplace("plan --load " + file("load.csv") + " --planner 'omni(locality=coactivation)' --num-ranks 4 "
                         "--num-nodes 2 --coactivation " + file("co.npy") + " --output " + file("co_plan.json"));
  ASSERT_EQ(r.code, 0) << r.out;
  auto f = omni::read_placement_file(file("co_plan.json"));
  ASSERT_TRUE(f.ok()) << f.status();
  const auto& p = f->placement;
  auto host_of = [&](omni::ExpertId x) { return p.rank_of(0, p.replicas(0, x)[0]) / 2; };
  EXPECT_EQ(host_of(0), host_of(3)) << r.out;
  EXPECT_EQ(host_of(1), host_of(2)) << r.out;
  EXPECT_NE(host_of(0), host_of(1)) << r.out;

  a.shape = {1, 4, 2};
  a.ints.resize(8);
  ASSERT_TRUE(omni::write_npy(file("bad_co.npy"), a).ok());
  auto bad = run_omniplace("plan --load " + file("load.csv") + " --planner 'omni(locality=coactivation)' "
                           "--num-ranks 4 --num-nodes 2 --coactivation " + file("bad_co.npy") + " --output x.json");
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_NE(bad.out.find("shape [1, 4, 4]"), std::string::npos) << bad.out;
}

// eval's coverage lines on a hand-computed case: 4 ranks x 2 slots on 2 hosts (ranks 0-1, 2-3),
// expert 0 on ranks 0, 1 (host 0 only), 1 on ranks 0, 2, 2 on ranks 1, 3, 3 on rank 2 only; loads 10..40.
TEST(CliEvalCoverage, HandComputedCase) {
  omni::testing::ScratchDir dir;
  omni::testing::spit(dir.file("p.json"),
                      "{\"format\": \"omniplacement.placement\", \"version\": 1, \"num_ranks\": 4, \"num_experts\": 4, "
                      "\"slots_per_rank\": [2], \"phy2log\": [[0, 1, 0, 2, 1, 3, 2, -1]]}");
  omni::testing::spit(dir.file("load.csv"), "10,20,30,40\n");
  const std::string args = "eval --placement " + dir.file("p.json") + " --load " + dir.file("load.csv") +
                           " --ranks-per-host 2";
  auto r = run_omniplace(args);
  ASSERT_EQ(r.code, 0) << r.out;
  // Any rank: experts 0, 1, 2 survive (3/4; load 60/100); rank 2 alone holds expert 3 (40%).
  EXPECT_NE(r.out.find("coverage, any single rank failure: 75.0% of experts, 60.0% of load survive; worst rank 2 "
                       "loses 1 experts (40.0% of load)"),
            std::string::npos)
      << r.out;
  // Any host: experts 1, 2 survive (2/4; load 50/100); hosts 0 and 1 each lose one expert, the tie goes to
  // the lower id: host 0 loses expert 0 (10%).
  EXPECT_NE(r.out.find("coverage, any single host failure: 50.0% of experts, 50.0% of load survive; worst host 0 "
                       "loses 1 experts (10.0% of load)"),
            std::string::npos)
      << r.out;
  auto j = run_omniplace(args + " --json");
  ASSERT_EQ(j.code, 0) << j.out;
  const auto c = nlohmann::json::parse(j.out)["coverage"];
  EXPECT_DOUBLE_EQ(c["rank"]["expert_share"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(c["rank"]["load_share"].get<double>(), 0.6);
  EXPECT_EQ(c["rank"]["worst_domain"], 2);
  EXPECT_DOUBLE_EQ(c["rank"]["worst_lost_load_share"].get<double>(), 0.4);
  EXPECT_DOUBLE_EQ(c["host"]["expert_share"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(c["host"]["load_share"].get<double>(), 0.5);
  EXPECT_EQ(c["host"]["worst_domain"], 0);
  EXPECT_EQ(c["host"]["worst_lost_experts"], 1);
  EXPECT_DOUBLE_EQ(c["host"]["worst_lost_load_share"].get<double>(), 0.1);
}

struct ExitCase {
  const char* name;
  std::string args;
  int code;
  const char* message;
};

class CliPlanExit : public ::testing::TestWithParam<ExitCase> {};

TEST_P(CliPlanExit, CodeAndMessage) {
  const ExitCase& c = GetParam();
  auto r = run_omniplace(c.args);
  EXPECT_EQ(r.code, c.code) << r.out;
  EXPECT_NE(r.out.find(c.message), std::string::npos) << r.out;
}

const std::string kQwenSel = "--load " + kQwen + " --select dataset=bookcorpus,iteration=0 ";

INSTANTIATE_TEST_SUITE_P(
    Cases, CliPlanExit,
    ::testing::Values(
        ExitCase{"MissingOutput", "plan " + kQwenSel + "--num-ranks 12", 2, "--output is required"},
        ExitCase{"MissingRanks", "plan " + kQwenSel + "--output /tmp/omni_plan_unused.json", 2, "--num-ranks is required"},
        ExitCase{"TwoSlotFlags", "plan " + kQwenSel + "--num-ranks 12 --num-replicas 72 --redundant-per-rank 1 --output x.json", 2,
                 "excludes"},
        ExitCase{"UnknownPlanner", "plan " + kQwenSel + "--num-ranks 12 --planner magic --output x.json", 1, "magic"},
        ExitCase{"MissingLoad", "plan --load /nonexistent/load.npy --num-ranks 4 --output x.json", 1, "/nonexistent/load.npy"},
        ExitCase{"RanksNotMultipleOfNodes", "plan " + kQwenSel + "--num-ranks 12 --num-nodes 5 --output x.json", 1,
                 "not a multiple of --num-nodes 5"},
        ExitCase{"BadReplicas", "plan " + kQwenSel + "--num-ranks 12 --num-replicas 70 --output x.json", 1, "70"},
        ExitCase{"SharesInPattern", "plan " + kQwenSel + "--num-ranks 12 --planner 'omni(shares=true)' --output /tmp/omni_plan_x.npy", 1,
                 "cannot hold per-replica shares"},
        ExitCase{"MoveFlagTwice", "plan " + kQwenSel + "--num-ranks 12 --planner 'omni(max_moves_per_rank=1)' --max-moves-per-rank 2 --output x.json",
                 1, "both set max_moves_per_rank"},
        ExitCase{"DumpNeedsCurrent", "plan --load " + kData + "dumps/sc_64eps_4devices_step0.txt --num-ranks 4 --output x.json", 1,
                 "give it with --current P"},
        ExitCase{"Help", "plan --help", 0, "Examples:"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
