// Cost parameters and links in round numbers for the sim tests' hand-computed
// cases: 10-byte experts, 1 B dispatched and 2 B combined per token, 1 s of
// compute per token, no per-replica or per-layer overhead; with per-batch
// dispatch, 0.125 s of all-gather per loaded layer.
#pragma once

#include "omniplacement/core/topology.h"
#include "omniplacement/sim/cost_model.h"

namespace omni::sim {

inline CostParams unit_params(DispatchMode dispatch = DispatchMode::kShares) {
  CostParams p;
  p.expert_bytes = 10;
  p.dispatch_bytes_per_token = 1;
  p.combine_bytes_per_token = 2;
  p.compute_s_per_token = 1;
  p.compute_s_per_replica = 0;
  p.layer_overhead_s = 0;
  p.dispatch = dispatch;
  p.batch_allgather_s = 0.125;
  return p;
}

// Bandwidths in bytes per second, latency in seconds.
inline LinkBandwidths unit_links(double same_host, double cross_host, double latency) {
  LinkBandwidths b;
  b.same_host_bytes_per_s = same_host;
  b.cross_host_bytes_per_s = cross_host;
  b.latency_s = latency;
  return b;
}

}  // namespace omni::sim
