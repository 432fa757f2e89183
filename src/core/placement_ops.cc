#include "omniplacement/core/placement_ops.h"

#include <algorithm>

#include "omniplacement/core/str_cat.h"

namespace omni {

ValidationRules lost_experts_allowed() {
  ValidationRules rules;
  rules.require_every_expert = false;
  return rules;
}

bool layers_equal(const Placement& a, const Placement& b, LayerId l) {
  if (a.slots_per_rank(l) != b.slots_per_rank(l)) return false;
  const auto pa = a.phy2log(l), pb = b.phy2log(l);
  if (!std::equal(pa.begin(), pa.end(), pb.begin(), pb.end())) return false;
  for (GlobalSlot g = 0; g < a.num_slots(l); ++g)
    if (a.share_of(l, g) != b.share_of(l, g)) return false;
  return true;
}

bool holds_on_ranks(const Placement& p, std::span<const RankId> ranks) {
  for (LayerId l = 0; l < p.num_layers(); ++l)
    for (RankId r : ranks) {
      if (r < 0 || r >= p.num_ranks()) continue;
      for (SlotId s = 0; s < p.slots_per_rank(l); ++s)
        if (p.expert_at(l, r, s) != kEmptySlot) return true;
    }
  return false;
}

std::vector<LostExpert> experts_without_replica(const Placement& p) {
  std::vector<LostExpert> out;
  for (LayerId l = 0; l < p.num_layers(); ++l)
    for (ExpertId e = 0; e < p.num_experts(); ++e)
      if (p.replica_count(l, e) == 0) out.push_back({l, e});
  return out;
}

int64_t count_lost_experts(const Placement& p) {
  int64_t n = 0;
  for (LayerId l = 0; l < p.num_layers(); ++l)
    for (ExpertId e = 0; e < p.num_experts(); ++e) n += p.replica_count(l, e) == 0 ? 1 : 0;
  return n;
}

void renormalise_shares(std::span<const ExpertId> row, std::span<double> shares, int32_t num_experts) {
  OMNI_CHECK_MSG(shares.size() == row.size(),
                 str_cat("renormalise_shares: ", shares.size(), " shares for ", row.size(), " slots"));
  std::vector<double> sum(static_cast<size_t>(num_experts), 0.0);
  std::vector<int32_t> count(static_cast<size_t>(num_experts), 0);
  for (size_t g = 0; g < row.size(); ++g) {
    if (row[g] == kEmptySlot) continue;
    OMNI_CHECK_MSG(row[g] >= 0 && row[g] < num_experts,
                   str_cat("renormalise_shares: slot ", g, " holds expert ", row[g], ", not in [-1, ", num_experts, ")"));
    sum[static_cast<size_t>(row[g])] += shares[g];
    ++count[static_cast<size_t>(row[g])];
  }
  for (size_t g = 0; g < row.size(); ++g) {
    if (row[g] == kEmptySlot) {
      shares[g] = 0.0;
      continue;
    }
    const auto e = static_cast<size_t>(row[g]);
    shares[g] = sum[e] > 0 ? shares[g] / sum[e] : 1.0 / count[e];
  }
}

StatusOr<Placement> compose_layers(const Placement& base, const Placement& next, std::span<const LayerId> layers) {
  if (base.num_layers() != next.num_layers() || base.num_ranks() != next.num_ranks() ||
      base.num_experts() != next.num_experts())
    return invalid_argument_error(str_cat("compose_layers: base is ", base.summary(), ", next is ", next.summary(),
                                          " (layers, ranks and experts must be equal)"));
  for (LayerId l : layers)
    if (l < 0 || l >= base.num_layers())
      return invalid_argument_error(
          str_cat("compose_layers: layer ", l, " out of [0, ", base.num_layers(), ")"));
  PlacementLayout layout = base.layout();
  const bool shares = base.has_shares() || next.has_shares();
  if (shares && layout.shares.empty()) {
    layout.shares.resize(static_cast<size_t>(base.num_layers()));
    for (LayerId l = 0; l < base.num_layers(); ++l) {
      auto& row = layout.shares[static_cast<size_t>(l)];
      row.resize(static_cast<size_t>(base.num_slots(l)));
      for (GlobalSlot g = 0; g < base.num_slots(l); ++g) row[static_cast<size_t>(g)] = base.share_of(l, g);
    }
  }
  for (LayerId l : layers) {
    layout.slots_per_rank[static_cast<size_t>(l)] = next.slots_per_rank(l);
    const auto p = next.phy2log(l);
    layout.phy2log[static_cast<size_t>(l)].assign(p.begin(), p.end());
    if (shares) {
      auto& row = layout.shares[static_cast<size_t>(l)];
      row.resize(static_cast<size_t>(next.num_slots(l)));
      for (GlobalSlot g = 0; g < next.num_slots(l); ++g) row[static_cast<size_t>(g)] = next.share_of(l, g);
    }
  }
  return Placement::create(std::move(layout), lost_experts_allowed());
}

}  // namespace omni
