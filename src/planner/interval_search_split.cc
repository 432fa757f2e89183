// IntervalSearch (per-batch): the runtime's split of every scenario
// (split, split_scenarios) and the split again of only the part of a layer a
// move touches (split_part); see interval_search.h. Moved out of
// interval_search.cc, which holds the rest of the state.
#include <algorithm>
#include <numeric>

#include "interval_search.h"
#include "omniplacement/core/status.h"

namespace omni::detail {

// The runtime's per-batch split (dispatch_mode.h, kPerBatch) of every
// scenario, in doubles: the one water-fill the runtime and the simulator run
// (BatchBalancer, dispatch/batch_balancer.h).
void IntervalSearch::split() { split_scenarios(nullptr); }

void IntervalSearch::split_scenarios(const std::vector<char>* only) {
  const Status placed = balancer_.set_slots(slot_, S_);
  OMNI_CHECK_MSG(placed.ok(), "omni: the search's slots are not a valid layer");
  // Where each replica (in ranks_ order) sits among the balancer's replica
  // ranks (ascending): the same for every scenario.
  // An expert with one replica serves its whole load there (the split's
  // amount is its total); the others are read from the split, every
  // scenario.
  split_index_.clear();
  split_experts_.clear();
  for (ExpertId e = 0; e < E_; ++e) {
    const auto& rs = ranks_[static_cast<size_t>(e)];
    auto& a = amt_[static_cast<size_t>(e)];
    a.resize(static_cast<size_t>(K_) * rs.size());
    if (rs.size() == 1)
      for (int32_t k = 0; k < K_; ++k) a[static_cast<size_t>(k)] = x(k, e);
    if (rs.size() < 2) continue;
    split_experts_.push_back(e);
    const auto their = balancer_.replica_ranks(e);
    for (size_t i = 0; i < rs.size(); ++i)
      split_index_.push_back(static_cast<int32_t>(std::lower_bound(their.begin(), their.end(), rs[i]) - their.begin()));
  }
  split_full_.resize(static_cast<size_t>(K_));
  part_change_.resize(static_cast<size_t>(K_) * static_cast<size_t>(E_));
  for (int32_t k = 0; k < K_; ++k) {
    if (only != nullptr && !(*only)[static_cast<size_t>(k)]) continue;
    // The passes each expert changed in are kept where the scenario's last
    // split ran all passes (where split_part is likely to serve next); else
    // none are (0: split_part then takes none from the others).
    const bool track = split_full_[static_cast<size_t>(k)] != 0;
    const auto& totals = (*p_.scenarios)[static_cast<size_t>(k)];
    const Status split = track ? balancer_.balance_tracked(totals) : balancer_.balance(totals);
    OMNI_CHECK_MSG(split.ok(), "omni: a scenario load out of the split's range");
    split_full_[static_cast<size_t>(k)] = balancer_.passes() == BatchBalancer<double>::kMaxPasses ? 1 : 0;
    uint8_t* mask = &part_change_[static_cast<size_t>(k) * static_cast<size_t>(E_)];
    for (ExpertId e : split_experts_) mask[e] = track ? balancer_.change_mask(e) : 0;
    const auto loads = balancer_.rank_loads();
    std::copy(loads.begin(), loads.end(), load_.begin() + static_cast<std::ptrdiff_t>(at(k, 0)));
    const int32_t* idx = split_index_.data();
    for (ExpertId e : split_experts_) {
      const size_t n = ranks_[static_cast<size_t>(e)].size();
      const auto amounts = balancer_.amounts(e);
      double* a = &amt_[static_cast<size_t>(e)][static_cast<size_t>(k) * n];
      for (size_t i = 0; i < n; ++i) a[i] = amounts[static_cast<size_t>(idx[i])];
      idx += n;
    }
  }
}

bool IntervalSearch::split_part(const std::vector<int32_t>& touched) {
  if (split_full_.size() != static_cast<size_t>(K_)) return false;
  for (char full : split_full_)
    if (!full) return false;
  // The ranks linked to the touched ones by experts with several replicas.
  const auto R = static_cast<size_t>(R_);
  part_root_.resize(R);
  std::iota(part_root_.begin(), part_root_.end(), 0);
  auto find = [&](int32_t r) {
    while (part_root_[static_cast<size_t>(r)] != r) {
      part_root_[static_cast<size_t>(r)] = part_root_[static_cast<size_t>(part_root_[static_cast<size_t>(r)])];
      r = part_root_[static_cast<size_t>(r)];
    }
    return r;
  };
  for (ExpertId e = 0; e < E_; ++e) {
    const auto& rs = ranks_[static_cast<size_t>(e)];
    for (size_t i = 1; i < rs.size(); ++i) {
      const int32_t a = find(rs[0]), b = find(rs[i]);
      if (a != b) part_root_[static_cast<size_t>(std::max(a, b))] = std::min(a, b);
    }
  }
  part_mark_.assign(R, 0);
  for (int32_t q : touched) part_mark_[static_cast<size_t>(find(q))] = 1;
  part_ranks_.clear();
  for (int32_t r = 0; r < R_; ++r)
    if (part_mark_[static_cast<size_t>(find(r))]) part_ranks_.push_back(r);
  if (part_ranks_.size() == R) return false;  // the whole layer: split() does the same
  part_ranks_of_.resize(static_cast<size_t>(E_));
  part_experts_.clear();
  part_rest_.clear();
  for (ExpertId e = 0; e < E_; ++e) {
    const auto& rs = ranks_[static_cast<size_t>(e)];
    auto& mine = part_ranks_of_[static_cast<size_t>(e)];
    mine.clear();
    if (rs.empty()) continue;
    if (!part_mark_[static_cast<size_t>(find(rs[0]))]) {
      if (rs.size() > 1) part_rest_.push_back(e);
      continue;
    }
    mine.assign(rs.begin(), rs.end());
    std::sort(mine.begin(), mine.end());
    part_experts_.push_back(e);
  }
  const Status placed = balancer_.set_replica_ranks(part_ranks_of_);
  OMNI_CHECK_MSG(placed.ok(), "omni: the search's slots are not a valid layer");
  // Every pass but the last changes an amount in the part or in the rest
  // (part_change_, from the rest's last split, which ran all passes): the
  // whole layer's split runs all passes too, and the rest keeps its amounts.
  // A scenario where it does not is split whole (split_scenarios).
  constexpr uint32_t kAllButLast = (1u << (BatchBalancer<double>::kMaxPasses - 1)) - 1;
  part_whole_.assign(static_cast<size_t>(K_), 0);
  bool whole = false;
  for (int32_t k = 0; k < K_; ++k) {
    const Status split = balancer_.balance_all_passes((*p_.scenarios)[static_cast<size_t>(k)]);
    OMNI_CHECK_MSG(split.ok(), "omni: a scenario load out of the split's range");
    uint8_t* mask = &part_change_[static_cast<size_t>(k) * static_cast<size_t>(E_)];
    uint32_t changes = balancer_.changed_passes();
    for (ExpertId e : part_rest_) changes |= mask[e];
    if ((changes & kAllButLast) != kAllButLast) {
      part_whole_[static_cast<size_t>(k)] = 1;
      whole = true;
      continue;
    }
    const auto loads = balancer_.rank_loads();
    for (int32_t r : part_ranks_) load_[at(k, r)] = loads[static_cast<size_t>(r)];
    for (ExpertId e : part_experts_) {
      const auto& rs = ranks_[static_cast<size_t>(e)];
      if (rs.size() > 1) mask[e] = balancer_.change_mask(e);
      auto& a = amt_[static_cast<size_t>(e)];
      a.resize(static_cast<size_t>(K_) * rs.size());
      double* ak = a.data() + static_cast<size_t>(k) * rs.size();
      if (rs.size() == 1) {
        ak[0] = x(k, e);
        continue;
      }
      const auto their = balancer_.replica_ranks(e);
      const auto amounts = balancer_.amounts(e);
      for (size_t i = 0; i < rs.size(); ++i)
        ak[i] = amounts[static_cast<size_t>(std::lower_bound(their.begin(), their.end(), rs[i]) - their.begin())];
    }
  }
  if (whole) split_scenarios(&part_whole_);
  return true;
}

}  // namespace omni::detail
