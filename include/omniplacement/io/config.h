// YAML configuration: omni-infer's keys and OmniPlacement's own, in one flat map
// (docs/formats.md, "Configuration").
//
//   # omniplacement.yaml
//   pattern_path: patterns/decode_32ranks.npy   # omni-infer keys
//   max_moe_layer_num: 58
//   enable_dynamic: true
//   max_redundant_per_expert: 4
//   max_redundant_per_rank: 1
//   enable_dump: false
//   dump_dir: /tmp/dumps
//   planner: "eplb(hierarchical)"               # ours
//   replan_interval_steps: 3000
//   window_steps: 1000
//   ranks_per_host: 8
//
//   omni::StatusOr<omni::Config> c = omni::read_config("omniplacement.yaml");
//   if (!c.ok()) std::cerr << c.status() << "\n";   // "omniplacement.yaml:4: unknown key 'enable_dynamc' ..."
//   c->planner;   // "eplb(hierarchical)"
//
// Every key is optional; a missing key keeps the default below. An unknown key
// is an error naming file and line (or, with allow_unknown_keys, a warning in
// Config::warnings); so is a value of the wrong type or out of range.
//
// Thread safety: pure functions; Config is a plain value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "omniplacement/core/status.h"

namespace omni {

struct Config {
  // --- omni-infer's keys (same names and meaning) ---
  // Placement pattern file (.npy/.txt/.bin, or our .json). Relative paths are
  // resolved against the config file's folder by read_config(). Empty: none.
  std::string pattern_path;
  // Number of MoE layers; 0 = take it from the placement.
  int32_t max_moe_layer_num = 0;
  // Re-plan and move experts while serving (false: the placement stays static).
  bool enable_dynamic = false;
  // Cap on the replicas of one expert; 0 = no cap.
  int32_t max_redundant_per_expert = 0;
  // Redundant slots per rank (slots beyond num_experts / num_ranks).
  int32_t max_redundant_per_rank = 0;
  // Write activation dumps (per-slot counts) into dump_dir.
  bool enable_dump = false;
  std::string dump_dir;  // resolved like pattern_path

  // --- OmniPlacement's keys ---
  // Planner spec string (planner registry), e.g. "eplb", "omni(max_moves_per_rank=2)".
  // The default is PlacementManagerOptions::planner_spec's.
  std::string planner = "omni";
  // Steps (forward passes) between two re-plans; >= 1.
  int64_t replan_interval_steps = 1000;
  // Steps of activation counts a plan is computed from; >= 1.
  int64_t window_steps = 1000;
  // Plan on an EMA of the windows: ema = ema_decay * ema + (1 - ema_decay) *
  // window. In [0, 1); 0 = the last window.
  double ema_decay = 0.0;
  // Shift detection (PlacementManagerOptions of the same names): every this
  // many steps the load of those steps is priced under the placement in force;
  // above the plan's promise by more than shift_threshold (max/mean) the
  // ranks re-plan at once. 0 = off, -1 = a tenth of replan_interval_steps.
  int64_t shift_check_steps = -1;
  double shift_threshold = 0.07;
  // Ranks per host (hosts are r / ranks_per_host); 0 = all ranks on one host.
  int32_t ranks_per_host = 0;
  // Keep the placement when the plan lowers the predicted mean max/mean rank
  // load by less than this (absolute), in [0, 1).
  double min_gain = 0.0;
  // At most this many slots per rank and layer change in one re-plan (expert
  // weights each rank receives per layer); -1 = no limit. Needs an incremental
  // planner (omni).
  int32_t max_moves_per_rank = -1;
  // At most this many layers switched per commit (layer-by-layer updates); 0 = no limit.
  int32_t layers_per_commit = 0;
  // Bytes of expert weights one rank receives per commit (its staging memory); 0 = no limit.
  int64_t staging_bytes_per_rank = int64_t{1} << 30;
  // A rank silent for this long is declared failed, milliseconds; >= 1.
  int64_t heartbeat_timeout_ms = 10000;

  // Non-fatal findings (unknown keys when allowed), each "file:line: message".
  std::vector<std::string> warnings;

  friend bool operator==(const Config& a, const Config& b) = default;
};

struct ConfigOptions {
  // Report unknown keys in Config::warnings instead of failing.
  bool allow_unknown_keys = false;
};

// Parses YAML text; `name` (a path) prefixes messages with its line numbers.
// Paths are kept as written.
StatusOr<Config> parse_config(std::string_view yaml, std::string_view name = "<config>",
                              const ConfigOptions& options = {});
// Reads a file and resolves relative pattern_path and dump_dir against its folder.
StatusOr<Config> read_config(const std::string& path, const ConfigOptions& options = {});
// YAML text with every key (warnings are not written); parse_config() gives it back.
std::string encode_config(const Config& config);

// All keys parse_config() accepts, omni-infer's first.
const std::vector<std::string>& config_keys();

}  // namespace omni
