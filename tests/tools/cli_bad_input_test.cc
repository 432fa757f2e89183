// omniplace on bad input, through the real binary: every numeric option of
// every subcommand refuses an out-of-range value naming the option (a table,
// checked against --help so that a new option cannot be missed), options that
// do not apply are refused, crafted files give a clear error and exit 1 (never
// a signal, a hang or gigabytes of memory), and the demo says when its
// survivors cannot restore every expert.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../io/io_test_util.h"
#include "cli_run.h"

namespace {

using Result = omni::testing::CliResult;

Result run(const std::string& args) { return omni::testing::run_omniplace(args); }

// Required arguments that let each subcommand reach its option checks.
std::string base(const std::string& sub) {
  if (sub == "gen-trace") return "gen-trace --out /nonexistent/out";
  if (sub == "plan") return "plan --load /nonexistent/l.csv --output /nonexistent/o.json";
  if (sub == "diff") return "diff /nonexistent/a.json /nonexistent/b.json";
  if (sub == "eval") return "eval --placement /nonexistent/p.json --load /nonexistent/l.csv";
  if (sub == "convert") return "convert /nonexistent/a.json /nonexistent/b.json";
  if (sub == "validate") return "validate /nonexistent/a.json";
  return sub;
}

struct BadFlag {
  std::string sub;
  std::string flag;
  std::string value;
};

// One out-of-range value for every numeric option of every subcommand.
const std::vector<BadFlag>& bad_flags() {
  static const std::vector<BadFlag> table = [] {
    std::vector<BadFlag> t = {
        {"demo", "--ranks", "0"},  // was SIGFPE
        {"demo", "--ranks-per-host", "-1"},
        {"demo", "--slots-per-rank", "-1"},
        {"demo", "--steps", "0"},
        {"demo", "--steps-per-window", "0"},
        {"demo", "--interval", "0"},
        {"demo", "--cadence", "0"},
        {"demo", "--layers-per-commit", "-1"},
        {"demo", "--tokens", "0"},
        {"demo", "--max-moves-per-rank", "-2"},
        {"demo", "--min-gain", "nan"},
        {"demo", "--stage-wait-ms", "-1"},
        {"demo", "--ema-decay", "1"},
        {"demo", "--plan-samples", "0"},
        {"demo", "--volatility", "-0.5"},
        {"demo", "--shift-check", "-2"},
        {"demo", "--shift-threshold", "nan"},
        {"demo", "--seed", "abc"},  // any uint64 is a seed
        {"demo", "--fail-rank", "-1"},
        {"demo", "--fail-host", "-2"},
        {"demo", "--fail-at-step", "-5"},
        {"demo", "--stall-rank", "-1"},
        {"demo", "--stall-at-step", "-5"},
        {"demo", "--stall-ms", "0"},
        {"demo", "--heartbeat-ms", "0"},
        {"demo", "--heartbeat-timeout-ms", "0"},
        {"simulate", "--steps", "0"},
        {"simulate", "--interval", "0"},
        {"simulate", "--migration-per-round", "-1"},  // was accepted
        {"simulate", "--staging-bytes-per-rank", "-1"},
        {"simulate", "--layers-per-commit", "-1"},
        {"simulate", "--history", "0"},
        {"simulate", "--samples", "0"},
        {"simulate", "--shift-check", "-2"},  // -1 is the runtime's default (a tenth of the interval)
        {"simulate", "--shift-threshold", "inf"},
        {"simulate", "--window-steps", "0"},
        {"simulate", "--ranks", "0"},
        {"simulate", "--ranks-per-host", "0"},
        {"simulate", "--slots-per-rank", "-1"},
        {"simulate", "--groups", "-1"},
        {"simulate", "--expert-mb", "0"},
        {"simulate", "--dispatch-bytes", "-1"},
        {"simulate", "--combine-bytes", "nan"},
        {"simulate", "--compute-us-per-token", "-1"},
        {"simulate", "--compute-us-per-replica", "-1"},
        {"simulate", "--layer-overhead-us", "-1"},
        {"simulate", "--same-host-gbps", "0"},
        {"simulate", "--cross-host-gbps", "-3"},
        {"simulate", "--latency-us", "-1"},
        {"simulate", "--allgather-us", "-1"},
        {"gen-trace", "--windows", "0"},
        {"gen-trace", "--window-steps", "0"},
        {"plan", "--num-ranks", "0"},
        {"plan", "--num-nodes", "0"},
        {"plan", "--num-replicas", "0"},
        {"plan", "--redundant-per-rank", "-1"},
        {"plan", "--redundant-budget", "-1"},
        {"plan", "--num-groups", "0"},
        {"plan", "--max-moves-per-rank", "-2"},
        {"plan", "--min-gain", "nan"},
        {"plan", "--window-steps", "0"},
        {"plan", "--interval-steps", "-1"},
        {"plan", "--expert-mb", "nan"},
        {"plan", "--us-per-token", "0"},
        {"plan", "--show-moves", "-1"},
        {"diff", "--expert-bytes", "0"},
        {"diff", "--max-per-round", "-1"},
        {"diff", "--ranks-per-host", "0"},
        {"eval", "--ranks-per-host", "0"},
        {"convert", "--ranks-per-host", "-1"},
        {"validate", "--max-replicas", "-1"},
    };
    // The synthetic-workload options of simulate and gen-trace.
    for (const char* sub : {"simulate", "gen-trace"}) {
      for (const auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{
               {"--layers", "0"},
               {"--experts", "0"},
               {"--top-k", "0"},
               {"--tokens", "0"},
               {"--skew-param", "-1"},
               {"--skew-layer-spread", "2"},
               {"--drift", "nan"},
               {"--phase-period", "-1"},
               {"--phase-fraction", "1.5"},
               {"--burst-prob", "-0.1"},
               {"--burst-factor", "inf"},
               {"--burst-steps", "0"},
               {"--group-size", "0"},
               {"--group-sigma", "5"},
               {"--seed", "x"},
           }) {
        t.push_back({sub, flag, value});
      }
    }
    return t;
  }();
  return table;
}

TEST(CliBadInput, EveryNumericOptionRefusesAnOutOfRangeValueNamingIt) {
  for (const BadFlag& b : bad_flags()) {
    // A value wrongly accepted would start the command: the timeout ends it (exit 124).
    Result r = omni::testing::run_omniplace(base(b.sub) + " " + b.flag + " " + b.value, /*timeout_s=*/30);
    const std::string what = b.sub + " " + b.flag + " " + b.value + "\n" + r.out.substr(0, 400);
    EXPECT_EQ(r.code, 2) << what;
    EXPECT_NE(r.out.find(b.flag), std::string::npos) << what;
  }
}

TEST(CliBadInput, TheTableCoversEveryNumericOption) {
  // Every option whose value is a number (CLI11 prints INT, UINT or FLOAT) in
  // each subcommand's --help has a row in bad_flags().
  std::set<std::pair<std::string, std::string>> covered;
  for (const BadFlag& b : bad_flags()) covered.insert({b.sub, b.flag});
  const std::regex numeric(R"(^\s+(?:-\w,)?(--[a-z0-9-]+) (INT|UINT|FLOAT)\b)");
  int seen = 0;
  for (const char* sub : {"demo", "simulate", "gen-trace", "plan", "diff", "eval", "convert", "validate", "info"}) {
    Result help = run(std::string(sub) + " --help");
    ASSERT_EQ(help.code, 0) << help.out;
    std::istringstream lines(help.out);
    for (std::string line; std::getline(lines, line);) {
      std::smatch m;
      if (!std::regex_search(line, m, numeric)) continue;
      ++seen;
      EXPECT_TRUE(covered.count({sub, m[1].str()})) << sub << " " << m[1] << " has no bad-value row: " << line;
    }
  }
  EXPECT_GE(seen, 80);  // the parse found the options (there are 103 today)
}

TEST(CliBadInput, OptionsThatDoNotApplyAreRefused) {
  omni::testing::ScratchDir dir;
  omni::testing::spit(dir.file("l.csv"), "1,2,3\n4,5,6\n");
  omni::testing::spit(dir.file("p.json"), R"({"format": "omniplacement.placement", "version": 1, "num_ranks": 2,
    "num_experts": 3, "slots_per_rank": [2], "phy2log": [[0, 1, 2, -1]]})");
  // --select on a plain load CSV was silently ignored.
  Result r = run("validate " + dir.file("l.csv") + " --select dataset=wikitext,iteration=0");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--select"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("load file, which has a single window"), std::string::npos) << r.out;
  r = run("validate " + dir.file("p.json") + " --select dataset=wikitext");
  EXPECT_EQ(r.code, 2) << r.out;
  r = run("validate " + dir.file("l.csv") + " --placement " + dir.file("p.json"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--placement"), std::string::npos) << r.out;
  r = run("eval --placement contiguous:3:1 --load " + dir.file("l.csv") + " --select dataset=x");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("plain load CSV"), std::string::npos) << r.out;
  // Demo options that contradict each other.
  r = run("demo --ranks 12 --ranks-per-host 5");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--ranks-per-host 5 must divide --ranks 12"), std::string::npos) << r.out;
  r = run("demo --ranks 4 --fail-rank 4");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--fail-rank 4: ranks are 0..3"), std::string::npos) << r.out;
  r = run("demo --steps 10 --fail-rank 1 --fail-at-step 10");
  EXPECT_EQ(r.code, 2) << r.out;
  r = run("demo --heartbeat-ms 50 --heartbeat-timeout-ms 50");
  EXPECT_EQ(r.code, 2) << r.out;
  r = run("demo --ranks 4 --ranks-per-host 4 --fail-host 0");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("leave at least one survivor"), std::string::npos) << r.out;
  // Expert groups that do not divide the experts were accepted.
  r = run("simulate --groups 7 --steps 2 --no-progress");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("--groups 7 does not divide the 256 experts"), std::string::npos) << r.out;
}

