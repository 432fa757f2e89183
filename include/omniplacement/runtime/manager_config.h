// From the YAML configuration (io/config.h) to PlacementManagerOptions.
//
//   auto config = omni::read_config("omniplacement.yaml");      // enable_dynamic, planner, dump_dir, ...
//   if (!config.ok()) return config.status();
//   auto options = omni::manager_options_from_config(*config);  // errors name the key
//   if (!options.ok()) return options.status();
//   options->collective_timeout = std::chrono::seconds(10);      // fields without a key keep their defaults
//   auto pm = omni::PlacementManager::create(transport, topology, initial, store, *options);
//
// Keys and the fields they fill:
//   enable_dynamic         -> dynamic
//   enable_dump, dump_dir  -> enable_dump, dump_dir (dump_dir required when enable_dump)
//   planner                -> planner_spec (checked: it must name a known planner)
//   replan_interval_steps  -> replan_interval_steps
//   window_steps           -> must equal replan_interval_steps: the manager plans on
//                             everything recorded since the previous round (weight
//                             history with ema_decay instead)
//   ema_decay              -> ema_decay
//   shift_check_steps      -> shift_check_steps (-1: a tenth of the interval, 0: off)
//   shift_threshold        -> shift_threshold
//   min_gain               -> min_gain (the plan must lower the predicted mean
//                             max/mean rank load by at least this, absolute)
//   max_moves_per_rank     -> max_moves_per_rank
//   layers_per_commit      -> layers_per_commit
//   staging_bytes_per_rank -> staging_bytes_per_rank (0: no limit)
// Keys about the placement or the machine, not the manager's options, are left
// to the caller: pattern_path (the initial placement), max_moe_layer_num
// (checked against the placement by check_config_against_placement),
// max_redundant_per_expert, max_redundant_per_rank, ranks_per_host (the
// Topology) and heartbeat_timeout_ms (failure detection).
//
// Thread safety: pure functions.
#pragma once

#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/io/config.h"
#include "omniplacement/runtime/placement_manager.h"

namespace omni {

// The manager's options from `config`; every other field keeps its default.
// INVALID_ARGUMENT naming the key when a value cannot be honoured.
StatusOr<PlacementManagerOptions> manager_options_from_config(const Config& config);

// OK when max_moe_layer_num is 0 or equals the placement's layer count;
// otherwise INVALID_ARGUMENT naming the key and both counts.
Status check_config_against_placement(const Config& config, const Placement& placement);

}  // namespace omni
