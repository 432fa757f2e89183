// The dispatch policy a rank runs: how the tokens of a logical expert are
// divided over its replicas (PlacementManagerOptions::dispatch_mode). The
// simulator prices the same two policies (sim::CostParams::dispatch) and the
// planner scores placements under the one in force (ServingModel::dispatch).
//
// kShares: a fixed table per layer (dispatch_table.h) sends a token to a
// replica on its own rank, else its host, else elsewhere, each replica taking
// its planned share; no communication per batch.
// kPerBatch: every batch, the ranks all-gather their per-expert counts of each
// layer and split them over the replicas on the batch's own counts
// (split_batch, batch_split.h); one small all-gather per layer and batch.
#pragma once

#include <string_view>

#include "omniplacement/core/status.h"

namespace omni {

enum class DispatchMode {
  kShares,    // static tables: locality first, each replica its planned share
  kPerBatch,  // per batch and layer: all-gather the counts, split_batch
};

// The mode's name as the CLI, YAML config and JSON reports spell it: "shares"
// or "per-batch" (a static string; any thread).
const char* dispatch_mode_name(DispatchMode mode);

// The mode named `name` ("shares" or "per-batch"); InvalidArgument naming the
// value and the valid names otherwise. Any thread.
StatusOr<DispatchMode> parse_dispatch_mode(std::string_view name);

}  // namespace omni
