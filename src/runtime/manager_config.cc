#include "omniplacement/runtime/manager_config.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "omniplacement/core/str_cat.h"
#include "omniplacement/planner/planner.h"

namespace omni {

StatusOr<PlacementManagerOptions> manager_options_from_config(const Config& config) {
  auto bad = [](const char* key, const std::string& why) {
    return invalid_argument_error(str_cat("config key '", key, "': ", why));
  };
  PlacementManagerOptions o;
  o.dynamic = config.enable_dynamic;
  o.enable_dump = config.enable_dump;
  o.dump_dir = config.dump_dir;
  if (config.enable_dump && config.dump_dir.empty())
    return bad("dump_dir", "must name a folder when enable_dump is true");
  // parse_config() checks ranges; a Config built in code is checked here too.
  if (config.replan_interval_steps < 1)
    return bad("replan_interval_steps", str_cat(config.replan_interval_steps, " is not >= 1"));
  o.replan_interval_steps = config.replan_interval_steps;
  if (config.window_steps != config.replan_interval_steps)
    return bad("window_steps", str_cat(config.window_steps, " differs from replan_interval_steps (",
                                       config.replan_interval_steps,
                                       "): PlacementManager plans on all steps since the previous round; set them "
                                       "equal and weight older windows with ema_decay"));
  if (!(config.ema_decay >= 0 && config.ema_decay < 1))
    return bad("ema_decay", str_cat(config.ema_decay, " is not in [0, 1)"));
  o.ema_decay = config.ema_decay;
  if (config.shift_check_steps < kShiftCheckAuto)
    return bad("shift_check_steps", str_cat(config.shift_check_steps, " is not -1 (auto), 0 (off) or a step count"));
  o.shift_check_steps = config.shift_check_steps;
  if (!(config.shift_threshold >= 0) || !std::isfinite(config.shift_threshold))
    return bad("shift_threshold", str_cat(config.shift_threshold, " is not finite and >= 0"));
  o.shift_threshold = config.shift_threshold;
  if (!(config.min_gain >= 0)) return bad("min_gain", str_cat(config.min_gain, " is not >= 0"));
  o.min_gain = config.min_gain;
  if (config.max_moves_per_rank < -1)
    return bad("max_moves_per_rank", str_cat(config.max_moves_per_rank, " is not -1 (no limit) or >= 0"));
  o.max_moves_per_rank = config.max_moves_per_rank;
  if (config.layers_per_commit < 0)
    return bad("layers_per_commit", str_cat(config.layers_per_commit, " is not >= 0"));
  o.layers_per_commit = config.layers_per_commit;
  if (config.staging_bytes_per_rank < 0)
    return bad("staging_bytes_per_rank", str_cat(config.staging_bytes_per_rank, " is not >= 0"));
  o.staging_bytes_per_rank = config.staging_bytes_per_rank;
  o.planner_spec = config.planner;
  // The manager would fail at create(); naming the key here is clearer.
  auto planner = make_planner(o.planner_spec);
  if (!planner.ok()) return bad("planner", planner.status().to_string());
  if (o.max_moves_per_rank >= 0 && !(*planner)->takes_incremental_limits())
    return bad("max_moves_per_rank", str_cat(o.max_moves_per_rank, " needs an incremental planner such as omni; '",
                                             o.planner_spec, "' plans from scratch"));
  return o;
}

Status check_config_against_placement(const Config& config, const Placement& placement) {
  if (config.max_moe_layer_num != 0 && config.max_moe_layer_num != placement.num_layers())
    return invalid_argument_error(str_cat("config key 'max_moe_layer_num': ", config.max_moe_layer_num,
                                          " but the placement has ", placement.num_layers(), " layers"));
  return ok_status();
}

}  // namespace omni