TEST(CliBadInput, CraftedFilesGiveAClearErrorAndExit1) {
  omni::testing::ScratchDir dir;
  const std::string head = R"({"format": "omniplacement.placement", "version": 1, "num_ranks": 2, "num_experts": 2, )";
  struct Case {
    std::string name, bytes, args, message;
  };
  const std::vector<Case> cases = {
      // 200 KB of nested arrays crashed validate and eval (recursive dump()).
      {"nested.json", std::string(100000, '[') + std::string(100000, ']'), "validate F",
       "the top level must be a JSON object, got array"},
      {"nested_logcnt.json",
       head + R"("slots_per_rank": [1], "phy2log": [[0, 1]], "logcnt": [[)" + std::string(100000, '[') +
           std::string(100000, ']') + "]]}",
       "eval --placement F --load LOAD", "logcnt[0][0] must be a number, got an array"},
      {"dup.json", head + R"("slots_per_rank": [1], "phy2log": [[0, 1]], "num_experts": 2})", "validate F",
       "key \"num_experts\" appears twice"},
      {"slot.json", head + R"("slots_per_rank": [1], "phy2log": [[0, 1]], "log2phy": [[[4294967296], [1]]]})",
       "validate F", "log2phy[0][0] (layer 0, expert 0)[0] = 4294967296 is out of range [0, 1]"},
      {"inf.csv", "1.7e308,1.7e308\n1,2\n", "eval --placement contiguous:2:1 --load F", "kMaxLayerLoad"},
      {"int64.csv", "9223372036854775807,9223372036854775807\n", "plan --load F --num-ranks 2 --output OUT",
       "kMaxLayerLoad"},
      {"comment.yaml", "# a comment\nplanner: " + std::string(3000, '[') + std::string(3000, ']') + "\n", "validate F",
       "nested collections"},
  };
  omni::testing::spit(dir.file("load.csv"), "3,4\n");
  for (const Case& c : cases) {
    omni::testing::spit(dir.file(c.name), c.bytes);
    std::string args = c.args;
    args.replace(args.find('F'), 1, dir.file(c.name));
    if (args.find("LOAD") != std::string::npos) args.replace(args.find("LOAD"), 4, dir.file("load.csv"));
    if (args.find("OUT") != std::string::npos) args.replace(args.find("OUT"), 3, dir.file("out.json"));
    Result r = run(args);
    EXPECT_EQ(r.code, 1) << c.name << "\n" << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.name << "\n" << r.out;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("out.json")));  // no plan written from an overflowing load
}

