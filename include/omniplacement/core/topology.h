// Topology: which rank sits on which host, and how fast the links between them are.
//
//   // 32 ranks, 8 per host, default bandwidths (intra-host 300 GB/s, cross-host 50 GB/s).
//   omni::StatusOr<omni::Topology> t = omni::Topology::uniform(32, 8);
//   t->host_of(9);            // 1
//   t->link(3, 9);            // LinkClass::kCrossHost
//
// Units: bandwidths in bytes per second, latencies in seconds.
// Thread safety: immutable after creation; any thread may read it.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"

namespace omni {

// How two ranks are connected.
enum class LinkClass : int {
  kSameRank = 0,   // the same device: a local copy
  kSameHost = 1,   // NVLink / HCCS class interconnect
  kCrossHost = 2,  // RDMA / network between machines
};

const char* link_class_name(LinkClass c);  // "same-rank", "same-host", "cross-host"

// Bandwidth per link class, bytes per second per device, and a fixed per
// transfer latency. Defaults follow docs/REFERENCES.md §5 (NVLink/HCCS 150-400 GB/s,
// RDMA ~50 GB/s); a device-local copy is taken as 1 TB/s.
struct LinkBandwidths {
  double same_rank_bytes_per_s = 1.0e12;
  double same_host_bytes_per_s = 300.0e9;
  double cross_host_bytes_per_s = 50.0e9;
  double latency_s = 10.0e-6;
};

class Topology {
 public:
  // num_ranks ranks; rank r is on host r / ranks_per_host. num_ranks must be a
  // multiple of ranks_per_host. ranks_per_host == num_ranks means one host.
  static StatusOr<Topology> uniform(int32_t num_ranks, int32_t ranks_per_host,
                                    const LinkBandwidths& bandwidths = {});
  // Explicit map: host_of_rank[r] is the host of rank r, hosts numbered densely
  // 0..H-1 with every host holding at least one rank.
  static StatusOr<Topology> from_host_map(std::vector<HostId> host_of_rank,
                                          const LinkBandwidths& bandwidths = {});
  // All ranks on one host.
  static StatusOr<Topology> single_host(int32_t num_ranks, const LinkBandwidths& bandwidths = {}) {
    return uniform(num_ranks, num_ranks, bandwidths);
  }

  Topology() = default;  // zero ranks; use the factories

  int32_t num_ranks() const { return static_cast<int32_t>(host_of_rank_.size()); }
  int32_t num_hosts() const { return static_cast<int32_t>(host_offsets_.empty() ? 0 : host_offsets_.size() - 1); }
  // Requires 0 <= r < num_ranks() (checked; aborts otherwise).
  HostId host_of(RankId r) const;
  // Ranks on host h, ascending.
  std::span<const RankId> ranks_of_host(HostId h) const;
  LinkClass link(RankId a, RankId b) const;
  bool same_host(RankId a, RankId b) const { return host_of(a) == host_of(b); }
  double bandwidth(LinkClass c) const;
  const LinkBandwidths& bandwidths() const { return bandwidths_; }
  // Seconds to move `bytes` over the link between a and b (latency + bytes / bandwidth).
  double transfer_seconds(RankId a, RankId b, double bytes) const;
  // True when every host has the same number of ranks and rank r is on host r / k.
  bool is_uniform() const;
  const std::vector<HostId>& host_of_rank() const { return host_of_rank_; }
  std::string to_string() const;  // "32 ranks on 4 hosts (8 per host)"

  friend bool operator==(const Topology& a, const Topology& b);

 private:
  std::vector<HostId> host_of_rank_;
  std::vector<int32_t> host_offsets_;  // CSR over ranks_by_host_, size num_hosts + 1
  std::vector<RankId> ranks_by_host_;
  LinkBandwidths bandwidths_;
};

}  // namespace omni
