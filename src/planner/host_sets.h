// Internal (not installed): which experts go to which host, for omni's
// locality options (omni_planner.h), and the host check of spread_hosts.
//
//   auto sets = detail::group_hosts(loads, /*num_groups=*/8, /*num_hosts=*/4);
//   sets[h];                                  // experts of host h, ascending
//
// Pure functions; deterministic (ties to the lowest index).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"

namespace omni::detail {

// Assignment of experts to hosts: sets[h] lists the experts of host h.
using HostSets = std::vector<std::vector<ExpertId>>;

// locality=groups: w [E] loads; E a multiple of num_groups and num_groups of
// num_hosts. Each host gets num_groups / num_hosts whole groups of
// E / num_groups consecutive experts: largest group first to the lightest host
// with room, then pairwise swaps while the heaviest host's load drops.
HostSets group_hosts(std::span<const double> w, int32_t num_groups, int32_t num_hosts);

// locality=coactivation: w [E] loads, coact [E * E] row-major pair counts of
// one layer (element (a, b): tokens routed to both), E a multiple of
// num_hosts. Each host gets E / num_hosts experts. Affinity of a pair is its
// lift over independence, coact(a, b) - c_a c_b / C (c_a: a's row sum, C the
// total), since raw counts grow with both experts' popularity. Heaviest expert
// first, each goes to the host (with room, and load within (1 + slack) x W / H
// where possible) with the largest affinity to the experts already there, ties
// to the lightest host; then pairwise swaps between hosts while one raises the
// affinity inside hosts without taking a host above that load cap (or above
// the heaviest host's load, when that is already above it).
HostSets coactivation_hosts(std::span<const double> w, const double* coact, int32_t num_hosts, double slack);

// Whether every expert with two or more replicas in phy2log ([R * S], -1
// empty) sits on at least two hosts; host[r] is rank r's host, [R]. True when
// all ranks are on one host.
bool spread_over_hosts(const std::vector<ExpertId>& phy2log, const std::vector<int32_t>& host, int32_t S);

}  // namespace omni::detail
