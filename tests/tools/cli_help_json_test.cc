// omniplace help, and --json on validate / convert / gen-trace / info, through
// the real binary: `help` prints what --help prints, every command's usage has
// an example, and each --json run prints one JSON object on stdout with the
// facts of the text output while errors stay on stderr with a non-zero exit.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "../io/io_test_util.h"
#include "cli_run.h"

namespace {

using Result = omni::testing::CliResult;
using nlohmann::json;

Result run(const std::string& args) { return omni::testing::run_omniplace_split(args); }

const std::string kData = std::string(OMNI_SOURCE_DIR) + "/data/";
const char* kCommands[] = {"demo", "validate", "convert",   "plan", "eval",
                           "diff", "simulate", "gen-trace", "info", "help"};

// Parses stdout as exactly one JSON object (nlohmann rejects trailing text).
json parse_object(const Result& r) {
  json j = json::parse(r.out);
  EXPECT_TRUE(j.is_object()) << r.out;
  return j;
}

TEST(CliHelp, HelpPrintsTheUsageOfOmniplace) {
  Result help = run("help");
  Result dash = run("--help");
  ASSERT_EQ(help.code, 0) << help.err;
  EXPECT_EQ(dash.code, 0);
  EXPECT_EQ(help.out, dash.out);
  for (const char* cmd : kCommands) EXPECT_NE(help.out.find(std::string("\n  ") + cmd + " "), std::string::npos) << cmd;
}

TEST(CliHelp, HelpCommandEqualsCommandDashDashHelpAndHasAnExample) {
  for (const char* cmd : kCommands) {
    Result help = run(std::string("help ") + cmd);
    Result dash = run(std::string(cmd) + " --help");
    ASSERT_EQ(help.code, 0) << cmd << ": " << help.err;
    EXPECT_EQ(dash.code, 0) << cmd;
    EXPECT_EQ(help.out, dash.out) << cmd;
    EXPECT_NE(help.out.find("Example"), std::string::npos) << cmd << "\n" << help.out;
    EXPECT_NE(help.out.find("  omniplace " + std::string(cmd)), std::string::npos) << cmd << "\n" << help.out;
  }
}

TEST(CliHelp, UnknownCommandIsAUsageErrorOnStderr) {
  Result r = run("help no-such-command");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("unknown command 'no-such-command'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("gen-trace"), std::string::npos) << r.err;  // lists the valid ones
}

TEST(CliJson, EveryCommandHasJson) {
  for (const char* cmd : kCommands) {
    if (std::string(cmd) == "help") continue;
    Result r = run(std::string(cmd) + " --help");
    EXPECT_NE(r.out.find("--json"), std::string::npos) << cmd << "\n" << r.out;
  }
}

TEST(CliJson, ValidatePlacement) {
  Result r = run("validate " + kData + "placements/qwen15moe_contiguous_12ranks_6slots.json --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = parse_object(r);
  EXPECT_EQ(j["kind"], "placement");
  EXPECT_EQ(j["valid"], true);
  EXPECT_EQ(j["placement"]["num_layers"], 12);
  EXPECT_EQ(j["placement"]["num_ranks"], 12);
  EXPECT_EQ(j["placement"]["num_experts"], 60);
  EXPECT_EQ(j["placement"]["slots_per_rank"], json(std::vector<int>(12, 6)));
  EXPECT_EQ(j["placement"]["summary"], "12 layers, 12 ranks, 60 experts, 6 slots per rank");
  EXPECT_EQ(j["topology"], "12 ranks on 3 hosts (4 per host)");
  EXPECT_EQ(j["replicas_per_layer"]["min"], 60);
  EXPECT_EQ(j["replicas_per_layer"]["max"], 60);
  EXPECT_EQ(j["same_rank_duplicates"], 0);
  EXPECT_TRUE(j["violations"].empty());
  // Layer-wise uneven: 256 replicas in some layers, 288 in others (the text says "256 to 288").
  Result u = run("validate " + kData +
                 "patterns/DSV3_0427_GSM8K_decode_RedFullLays_+10_58_MoELayers_32_dies_epmaxdeploy_12.npy --json");
  ASSERT_EQ(u.code, 0) << u.err;
  const json ju = parse_object(u);
  EXPECT_EQ(ju["replicas_per_layer"]["min"], 256);
  EXPECT_EQ(ju["replicas_per_layer"]["max"], 288);
  EXPECT_EQ(ju["topology"], nullptr);
}

TEST(CliJson, ValidateListsViolationsAndFailsOnStderr) {
  omni::testing::ScratchDir dir;
  // Two replicas of expert 0 on rank 0: refused with --strict.
  omni::testing::spit(dir.file("dup.json"), R"({"format": "omniplacement.placement", "version": 1, "num_ranks": 2,
    "num_experts": 2, "slots_per_rank": [2], "phy2log": [[0, 0, 1, -1]]})");
  Result r = run("validate " + dir.file("dup.json") + " --strict --json");
  EXPECT_EQ(r.code, 1);
  const json j = parse_object(r);
  EXPECT_EQ(j["valid"], false);
  EXPECT_EQ(j["same_rank_duplicates"], 1);
  ASSERT_EQ(j["violations"].size(), 1u) << j.dump();
  EXPECT_EQ(j["violations"][0]["kind"], "same-rank-duplicate");
  EXPECT_EQ(j["violations"][0]["layer"], 0);
  EXPECT_EQ(j["violations"][0]["rank"], 0);
  EXPECT_EQ(j["violations"][0]["expert"], 0);
  EXPECT_NE(r.err.find("1 violation(s)"), std::string::npos) << r.err;
  // A file that cannot be read: nothing on stdout, the reason on stderr.
  Result missing = run("validate " + dir.file("missing.json") + " --json");
  EXPECT_EQ(missing.code, 1);
  EXPECT_TRUE(missing.out.empty()) << missing.out;
  EXPECT_NE(missing.err.find("missing.json"), std::string::npos) << missing.err;
}

TEST(CliJson, ValidateLoadTraceDumpAndConfig) {
  omni::testing::ScratchDir dir;
  omni::testing::spit(dir.file("l.csv"), "10,4,6\n6,6,6\n");
  Result load = run("validate " + dir.file("l.csv") + " --json");
  ASSERT_EQ(load.code, 0) << load.err;
  json j = parse_object(load);
  EXPECT_EQ(j["kind"], "load");
  EXPECT_EQ(j["load"], json({{"num_layers", 2}, {"num_experts", 3}, {"kind", "counts"}, {"total", 38.0}}));

  Result trace = run("validate " + kData +
                     "traces/qwen15moe_expert_freq_by_iteration.csv --select dataset=wmt19,iteration=0 --json");
  ASSERT_EQ(trace.code, 0) << trace.err;
  j = parse_object(trace);
  EXPECT_EQ(j["kind"], "trace");
  EXPECT_EQ(j["trace"]["num_windows"], 80);  // 4 datasets x 20 iterations
  EXPECT_EQ(j["trace"]["num_layers"], 12);
  EXPECT_EQ(j["trace"]["num_experts"], 60);
  EXPECT_EQ(j["trace"]["layout"], "per iteration");
  EXPECT_EQ(j["selected"]["select"], "dataset=wmt19,iteration=0");
  EXPECT_EQ(j["selected"]["num_layers"], 12);
  // The selected window converted to a file holds the same total.
  Result conv = run("convert " + kData + "traces/qwen15moe_expert_freq_by_iteration.csv " + dir.file("w.csv") +
                    " --select dataset=wmt19,iteration=0 --json");
  ASSERT_EQ(conv.code, 0) << conv.err;
  EXPECT_EQ(parse_object(conv)["load"]["total"], j["selected"]["total"]);
  EXPECT_GT(j["selected"]["total"].get<double>(), 0);

  Result dump = run("validate " + kData + "dumps/test_for_optimizer_step0.txt --placement " + kData +
                    "patterns/placement_pattern_test_for_optimizer.txt --json");
  ASSERT_EQ(dump.code, 0) << dump.err;
  j = parse_object(dump);
  EXPECT_EQ(j["kind"], "dump");
  EXPECT_EQ(j["load"]["num_layers"], 20);
  EXPECT_EQ(j["load"]["num_experts"], 8);

  omni::testing::spit(dir.file("ok.yaml"),
                      "pattern_path: " + kData + "placements/qwen15moe_contiguous_12ranks_6slots.json\n");
  Result conf = run("validate " + dir.file("ok.yaml") + " --json");
  ASSERT_EQ(conf.code, 0) << conf.err;
  j = parse_object(conf);
  EXPECT_EQ(j["kind"], "config");
  EXPECT_EQ(j["config"]["planner"], "omni");  // the YAML default is the PlacementManager's
  EXPECT_EQ(j["pattern"]["num_layers"], 12);
  EXPECT_EQ(j["valid"], true);
  // The pattern has 12 layers, the config says 58: the facts are printed, the error goes to stderr.
  omni::testing::spit(dir.file("bad.yaml"), "pattern_path: " + kData +
                                                "placements/qwen15moe_contiguous_12ranks_6slots.json\n"
                                                "max_moe_layer_num: 58\n");
  Result bad = run("validate " + dir.file("bad.yaml") + " --json");
  EXPECT_EQ(bad.code, 1);
  j = parse_object(bad);
  EXPECT_EQ(j["valid"], false);
  EXPECT_NE(bad.err.find("max_moe_layer_num = 58 but the pattern has 12 layers"), std::string::npos) << bad.err;
}

TEST(CliJson, ConvertPlacementAndLoad) {
  omni::testing::ScratchDir dir;
  const std::string src = kData + "patterns/placement_pattern_3d_v3_indevrrori0322_58moe_4devices_SC_64eps.bin";
  Result r = run("convert " + src + " " + dir.file("a.json") + " --ranks-per-host 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = parse_object(r);
  EXPECT_EQ(j["kind"], "placement");
  EXPECT_EQ(j["input"], src);
  EXPECT_EQ(j["output"], dir.file("a.json"));
  EXPECT_EQ(j["topology"], "4 ranks on 2 hosts (2 per host)");
  // What convert says it wrote is what validate reads back.
  Result back = run("validate " + dir.file("a.json") + " --json");
  ASSERT_EQ(back.code, 0) << back.err;
  EXPECT_EQ(parse_object(back)["placement"], j["placement"]);
  EXPECT_EQ(j["placement"]["num_layers"], 58);
  EXPECT_EQ(j["placement"]["num_ranks"], 4);

  Result load = run("convert " + kData + "traces/olmoe_expert_counts.csv " + dir.file("l.npy") +
                    " --select domain=github --json");
  ASSERT_EQ(load.code, 0) << load.err;
  j = parse_object(load);
  EXPECT_EQ(j["kind"], "load");
  EXPECT_EQ(j["select"], "domain=github");
  Result read_back = run("validate " + dir.file("l.npy") + " --json");
  ASSERT_EQ(read_back.code, 0) << read_back.err;
  EXPECT_EQ(parse_object(read_back)["load"], j["load"]);

  // Errors: nothing on stdout, the reason on stderr, the usual exit codes.
  Result no_select = run("convert " + kData + "traces/olmoe_expert_counts.csv " + dir.file("l2.npy") + " --json");
  EXPECT_EQ(no_select.code, 1);
  EXPECT_TRUE(no_select.out.empty()) << no_select.out;
  EXPECT_FALSE(no_select.err.empty());
  Result wrong_ext = run("convert " + src + " " + dir.file("a.csv") + " --json");
  EXPECT_EQ(wrong_ext.code, 2);
  EXPECT_TRUE(wrong_ext.out.empty()) << wrong_ext.out;
  EXPECT_NE(wrong_ext.err.find("a placement converts to"), std::string::npos) << wrong_ext.err;
}

TEST(CliJson, GenTrace) {
  omni::testing::ScratchDir dir;
  const std::string out = dir.file("trace");
  const std::string args = "gen-trace --out " + out +
                           " --windows 3 --window-steps 2 --layers 2 --experts 8 --tokens 16 --top-k 2 --seed 7 --json";
  Result r = run(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = parse_object(r);
  EXPECT_EQ(j["out"], out);
  EXPECT_EQ(j["windows"], 3);
  EXPECT_EQ(j["window_steps"], 2);
  EXPECT_EQ(j["num_layers"], 2);
  EXPECT_EQ(j["num_experts"], 8);
  EXPECT_EQ(j["seed"], 7);
  EXPECT_EQ(j["format"], "npy");
  EXPECT_EQ(j["replay"], "omniplace simulate --trace " + out + " --window-steps 2");
  ASSERT_EQ(j["files"].size(), 3u);
  for (const auto& f : j["files"]) {
    Result v = run("validate " + f.get<std::string>() + " --json");
    ASSERT_EQ(v.code, 0) << f << ": " << v.err;
    EXPECT_EQ(parse_object(v)["load"]["num_experts"], 8);
  }
  // The directory now holds windows: an error on stderr, nothing on stdout.
  Result again = run(args);
  EXPECT_EQ(again.code, 1);
  EXPECT_TRUE(again.out.empty()) << again.out;
  EXPECT_NE(again.err.find("already holds window files"), std::string::npos) << again.err;
}

TEST(CliJson, Info) {
  Result r = run("info --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = parse_object(r);
  Result version = run("--version");
  EXPECT_EQ(j["version"].get<std::string>() + "\n", version.out);
  const auto modules = j["modules"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(modules.begin(), modules.end(), "core"), modules.end()) << j.dump();
  ASSERT_FALSE(j["sample_data"].empty());
  const std::filesystem::path data = j["data_dir"].get<std::string>();
  for (const auto& f : j["sample_data"]) {
    const auto path = data / f["path"].get<std::string>();
    ASSERT_TRUE(std::filesystem::exists(path)) << path;
    EXPECT_EQ(std::filesystem::file_size(path), f["bytes"].get<uintmax_t>()) << path;
  }
  // The text output names the same files.
  Result text = run("info");
  for (const auto& f : j["sample_data"]) EXPECT_NE(text.out.find(f["path"].get<std::string>()), std::string::npos);
}

}  // namespace
