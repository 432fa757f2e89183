#include "omniplacement/core/expert_map.h"

#include <algorithm>

#include "omniplacement/core/str_cat.h"

namespace omni {

StatusOr<ExpertMap> ExpertMap::from_placement(const Placement& p, ReplicaOrder order,
                                              const std::vector<std::vector<int32_t>>& replica_rank) {
  const int32_t L = p.num_layers();
  const int32_t E = p.num_experts();
  if (order == ReplicaOrder::kByCreation && static_cast<int32_t>(replica_rank.size()) != L) {
    return invalid_argument_error(str_cat("expert map: replica order by creation needs replica_rank for all ", L,
                                          " layers, got ", replica_rank.size()));
  }
  ExpertMap m;
  m.num_experts_ = E;
  m.layers_.resize(static_cast<size_t>(L));
  for (LayerId l = 0; l < L; ++l) {
    LayerExpertMap& lm = m.layers_[static_cast<size_t>(l)];
    auto row = p.phy2log(l);
    lm.phy2log.assign(row.begin(), row.end());
    lm.logcnt.resize(static_cast<size_t>(E));
    int32_t width = 0;
    for (ExpertId e = 0; e < E; ++e) {
      lm.logcnt[static_cast<size_t>(e)] = p.replica_count(l, e);
      width = std::max(width, p.replica_count(l, e));
    }
    lm.max_replicas = width;
    lm.log2phy.assign(static_cast<size_t>(E) * static_cast<size_t>(width), -1);
    if (order == ReplicaOrder::kByCreation) {
      const auto& rr = replica_rank[static_cast<size_t>(l)];
      if (rr.size() != row.size()) {
        return invalid_argument_error(str_cat("expert map: layer ", l, ": replica_rank has ", rr.size(),
                                              " entries, expected ", row.size()));
      }
    }
    for (ExpertId e = 0; e < E; ++e) {
      auto reps = p.replicas(l, e);  // ascending slot
      GlobalSlot* out = lm.log2phy.data() + static_cast<size_t>(e) * static_cast<size_t>(width);
      if (order == ReplicaOrder::kBySlot) {
        std::copy(reps.begin(), reps.end(), out);
        continue;
      }
      const auto& rr = replica_rank[static_cast<size_t>(l)];
      for (GlobalSlot g : reps) {
        const int32_t k = rr[static_cast<size_t>(g)];
        if (k < 0 || k >= static_cast<int32_t>(reps.size()) || out[k] != -1) {
          return invalid_argument_error(str_cat("expert map: layer ", l, ", global slot ", g, " (expert ", e,
                                                "): replica rank ", k, " is out of [0, ", reps.size(),
                                                ") or repeated"));
        }
        out[k] = g;
      }
    }
  }
  return m;
}

const LayerExpertMap& ExpertMap::layer(LayerId l) const {
  OMNI_CHECK_MSG(l >= 0 && l < num_layers(), str_cat("expert map: layer ", l, " out of [0, ", num_layers(), ")"));
  return layers_[static_cast<size_t>(l)];
}

int32_t ExpertMap::max_replicas() const {
  int32_t w = 0;
  for (const auto& lm : layers_) w = std::max(w, lm.max_replicas);
  return w;
}

int32_t ExpertMap::max_slots() const {
  int32_t w = 0;
  for (const auto& lm : layers_) w = std::max(w, static_cast<int32_t>(lm.phy2log.size()));
  return w;
}

std::vector<int32_t> ExpertMap::padded_phy2log() const {
  const auto w = static_cast<size_t>(max_slots());
  std::vector<int32_t> out(layers_.size() * w, -1);
  for (size_t l = 0; l < layers_.size(); ++l)
    std::copy(layers_[l].phy2log.begin(), layers_[l].phy2log.end(), out.begin() + static_cast<std::ptrdiff_t>(l * w));
  return out;
}

std::vector<int32_t> ExpertMap::padded_log2phy() const {
  const auto w = static_cast<size_t>(max_replicas());
  const auto E = static_cast<size_t>(num_experts_);
  std::vector<int32_t> out(layers_.size() * E * w, -1);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const auto& lm = layers_[l];
    for (size_t e = 0; e < E; ++e) {
      auto reps = lm.replicas_of(static_cast<ExpertId>(e));
      std::copy(reps.begin(), reps.end(), out.begin() + static_cast<std::ptrdiff_t>((l * E + e) * w));
    }
  }
  return out;
}

std::vector<int32_t> ExpertMap::logcnt_matrix() const {
  std::vector<int32_t> out;
  out.reserve(layers_.size() * static_cast<size_t>(num_experts_));
  for (const auto& lm : layers_) out.insert(out.end(), lm.logcnt.begin(), lm.logcnt.end());
  return out;
}

}  // namespace omni
