#include "omniplacement/core/topology.h"

#include <cmath>

#include "omniplacement/core/str_cat.h"

namespace omni {

const char* link_class_name(LinkClass c) {
  switch (c) {
    case LinkClass::kSameRank: return "same-rank";
    case LinkClass::kSameHost: return "same-host";
    case LinkClass::kCrossHost: return "cross-host";
  }
  return "unknown";
}

namespace {
Status check_bandwidths(const LinkBandwidths& bw) {
  auto bad = [](double v) { return !(std::isfinite(v) && v > 0); };
  if (bad(bw.same_rank_bytes_per_s) || bad(bw.same_host_bytes_per_s) || bad(bw.cross_host_bytes_per_s)) {
    return invalid_argument_error(str_cat("topology: bandwidths must be finite and > 0 bytes/s, got same-rank ",
                                          bw.same_rank_bytes_per_s, ", same-host ", bw.same_host_bytes_per_s,
                                          ", cross-host ", bw.cross_host_bytes_per_s));
  }
  if (!(std::isfinite(bw.latency_s) && bw.latency_s >= 0)) {
    return invalid_argument_error(str_cat("topology: latency must be finite and >= 0 s, got ", bw.latency_s));
  }
  return ok_status();
}
}  // namespace

StatusOr<Topology> Topology::uniform(int32_t num_ranks, int32_t ranks_per_host, const LinkBandwidths& bw) {
  if (num_ranks < 1 || num_ranks > kMaxRanks) {
    return invalid_argument_error(str_cat("topology: num_ranks must be in [1, ", kMaxRanks, "], got ", num_ranks));
  }
  if (ranks_per_host < 1 || ranks_per_host > num_ranks) {
    return invalid_argument_error(str_cat("topology: ranks_per_host must be in [1, num_ranks=", num_ranks,
                                          "], got ", ranks_per_host));
  }
  if (num_ranks % ranks_per_host != 0) {
    return invalid_argument_error(str_cat("topology: num_ranks (", num_ranks, ") must be a multiple of ranks_per_host (",
                                          ranks_per_host, "); use an explicit rank->host map for uneven hosts"));
  }
  std::vector<HostId> hosts(static_cast<size_t>(num_ranks));
  for (int32_t r = 0; r < num_ranks; ++r) hosts[static_cast<size_t>(r)] = r / ranks_per_host;
  return from_host_map(std::move(hosts), bw);
}

StatusOr<Topology> Topology::from_host_map(std::vector<HostId> host_of_rank, const LinkBandwidths& bw) {
  OMNI_RETURN_IF_ERROR(check_bandwidths(bw));
  const auto n = static_cast<int64_t>(host_of_rank.size());
  if (n < 1 || n > kMaxRanks) {
    return invalid_argument_error(str_cat("topology: the rank->host map must have 1 to ", kMaxRanks, " ranks, got ", n));
  }
  HostId max_host = -1;
  for (int64_t r = 0; r < n; ++r) {
    const HostId h = host_of_rank[static_cast<size_t>(r)];
    if (h < 0 || h >= n) {
      return invalid_argument_error(str_cat("topology: rank ", r, " has host ", h, "; hosts must be in [0, ", n, ")"));
    }
    max_host = std::max(max_host, h);
  }
  Topology t;
  t.bandwidths_ = bw;
  std::vector<int32_t> count(static_cast<size_t>(max_host) + 1, 0);
  for (HostId h : host_of_rank) ++count[static_cast<size_t>(h)];
  for (HostId h = 0; h <= max_host; ++h) {
    if (count[static_cast<size_t>(h)] == 0) {
      return invalid_argument_error(str_cat("topology: host ", h, " has no rank; hosts must be numbered densely 0..",
                                            max_host));
    }
  }
  t.host_offsets_.assign(static_cast<size_t>(max_host) + 2, 0);
  for (HostId h = 0; h <= max_host; ++h) t.host_offsets_[static_cast<size_t>(h) + 1] = t.host_offsets_[static_cast<size_t>(h)] + count[static_cast<size_t>(h)];
  t.ranks_by_host_.resize(static_cast<size_t>(n));
  std::vector<int32_t> fill(t.host_offsets_.begin(), t.host_offsets_.end() - 1);
  for (RankId r = 0; r < n; ++r) t.ranks_by_host_[static_cast<size_t>(fill[static_cast<size_t>(host_of_rank[static_cast<size_t>(r)])]++)] = r;
  t.host_of_rank_ = std::move(host_of_rank);
  return t;
}

HostId Topology::host_of(RankId r) const {
  OMNI_CHECK_MSG(r >= 0 && r < num_ranks(), str_cat("rank ", r, " out of [0, ", num_ranks(), ")"));
  return host_of_rank_[static_cast<size_t>(r)];
}

std::span<const RankId> Topology::ranks_of_host(HostId h) const {
  OMNI_CHECK_MSG(h >= 0 && h < num_hosts(), str_cat("host ", h, " out of [0, ", num_hosts(), ")"));
  const auto b = static_cast<size_t>(host_offsets_[static_cast<size_t>(h)]);
  const auto e = static_cast<size_t>(host_offsets_[static_cast<size_t>(h) + 1]);
  return std::span<const RankId>(ranks_by_host_).subspan(b, e - b);
}

LinkClass Topology::link(RankId a, RankId b) const {
  if (a == b) {
    host_of(a);  // bounds check
    return LinkClass::kSameRank;
  }
  return host_of(a) == host_of(b) ? LinkClass::kSameHost : LinkClass::kCrossHost;
}

double Topology::bandwidth(LinkClass c) const {
  switch (c) {
    case LinkClass::kSameRank: return bandwidths_.same_rank_bytes_per_s;
    case LinkClass::kSameHost: return bandwidths_.same_host_bytes_per_s;
    case LinkClass::kCrossHost: return bandwidths_.cross_host_bytes_per_s;
  }
  return bandwidths_.cross_host_bytes_per_s;
}

double Topology::transfer_seconds(RankId a, RankId b, double bytes) const {
  return bandwidths_.latency_s + bytes / bandwidth(link(a, b));
}

bool Topology::is_uniform() const {
  if (num_hosts() == 0) return false;
  const int32_t k = num_ranks() / num_hosts();
  if (k * num_hosts() != num_ranks()) return false;
  for (RankId r = 0; r < num_ranks(); ++r)
    if (host_of_rank_[static_cast<size_t>(r)] != r / k) return false;
  return true;
}

std::string Topology::to_string() const {
  if (is_uniform()) {
    return str_cat(num_ranks(), " ranks on ", num_hosts(), num_hosts() == 1 ? " host" : " hosts", " (",
                   num_ranks() / num_hosts(), " per host)");
  }
  return str_cat(num_ranks(), " ranks on ", num_hosts(), " hosts (uneven)");
}

bool operator==(const Topology& a, const Topology& b) {
  return a.host_of_rank_ == b.host_of_rank_ &&
         a.bandwidths_.same_rank_bytes_per_s == b.bandwidths_.same_rank_bytes_per_s &&
         a.bandwidths_.same_host_bytes_per_s == b.bandwidths_.same_host_bytes_per_s &&
         a.bandwidths_.cross_host_bytes_per_s == b.bandwidths_.cross_host_bytes_per_s &&
         a.bandwidths_.latency_s == b.bandwidths_.latency_s;
}

}  // namespace omni
