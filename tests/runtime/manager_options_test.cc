// PlacementManager::create refuses options it cannot honour, naming the option.
#include <gtest/gtest.h>

#include <limits>

#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

Status create_with(const PlacementManagerOptions& opt) {
  const Placement initial = *Placement::contiguous(1, 1, 4, 5);
  const Topology topo = *Topology::uniform(1, 1);
  auto store = *HostWeightStore::create({16}, {5}, 0);
  auto statuses = LocalGroup::run(1, [&](Transport& t) -> Status {
    return PlacementManager::create(t, topo, initial, *store, opt).status();
  });
  return statuses[0];
}

struct OptionsCase {
  const char* name;
  void (*set)(PlacementManagerOptions&);
  const char* error;  // "" : accepted
};

class ManagerOptionsTest : public ::testing::TestWithParam<OptionsCase> {};

TEST_P(ManagerOptionsTest, Table) {
  PlacementManagerOptions o;
  GetParam().set(o);
  const Status s = create_with(o);
  if (*GetParam().error == '\0') {
    EXPECT_TRUE(s.ok()) << s;
  } else {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(GetParam().error), std::string::npos) << s;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ManagerOptionsTest,
    ::testing::Values(
        OptionsCase{"Defaults", [](PlacementManagerOptions&) {}, ""},
        OptionsCase{"TypedMoveLimit", [](PlacementManagerOptions& o) { o.max_moves_per_rank = 2; }, ""},
        OptionsCase{"MoveLimitInTheSpec",
                    [](PlacementManagerOptions& o) { o.planner_spec = "omni(max_moves_per_rank=1)"; }, ""},
        OptionsCase{"MoveLimitTwice",
                    [](PlacementManagerOptions& o) {
                      o.planner_spec = "omni(max_moves_per_rank=1)";
                      o.max_moves_per_rank = 2;
                    },
                    "max_moves_per_rank 2 and the planner spec 'omni(max_moves_per_rank=1)' both set it"},
        OptionsCase{"MoveLimitForAScratchPlanner",
                    [](PlacementManagerOptions& o) {
                      o.planner_spec = "eplb";
                      o.max_moves_per_rank = 2;
                    },
                    "needs an incremental planner such as omni; 'eplb' plans from scratch"},
        OptionsCase{"MoveLimitBelowMinusOne", [](PlacementManagerOptions& o) { o.max_moves_per_rank = -2; },
                    "max_moves_per_rank -2 must be -1 (no limit) or >= 0"},
        OptionsCase{"NegativeStaging", [](PlacementManagerOptions& o) { o.staging_bytes_per_rank = -1; },
                    "staging_bytes_per_rank >= 0 (-1)"},
        OptionsCase{"UnlimitedStaging", [](PlacementManagerOptions& o) { o.staging_bytes_per_rank = 0; }, ""},
        OptionsCase{"DecayOne", [](PlacementManagerOptions& o) { o.ema_decay = 1.0; }, "0 <= ema_decay < 1 (1)"},
        OptionsCase{"ShiftCheckOff", [](PlacementManagerOptions& o) { o.shift_check_steps = 0; }, ""},
        OptionsCase{"ShiftCheckBelowAuto", [](PlacementManagerOptions& o) { o.shift_check_steps = -2; },
                    "shift_check_steps -2 must be >= 0 (0: off) or -1 (auto)"},
        OptionsCase{"NegativeShiftThreshold", [](PlacementManagerOptions& o) { o.shift_threshold = -0.1; },
                    "shift_threshold -0.1 finite and >= 0"},
        OptionsCase{"InfiniteShiftThreshold",
                    [](PlacementManagerOptions& o) { o.shift_threshold = std::numeric_limits<double>::infinity(); },
                    "shift_threshold inf finite and >= 0"},
        OptionsCase{"NegativeVolatility", [](PlacementManagerOptions& o) { o.volatility_weight = -0.5; },
                    "volatility_weight -0.5 must be finite and >= 0"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace omni
