#include "omniplacement/core/coverage.h"

#include <algorithm>

#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

Status check_failed_ranks(const Placement& p, std::span<const RankId> failed, std::vector<char>* is_failed) {
  is_failed->assign(static_cast<size_t>(p.num_ranks()), 0);
  for (RankId r : failed) {
    if (r < 0 || r >= p.num_ranks()) {
      return invalid_argument_error(str_cat("failed rank ", r, " out of range; valid ranks are 0..", p.num_ranks() - 1));
    }
    (*is_failed)[static_cast<size_t>(r)] = 1;
  }
  return ok_status();
}

// Coverage against the domains given by domain_of[rank] (num_domains of them).
DomainCoverage domain_coverage(const Placement& p, const LoadMatrix* load, const std::vector<int32_t>& domain_of,
                               int32_t num_domains) {
  DomainCoverage c;
  int64_t pairs = 0, covered = 0;
  double total_load = 0, covered_load = 0;
  std::vector<int64_t> lost(static_cast<size_t>(num_domains), 0);
  std::vector<double> lost_load(static_cast<size_t>(num_domains), 0.0);
  for (LayerId l = 0; l < p.num_layers(); ++l) {
    const int32_t spr = p.slots_per_rank(l);
    for (ExpertId e = 0; e < p.num_experts(); ++e) {
      const double w = load ? load->at(l, e) : 0.0;
      ++pairs;
      total_load += w;
      auto reps = p.replicas(l, e);
      if (reps.empty()) continue;  // already lost: covered by no domain
      const int32_t first = domain_of[static_cast<size_t>(reps[0] / spr)];
      bool spread = false;
      for (GlobalSlot g : reps) spread |= domain_of[static_cast<size_t>(g / spr)] != first;
      if (spread) {
        ++covered;
        covered_load += w;
      } else {
        ++lost[static_cast<size_t>(first)];
        lost_load[static_cast<size_t>(first)] += w;
      }
    }
  }
  c.expert_share = pairs ? static_cast<double>(covered) / static_cast<double>(pairs) : 1.0;
  c.load_share = total_load > 0 ? covered_load / total_load : c.expert_share;
  for (int32_t d = 0; d < num_domains; ++d) {
    if (lost[static_cast<size_t>(d)] > c.worst_lost_experts) {
      c.worst_lost_experts = lost[static_cast<size_t>(d)];
      c.worst_domain = d;
    }
  }
  c.worst_lost_load_share = total_load > 0 ? lost_load[static_cast<size_t>(c.worst_domain)] / total_load : 0.0;
  return c;
}

}  // namespace

StatusOr<FailureCoverage> failure_coverage(const Placement& p, const Topology& t, const LoadMatrix* load) {
  if (t.num_ranks() != p.num_ranks()) {
    return invalid_argument_error(
        str_cat("failure coverage: topology has ", t.num_ranks(), " ranks, placement has ", p.num_ranks()));
  }
  if (load && (load->num_layers() != p.num_layers() || load->num_experts() != p.num_experts())) {
    return invalid_argument_error(str_cat("failure coverage: placement has ", p.num_layers(), " layers x ",
                                          p.num_experts(), " experts but the load is ", load->num_layers(), " x ",
                                          load->num_experts()));
  }
  std::vector<int32_t> rank_domain(static_cast<size_t>(p.num_ranks()));
  std::vector<int32_t> host_domain(static_cast<size_t>(p.num_ranks()));
  for (RankId r = 0; r < p.num_ranks(); ++r) {
    rank_domain[static_cast<size_t>(r)] = r;
    host_domain[static_cast<size_t>(r)] = t.host_of(r);
  }
  FailureCoverage out;
  out.rank = domain_coverage(p, load, rank_domain, p.num_ranks());
  out.host = domain_coverage(p, load, host_domain, t.num_hosts());
  return out;
}

StatusOr<std::vector<LostExpert>> lost_experts(const Placement& p, std::span<const RankId> failed) {
  std::vector<char> is_failed;
  OMNI_RETURN_IF_ERROR(check_failed_ranks(p, failed, &is_failed));
  std::vector<LostExpert> out;
  for (LayerId l = 0; l < p.num_layers(); ++l) {
    const int32_t spr = p.slots_per_rank(l);
    for (ExpertId e = 0; e < p.num_experts(); ++e) {
      bool alive = false;
      for (GlobalSlot g : p.replicas(l, e)) alive |= !is_failed[static_cast<size_t>(g / spr)];
      if (!alive) out.push_back({l, e});
    }
  }
  return out;
}

StatusOr<Placement> drop_ranks(const Placement& p, std::span<const RankId> failed) {
  std::vector<char> is_failed;
  OMNI_RETURN_IF_ERROR(check_failed_ranks(p, failed, &is_failed));
  return p.without_ranks(is_failed);
}

}  // namespace omni
