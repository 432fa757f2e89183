#include "omniplacement/runtime/routing_snapshot.h"

#include <algorithm>

#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

StatusOr<std::shared_ptr<const LayerRouting>> build_layer(const Placement& placement, const ExpertMap& map,
                                                          LayerId l, const Topology& topology, RankId rank,
                                                          uint64_t epoch) {
  auto r = std::make_shared<LayerRouting>();
  r->layer = l;
  r->epoch = epoch;
  r->map = map.layer(l);
  OMNI_ASSIGN_OR_RETURN(r->dispatch, LayerDispatch::build(placement, l, topology, rank));
  return std::shared_ptr<const LayerRouting>(std::move(r));
}

}  // namespace

uint64_t RoutingSnapshot::checksum() const {
  if (has_checksum_.load(std::memory_order_acquire)) return checksum_.load(std::memory_order_relaxed);
  // Two threads may both get here: both store the same value.
  const uint64_t c = placement_->checksum();
  checksum_.store(c, std::memory_order_relaxed);
  has_checksum_.store(true, std::memory_order_release);
  return c;
}

StatusOr<std::shared_ptr<const RoutingSnapshot>> RoutingSnapshot::build(std::shared_ptr<const Placement> placement,
                                                                        const Topology& topology, RankId rank,
                                                                        uint64_t epoch) {
  if (!placement) return invalid_argument_error("RoutingSnapshot::build: no placement");
  std::vector<LayerId> all(static_cast<size_t>(placement->num_layers()));
  for (LayerId l = 0; l < placement->num_layers(); ++l) all[static_cast<size_t>(l)] = l;
  RoutingSnapshot empty;
  empty.layers_.resize(all.size());
  return rebuild(empty, std::move(placement), all, topology, rank, epoch);
}

StatusOr<std::shared_ptr<const RoutingSnapshot>> RoutingSnapshot::rebuild(const RoutingSnapshot& base,
                                                                          std::shared_ptr<const Placement> placement,
                                                                          std::span<const LayerId> changed,
                                                                          const Topology& topology, RankId rank,
                                                                          uint64_t epoch) {
  if (!placement) return invalid_argument_error("RoutingSnapshot::rebuild: no placement");
  if (base.num_layers() != placement->num_layers())
    return invalid_argument_error(str_cat("RoutingSnapshot::rebuild: base has ", base.num_layers(),
                                          " layers, placement ", placement->num_layers()));
  OMNI_ASSIGN_OR_RETURN(ExpertMap map, ExpertMap::from_placement(*placement));
  auto s = std::make_shared<RoutingSnapshot>();
  s->epoch_ = epoch;
  s->layers_ = base.layers_;
  for (LayerId l : changed) {
    if (l < 0 || l >= placement->num_layers())
      return out_of_range_error(str_cat("RoutingSnapshot::rebuild: layer ", l, " out of [0, ",
                                        placement->num_layers(), ")"));
    OMNI_ASSIGN_OR_RETURN(s->layers_[static_cast<size_t>(l)], build_layer(*placement, map, l, topology, rank, epoch));
  }
  for (LayerId l = 0; l < placement->num_layers(); ++l)
    if (!s->layers_[static_cast<size_t>(l)])
      return invalid_argument_error(str_cat("RoutingSnapshot::rebuild: layer ", l, " is neither in the base nor changed"));
  s->placement_ = std::move(placement);
  // Built off the engine thread (planner, startup): hash now, so that the
  // engine's vote and commit never do.
  (void)s->checksum();
  return std::shared_ptr<const RoutingSnapshot>(std::move(s));
}

StatusOr<std::shared_ptr<const RoutingSnapshot>> RoutingSnapshot::without_ranks(
    const RoutingSnapshot& base, std::shared_ptr<const Placement> placement, std::span<const RankId> failed,
    const Topology& topology, RankId rank, uint64_t epoch) {
  if (!placement) return invalid_argument_error("RoutingSnapshot::without_ranks: no placement");
  const Placement& old = base.placement();
  if (old.num_layers() != placement->num_layers() || old.num_ranks() != placement->num_ranks() ||
      old.num_experts() != placement->num_experts())
    return invalid_argument_error("RoutingSnapshot::without_ranks: placement shape differs from the base's");
  auto s = std::make_shared<RoutingSnapshot>();
  s->epoch_ = epoch;
  s->layers_ = base.layers_;
  std::vector<ExpertId> affected;  // reused across layers
  for (LayerId l = 0; l < placement->num_layers(); ++l) {
    affected.clear();
    for (RankId r : failed) {
      if (r < 0 || r >= old.num_ranks())
        return out_of_range_error(str_cat("RoutingSnapshot::without_ranks: rank ", r, " out of [0, ", old.num_ranks(), ")"));
      for (SlotId k = 0; k < old.slots_per_rank(l); ++k)
        if (const ExpertId e = old.expert_at(l, r, k); e >= 0) affected.push_back(e);
    }
    if (affected.empty()) continue;
    auto lr = std::make_shared<LayerRouting>();
    lr->layer = l;
    lr->epoch = epoch;
    // The base's expert map with the failed slots emptied: only the affected
    // experts' replica rows change (still ascending by slot, padded with -1
    // to the base's row width).
    lr->map = base.layer(l).map;
    LayerExpertMap& m = lr->map;
    const auto row = placement->phy2log(l);
    m.phy2log.assign(row.begin(), row.end());
    for (ExpertId e : affected) {
      const auto reps = placement->replicas(l, e);
      const size_t at = static_cast<size_t>(e) * static_cast<size_t>(m.max_replicas);
      std::fill(m.log2phy.begin() + static_cast<std::ptrdiff_t>(at),
                m.log2phy.begin() + static_cast<std::ptrdiff_t>(at + static_cast<size_t>(m.max_replicas)), -1);
      std::copy(reps.begin(), reps.end(), m.log2phy.begin() + static_cast<std::ptrdiff_t>(at));
      m.logcnt[static_cast<size_t>(e)] = static_cast<int32_t>(reps.size());
    }
    OMNI_ASSIGN_OR_RETURN(lr->dispatch, LayerDispatch::rebuild(base.layer(l).dispatch, *placement, l, topology, rank, affected));
    s->layers_[static_cast<size_t>(l)] = std::move(lr);
  }
  s->placement_ = std::move(placement);
  return std::shared_ptr<const RoutingSnapshot>(std::move(s));
}

}  // namespace omni
