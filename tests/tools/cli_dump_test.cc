// omniplace eval --load DIR: a directory of activation window dumps (.npy +
// JSON sidecars, io/dump_writer.h) is read as the sum of its windows, and gives
// the same evaluation as that sum given as a CSV. Global-slot windows are
// turned into expert loads under the placement given.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "../io/io_test_util.h"
#include "cli_run.h"
#include "omniplacement/io/dump_writer.h"

namespace {

using Result = omni::testing::CliResult;

Result run(const std::string& args) { return omni::testing::run_omniplace(args); }

// 2 ranks, 3 experts, 2 slots per rank. Layer 0: [0 1 | 0 2], layer 1: [1 2 | 0 -1].
const char* kPlacement = R"({"format": "omniplacement.placement", "version": 1, "num_ranks": 2, "num_experts": 3,
  "slots_per_rank": [2, 2], "phy2log": [[0, 1, 0, 2], [1, 2, 0, -1]]})";

nlohmann::json eval_layers(const std::string& placement, const std::string& load) {
  const Result r = run("eval --placement " + placement + " --load " + load + " --ranks-per-host 1 --json");
  EXPECT_EQ(r.code, 0) << r.out;
  if (r.code != 0) return {};
  return nlohmann::json::parse(r.out)["layers"];
}

TEST(CliDumpTest, EvalOfADumpDirectoryEqualsEvalOfTheSummedLoad) {
  omni::testing::ScratchDir dir;
  omni::testing::spit(dir.file("p.json"), kPlacement);
  // Two expert windows: [[4,1,2],[3,3,0]] and [[6,3,4],[3,3,6]]; sum [[10,4,6],[6,6,6]].
  omni::DumpMetadata m;
  ASSERT_TRUE(omni::write_dump_window(dir.file("dumps"), "window", *omni::LoadMatrix::from_counts(2, 3, {4, 1, 2, 3, 3, 0}), m).ok());
  m.window = 1;
  ASSERT_TRUE(omni::write_dump_window(dir.file("dumps"), "window", *omni::LoadMatrix::from_counts(2, 3, {6, 3, 4, 3, 3, 6}), m).ok());
  omni::testing::spit(dir.file("sum.csv"), "10,4,6\n6,6,6\n");
  const nlohmann::json from_dir = eval_layers(dir.file("p.json"), dir.file("dumps"));
  const nlohmann::json from_csv = eval_layers(dir.file("p.json"), dir.file("sum.csv"));
  ASSERT_FALSE(from_dir.is_null());
  EXPECT_EQ(from_dir, from_csv);
  EXPECT_DOUBLE_EQ(from_dir[0]["max"].get<double>(), 11);  // rank 1: 10/2 + 6
}

TEST(CliDumpTest, GlobalSlotDumpsAreReadUnderThePlacement) {
  omni::testing::ScratchDir dir;
  omni::testing::spit(dir.file("p.json"), kPlacement);
  // Slot counts giving the expert load [[10,4,6],[6,6,6]]: layer 0 slots [0 1 | 0 2] = [5, 4, 5, 6],
  // layer 1 slots [1 2 | 0 -1] = [6, 6, 6, 0].
  omni::DumpMetadata m;
  m.id_space = "global_slot";
  ASSERT_TRUE(omni::write_dump_window(dir.file("slots"), "window",
                                      *omni::LoadMatrix::from_counts(2, 4, {5, 4, 5, 6, 6, 6, 6, 0}), m).ok());
  omni::testing::spit(dir.file("sum.csv"), "10,4,6\n6,6,6\n");
  EXPECT_EQ(eval_layers(dir.file("p.json"), dir.file("slots")), eval_layers(dir.file("p.json"), dir.file("sum.csv")));
  // A generated placement is sized from the load, so global-slot windows cannot be read under it.
  const Result r = run("eval --placement contiguous:2:2 --load " + dir.file("slots"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("need the placement in force"), std::string::npos) << r.out;
}

TEST(CliDumpTest, AnEmptyDirectoryIsAnError) {
  omni::testing::ScratchDir dir;
  omni::testing::spit(dir.file("p.json"), kPlacement);
  std::filesystem::create_directories(dir.file("empty"));
  const Result r = run("eval --placement " + dir.file("p.json") + " --load " + dir.file("empty"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("no activation window sidecars"), std::string::npos) << r.out;
}

}  // namespace