TEST(CliBadInput, NonRegularFilesAreRefusedWithoutBlocking) {
  omni::testing::ScratchDir dir;
  for (const char* name : {"f.json", "f.csv", "f.npy", "f.txt", "f.yaml", "f.bin"}) {
    ASSERT_EQ(::mkfifo(dir.file(name).c_str(), 0600), 0);
    // The timeout turns a hang (reading a FIFO blocked forever) into exit 124.
    Result r = omni::testing::run_omniplace("validate " + dir.file(name), /*timeout_s=*/60);
    EXPECT_EQ(r.code, 1) << name << "\n" << r.out;
    EXPECT_NE(r.out.find("is a FIFO (named pipe), not a regular file"), std::string::npos) << r.out;
  }
  Result r = omni::testing::run_omniplace("eval --placement contiguous:2:1 --load " + dir.file("f.csv"), 60);
  EXPECT_EQ(r.code, 1) << r.out;
  std::filesystem::create_directories(dir.file("d.json"));
  r = run("validate " + dir.file("d.json"));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("is a directory"), std::string::npos) << r.out;
  std::filesystem::create_symlink("/dev/zero", dir.file("z.npy"));
  r = run("validate " + dir.file("z.npy"));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("is a character device"), std::string::npos) << r.out;
}

// The JSON object in `out` (the demo prints warnings to stderr beside it).
nlohmann::json json_in(const std::string& out) {
  const size_t b = out.find("{\n");
  const size_t e = out.rfind('}');
  if (b == std::string::npos || e == std::string::npos || e < b) return nlohmann::json::value_t::discarded;
  return nlohmann::json::parse(out.substr(b, e + 1 - b), nullptr, false);
}

