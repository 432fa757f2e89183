// The dispatch policy a rank runs: how the tokens of a logical expert are
// divided over its replicas (PlacementManagerOptions::dispatch_mode).
//
// kShares: a fixed table per layer (dispatch_table.h) sends a token to a
// replica on its own rank, else its host, else elsewhere, each replica taking
// its planned share; no communication per batch.
// kPerBatch: every batch, the ranks all-gather their per-expert counts of each
// layer and split them over the replicas on the batch's own counts
// (split_batch, batch_split.h); one small all-gather per layer and batch.
#pragma once

namespace omni {

enum class DispatchMode {
  kShares,    // static tables: locality first, each replica its planned share
  kPerBatch,  // per batch and layer: all-gather the counts, split_batch
};

}  // namespace omni
