// Activation dumps written by PlacementManager (enable_dump, dump_dir) read
// back with io's reader, and the YAML config mapped to the manager's options.
#include <gtest/gtest.h>

#include <barrier>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/io/config.h"
#include "omniplacement/io/dump_writer.h"
#include "omniplacement/runtime/manager_config.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

using testing::ScratchDir;

constexpr int32_t kLayers = 2, kExperts = 6, kSlots = 3, kTokens = 16;

struct Recorded {
  // [rank][step][layer * kExperts + expert]: what each rank recorded, valid ids only.
  std::vector<std::vector<std::vector<int64_t>>> counts;
  std::vector<std::vector<int64_t>> invalid;  // [rank][step]
  std::vector<PlacementManagerStats> stats;   // per rank, after flush_dumps()
};

// R ranks record random ids (and now and then an invalid one) for `steps`
// steps under PlacementManager, with dumps on; returns what each recorded.
Recorded run_cluster(int32_t R, int64_t steps, PlacementManagerOptions opt) {
  const auto initial = *Placement::contiguous(kLayers, R, kExperts, kSlots);
  const auto topo = *Topology::uniform(R, 1);
  Recorded rec;
  rec.counts.assign(static_cast<size_t>(R), std::vector<std::vector<int64_t>>(
                                                static_cast<size_t>(steps),
                                                std::vector<int64_t>(static_cast<size_t>(kLayers * kExperts), 0)));
  rec.invalid.assign(static_cast<size_t>(R), std::vector<int64_t>(static_cast<size_t>(steps), 0));
  rec.stats.resize(static_cast<size_t>(R));
  auto statuses = LocalGroup::run(R, [&](Transport& t) -> Status {
    const RankId q = t.rank();
    OMNI_ASSIGN_OR_RETURN(auto store, HostWeightStore::create(std::vector<int64_t>(kLayers, 64),
                                                              std::vector<int32_t>(kLayers, kSlots), 1 << 20));
    OMNI_ASSIGN_OR_RETURN(auto pm, PlacementManager::create(t, topo, initial, *store, opt));
    std::mt19937_64 rng(1234 + static_cast<uint64_t>(q));
    std::vector<ExpertId> ids(kTokens);
    for (int64_t step = 0; step < steps; ++step) {
      auto& row = rec.counts[static_cast<size_t>(q)][static_cast<size_t>(step)];
      for (LayerId l = 0; l < kLayers; ++l) {
        for (auto& e : ids) {
          // Skewed towards expert 0 on odd layers, so plans change placements.
          e = std::uniform_int_distribution<ExpertId>(0, kExperts - 1)(rng);
          if (l % 2 == 1 && (rng() & 1)) e = 0;
          if (rng() % 97 == 0) e = kExperts + 3;  // invalid: counted as such, not as load
        }
        for (ExpertId e : ids) {
          if (e >= 0 && e < kExperts) ++row[static_cast<size_t>(l * kExperts + e)];
          else ++rec.invalid[static_cast<size_t>(q)][static_cast<size_t>(step)];
        }
        pm->record(l, ids);
      }
      OMNI_RETURN_IF_ERROR(pm->step_boundary(step));
    }
    OMNI_RETURN_IF_ERROR(pm->flush_dumps());
    rec.stats[static_cast<size_t>(q)] = pm->stats();
    return ok_status();  // the destructor closes the writer
  });
  for (RankId q = 0; q < R; ++q) EXPECT_TRUE(statuses[static_cast<size_t>(q)].ok()) << statuses[static_cast<size_t>(q)];
  return rec;
}

// Sums rec.counts of `ranks` over the steps a window covers: the records made
// before the step_boundary that took it and after the one that took the
// previous window (the first window starts at step 0).
std::vector<int64_t> expected_window(const Recorded& rec, const std::vector<RankId>& ranks, int64_t after_step,
                                     int64_t end_step, int64_t* invalid) {
  std::vector<int64_t> sum(static_cast<size_t>(kLayers * kExperts), 0);
  *invalid = 0;
  for (RankId q : ranks)
    for (int64_t s = after_step + 1; s <= end_step; ++s) {
      const auto& row = rec.counts[static_cast<size_t>(q)][static_cast<size_t>(s)];
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += row[i];
      *invalid += rec.invalid[static_cast<size_t>(q)][static_cast<size_t>(s)];
    }
  return sum;
}