// Peak resident memory (KiB) of `omniplace args`, from wait4().
long peak_rss_kib(const std::vector<std::string>& args) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(OMNIPLACE_PATH));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (!std::freopen("/dev/null", "w", stdout) || !std::freopen("/dev/null", "w", stderr)) ::_exit(127);
    ::execv(OMNIPLACE_PATH, argv.data());
    ::_exit(127);
  }
  int status = 0;
  struct rusage ru {};
  if (::wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status)) return -1;
  return ru.ru_maxrss;
}

TEST(CliBadInput, ATraceNamingFarLayersStaysSmall) {
  // 1.7 MB of rows naming layer 16000 in 60000 windows: each window used to get
  // a 16001-row table (gigabytes, std::bad_alloc under a 2 GB limit).
  omni::testing::ScratchDir dir;
  std::string text = ",dataset,iteration,layer_idx,0,1,2,3\n";
  for (int i = 0; i < 60000; ++i) text += std::to_string(i) + ",d," + std::to_string(i) + ",16000,1,2,3,4\n";
  omni::testing::spit(dir.file("far.csv"), text);
  omni::testing::spit(dir.file("tiny.csv"), "1,2,3\n");
  const long baseline = peak_rss_kib({"validate", dir.file("tiny.csv")});
  const long peak = peak_rss_kib({"validate", dir.file("far.csv")});
  ASSERT_GT(baseline, 0);
  ASSERT_GT(peak, 0);
  const long file_kib = static_cast<long>(text.size() / 1024);
  std::printf("  omniplace validate: %ld KiB resident for a tiny CSV, %ld KiB for the %ld KiB trace\n", baseline, peak,
              file_kib);
  // docs/formats.md: 10 x the file + 4 MiB, plus up to 512 bytes per window (60000 here).
  EXPECT_LE(peak, baseline + 10 * file_kib + 4096 + 60000 / 2);
  Result r = run("validate " + dir.file("far.csv"));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("has no row for layer 0"), std::string::npos) << r.out;
}

TEST(CliBadInput, DemoSaysWhenSurvivorsCannotRestoreEveryExpert) {
  // At the defaults (12 ranks x 6 slots, hosts of 4) losing host 1 leaves 8 x 6 =
  // 48 slots for 60 experts. The run used to exit 0 without saying why experts
  // stayed lost; now the JSON (and the table) carry the warning, --strict exits 1.
  Result r = run("demo --fail-host 1 --steps 20 --fail-at-step 10 --json --strict");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("--strict: capacity cannot restore"), std::string::npos) << r.out;
  const auto j = json_in(r.out);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  ASSERT_TRUE(j["capacity_warning"].is_string()) << r.out;
  EXPECT_NE(j["capacity_warning"].get<std::string>().find("48 slots per layer for 60 experts"), std::string::npos);
  EXPECT_EQ(j["wrong_outputs"].get<int64_t>(), 0);
  // With enough slots there is no warning: 8 survivors x 8 slots = 64 >= 60.
  r = run("demo --fail-host 1 --slots-per-rank 8 --steps 20 --fail-at-step 10 --json --strict");
  EXPECT_EQ(r.code, 0) << r.out;
  const auto k = json_in(r.out);
  ASSERT_FALSE(k.is_discarded()) << r.out;
  EXPECT_TRUE(k["capacity_warning"].is_null()) << r.out;
}

}  // namespace