TEST(PlacementManagerDumps, AggregatedWindowsSumToWhatEveryRankRecorded) {
  ScratchDir dir;
  PlacementManagerOptions opt;
  opt.planner_spec = "eplb";
  opt.replan_interval_steps = 5;
  opt.commit_cadence_steps = 1;
  opt.stage_wait = std::chrono::milliseconds(5000);
  opt.enable_dump = true;
  opt.dump_dir = dir.file("dumps");
  constexpr int32_t R = 3;
  constexpr int64_t kSteps = 40;
  // At most kSteps / interval = 8 windows: a queue that holds them all cannot
  // drop one however slowly a loaded machine schedules the writer thread (with
  // the default capacity of 4 it did, under CPU contention).
  opt.dump_queue_capacity = 16;
  const Recorded rec = run_cluster(R, kSteps, opt);

  auto windows = read_dump_dir(opt.dump_dir);
  ASSERT_TRUE(windows.ok()) << windows.status();
  // Rank 0 alone writes, once per round, and nothing was dropped.
  const auto& s0 = rec.stats[0];
  EXPECT_GE(s0.rounds_started, 4);
  EXPECT_EQ(static_cast<int64_t>(windows->size()), s0.rounds_started);
  EXPECT_EQ(s0.dumps_queued, s0.rounds_started);
  EXPECT_EQ(s0.dumps_written, s0.dumps_queued);
  EXPECT_EQ(s0.dumps_dropped, 0);
  EXPECT_EQ(s0.dumps_failed, 0);
  for (RankId q = 1; q < R; ++q) EXPECT_EQ(rec.stats[static_cast<size_t>(q)].dumps_queued, 0);
  EXPECT_GE(s0.epoch, 1u) << "the skewed load should have moved experts at least once";

  int64_t prev_end = -1;
  uint64_t prev_index = 0;
  for (size_t w = 0; w < windows->size(); ++w) {
    const DumpWindow& d = (*windows)[w];
    SCOPED_TRACE(d.json_path);
    EXPECT_EQ(d.meta.rank, -1);
    EXPECT_EQ(d.meta.id_space, "expert");
    if (w > 0) {
      EXPECT_EQ(d.meta.window, prev_index + 1);
    }
    EXPECT_EQ(d.meta.step_begin, w == 0 ? 0 : prev_end);
    int64_t invalid = 0;
    const auto want = expected_window(rec, {0, 1, 2}, prev_end, d.meta.step_end, &invalid);
    ASSERT_TRUE(d.load.is_counts());
    EXPECT_EQ(std::vector<int64_t>(d.load.counts().begin(), d.load.counts().end()), want);
    EXPECT_EQ(d.meta.num_invalid, invalid);
    prev_end = d.meta.step_end;
    prev_index = d.meta.window;
  }
  // The whole folder sums to everything recorded up to the last dumped window.
  auto total = read_dump_dir_load(opt.dump_dir);
  ASSERT_TRUE(total.ok()) << total.status();
  int64_t invalid = 0;
  const auto want = expected_window(rec, {0, 1, 2}, -1, prev_end, &invalid);
  EXPECT_EQ(std::vector<int64_t>(total->counts().begin(), total->counts().end()), want);
}

TEST(PlacementManagerDumps, StaticModeEveryRankDumpsItsOwnWindow) {
  ScratchDir dir;
  PlacementManagerOptions opt;
  opt.dynamic = false;
  opt.replan_interval_steps = 4;
  opt.enable_dump = true;
  opt.dump_dir = dir.file("static");
  constexpr int32_t R = 2;
  constexpr int64_t kSteps = 18;  // windows taken at steps 4, 8, 12, 16
  const Recorded rec = run_cluster(R, kSteps, opt);
  auto windows = read_dump_dir(opt.dump_dir);
  ASSERT_TRUE(windows.ok()) << windows.status();
  ASSERT_EQ(windows->size(), 8u);
  std::vector<int64_t> prev_end(R, -1);
  for (const DumpWindow& d : *windows) {
    SCOPED_TRACE(d.json_path);
    ASSERT_TRUE(d.meta.rank == 0 || d.meta.rank == 1);
    EXPECT_NE(d.json_path.find(str_cat("window_r", d.meta.rank, "_")), std::string::npos);
    EXPECT_EQ(d.meta.epoch, 0);
    int64_t invalid = 0;
    const auto want =
        expected_window(rec, {d.meta.rank}, prev_end[static_cast<size_t>(d.meta.rank)], d.meta.step_end, &invalid);
    EXPECT_EQ(std::vector<int64_t>(d.load.counts().begin(), d.load.counts().end()), want);
    EXPECT_EQ(d.meta.num_invalid, invalid);
    prev_end[static_cast<size_t>(d.meta.rank)] = d.meta.step_end;
  }
  EXPECT_EQ(prev_end, (std::vector<int64_t>{16, 16}));
  for (const auto& s : rec.stats) EXPECT_EQ(s.dumps_written, 4);
}

TEST(PlacementManagerDumps, CreateNamesABadDumpDir) {
  ScratchDir dir;
  const std::string file = dir.file("a_file");
  testing::spit(file, "x");
  const auto initial = *Placement::contiguous(1, 1, 2, 2);
  const auto topo = *Topology::uniform(1, 1);
  auto store = *HostWeightStore::create({64}, {2}, 1 << 20);
  struct Case {
    std::string dir;
    int32_t capacity;
    std::string message;
  };
  for (const Case& c : {Case{"", 4, "enable_dump needs a dump_dir"}, Case{dir.file("d"), 0, "dump_queue_capacity"},
                        Case{file + "/sub", 4, "dump_dir"}}) {
    SCOPED_TRACE(c.dir);
    PlacementManagerOptions opt;
    opt.enable_dump = true;
    opt.dump_dir = c.dir;
    opt.dump_queue_capacity = c.capacity;
    auto statuses = LocalGroup::run(1, [&](Transport& t) -> Status {
      return PlacementManager::create(t, topo, initial, *store, opt).status();
    });
    EXPECT_FALSE(statuses[0].ok());
    EXPECT_NE(statuses[0].message().find(c.message), std::string::npos) << statuses[0];
  }
}

TEST(ManagerConfig, EveryManagerKeyFillsItsOption) {
  auto c = parse_config(
      "enable_dynamic: true\nenable_dump: true\ndump_dir: /tmp/d\nplanner: \"omni\"\nreplan_interval_steps: 300\n"
      "window_steps: 300\nema_decay: 0.5\nmin_gain: 0.01\nmax_moves_per_rank: 2\nlayers_per_commit: 4\n"
      "staging_bytes_per_rank: 4096\nshift_check_steps: 7\nshift_threshold: 0.25\n");
  ASSERT_TRUE(c.ok()) << c.status();
  auto o = manager_options_from_config(*c);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->dynamic);
  EXPECT_TRUE(o->enable_dump);
  EXPECT_EQ(o->dump_dir, "/tmp/d");
  EXPECT_EQ(o->planner_spec, "omni");
  EXPECT_EQ(o->replan_interval_steps, 300);
  EXPECT_EQ(o->ema_decay, 0.5);
  EXPECT_EQ(o->min_gain, 0.01);
  EXPECT_EQ(o->max_moves_per_rank, 2);
  EXPECT_EQ(o->layers_per_commit, 4);
  EXPECT_EQ(o->staging_bytes_per_rank, 4096);
  EXPECT_EQ(o->shift_check_steps, 7);
  EXPECT_EQ(o->shift_threshold, 0.25);
}

TEST(ManagerConfig, DefaultsAreTheOptionsDefaultsButStatic) {
  // One default per knob: the YAML keys' defaults are PlacementManagerOptions' (dynamic placement
  // stays off by default, as omni-infer's enable_dynamic).
  auto o = manager_options_from_config(Config{});
  ASSERT_TRUE(o.ok()) << o.status();
  const PlacementManagerOptions d;
  EXPECT_FALSE(o->dynamic);
  EXPECT_FALSE(o->enable_dump);
  EXPECT_EQ(o->planner_spec, d.planner_spec);
  EXPECT_EQ(o->replan_interval_steps, d.replan_interval_steps);
  EXPECT_EQ(o->ema_decay, d.ema_decay);
  EXPECT_EQ(o->shift_check_steps, d.shift_check_steps);
  EXPECT_EQ(o->shift_threshold, d.shift_threshold);
  EXPECT_EQ(o->min_gain, d.min_gain);
  EXPECT_EQ(o->max_moves_per_rank, d.max_moves_per_rank);
  EXPECT_EQ(o->layers_per_commit, d.layers_per_commit);
  EXPECT_EQ(o->staging_bytes_per_rank, d.staging_bytes_per_rank);
  EXPECT_EQ(RecorderConfig{}.ema_decay, d.ema_decay);
  EXPECT_EQ(MigrationOptions{}.staging_bytes_per_rank, d.staging_bytes_per_rank);
  EXPECT_EQ(MigrationOptions{}.layers_per_commit, d.layers_per_commit);
  // 0 is no limit, for the manager as for the YAML key.
  auto c = parse_config("staging_bytes_per_rank: 0\n");
  ASSERT_TRUE(c.ok());
  auto unlimited = manager_options_from_config(*c);
  ASSERT_TRUE(unlimited.ok());
  EXPECT_EQ(unlimited->staging_bytes_per_rank, 0);
}

struct BadConfigCase {
  std::string name;
  std::string yaml;
  std::string key;  // the message must name it
};

class ManagerConfigErrors : public ::testing::TestWithParam<BadConfigCase> {};

TEST_P(ManagerConfigErrors, NameTheKey) {
  auto c = parse_config(GetParam().yaml);
  ASSERT_TRUE(c.ok()) << c.status();
  auto o = manager_options_from_config(*c);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("'" + GetParam().key + "'"), std::string::npos) << o.status();
}

INSTANTIATE_TEST_SUITE_P(
    Table, ManagerConfigErrors,
    ::testing::Values(BadConfigCase{"DumpWithoutDir", "enable_dump: true\n", "dump_dir"},
                      BadConfigCase{"WindowShorterThanInterval", "replan_interval_steps: 100\nwindow_steps: 50\n",
                                    "window_steps"},
                      BadConfigCase{"UnknownPlanner", "planner: \"nonesuch\"\n", "planner"}),
    [](const auto& info) { return info.param.name; });

TEST(ManagerConfig, LayerCountMustMatchThePlacement) {
  const auto p = *Placement::contiguous(3, 2, 4, 2);
  Config c;
  EXPECT_TRUE(check_config_against_placement(c, p).ok());
  c.max_moe_layer_num = 3;
  EXPECT_TRUE(check_config_against_placement(c, p).ok());
  c.max_moe_layer_num = 58;
  const Status s = check_config_against_placement(c, p);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'max_moe_layer_num': 58"), std::string::npos) << s;
}

}  // namespace
}  // namespace omni
