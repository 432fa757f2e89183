#include "omniplacement/core/validation.h"

#include <cmath>

#include "omniplacement/core/str_cat.h"

namespace omni {

const char* violation_kind_name(ViolationKind k) {
  switch (k) {
    case ViolationKind::kShape: return "shape";
    case ViolationKind::kExpertOutOfRange: return "expert-out-of-range";
    case ViolationKind::kExpertMissing: return "expert-missing";
    case ViolationKind::kSameRankDuplicate: return "same-rank-duplicate";
    case ViolationKind::kTooManyReplicas: return "too-many-replicas";
    case ViolationKind::kBadShare: return "bad-share";
  }
  return "unknown";
}

namespace {

class Collector {
 public:
  Collector(std::vector<Violation>* out, size_t max) : out_(out), max_(max) {}
  // Returns false once the list is full (callers stop scanning).
  bool add(ViolationKind kind, LayerId l, RankId r, SlotId s, ExpertId e, std::string msg) {
    if (full_) return false;
    if (out_->size() + 1 >= max_ && max_ > 0) {
      out_->push_back({kind, l, r, s, e, std::move(msg)});
      out_->push_back({ViolationKind::kShape, -1, -1, -1, -1,
                       str_cat("stopped after ", max_, " violations; more may follow")});
      full_ = true;
      return false;
    }
    out_->push_back({kind, l, r, s, e, std::move(msg)});
    return true;
  }
  bool full() const { return full_; }

 private:
  std::vector<Violation>* out_;
  size_t max_;
  bool full_ = false;
};

}  // namespace

std::vector<Violation> validate(const PlacementLayout& p, const ValidationRules& rules, size_t max_violations) {
  std::vector<Violation> out;
  Collector c(&out, max_violations < 2 ? 2 : max_violations);
  const int64_t R = p.num_ranks;
  const int64_t E = p.num_experts;
  if (R < 1 || R > kMaxRanks) {
    c.add(ViolationKind::kShape, -1, -1, -1, -1, str_cat("num_ranks must be in [1, ", kMaxRanks, "], got ", R));
    return out;
  }
  if (E < 1 || E > kMaxExperts) {
    c.add(ViolationKind::kShape, -1, -1, -1, -1, str_cat("num_experts must be in [1, ", kMaxExperts, "], got ", E));
    return out;
  }
  const int64_t L = static_cast<int64_t>(p.slots_per_rank.size());
  if (L < 1 || L > kMaxLayers) {
    c.add(ViolationKind::kShape, -1, -1, -1, -1,
          str_cat("number of layers (length of slots_per_rank) must be in [1, ", kMaxLayers, "], got ", L));
    return out;
  }
  if (static_cast<int64_t>(p.phy2log.size()) != L) {
    c.add(ViolationKind::kShape, -1, -1, -1, -1,
          str_cat("phy2log has ", p.phy2log.size(), " layers but slots_per_rank has ", L));
    return out;
  }
  const bool has_shares = !p.shares.empty();
  if (has_shares && static_cast<int64_t>(p.shares.size()) != L) {
    c.add(ViolationKind::kShape, -1, -1, -1, -1,
          str_cat("shares has ", p.shares.size(), " layers but the placement has ", L));
    return out;
  }
  if (rules.max_replicas_per_expert < 0) {
    c.add(ViolationKind::kShape, -1, -1, -1, -1,
          str_cat("max_replicas_per_expert must be >= 0 (0 = no cap), got ", rules.max_replicas_per_expert));
    return out;
  }

  std::vector<int32_t> count(static_cast<size_t>(E));
  std::vector<int32_t> seen_on_rank(static_cast<size_t>(E));  // last rank + 1 that held the expert
  std::vector<double> share_sum(static_cast<size_t>(E));
  for (LayerId l = 0; l < L && !c.full(); ++l) {
    const int64_t spr = p.slots_per_rank[static_cast<size_t>(l)];
    if (spr < 1 || spr > kMaxSlotsPerRank || R * spr > kMaxSlotsPerLayer) {
      c.add(ViolationKind::kShape, l, -1, -1, -1,
            str_cat("layer ", l, ": slots_per_rank must be in [1, ", kMaxSlotsPerRank, "] with num_ranks * slots_per_rank <= ",
                    kMaxSlotsPerLayer, ", got ", spr));
      continue;
    }
    const auto& row = p.phy2log[static_cast<size_t>(l)];
    if (static_cast<int64_t>(row.size()) != R * spr) {
      c.add(ViolationKind::kShape, l, -1, -1, -1,
            str_cat("layer ", l, ": phy2log has ", row.size(), " slots, expected num_ranks * slots_per_rank = ", R,
                    " * ", spr, " = ", R * spr));
      continue;
    }
    const std::vector<double>* shares = has_shares ? &p.shares[static_cast<size_t>(l)] : nullptr;
    if (shares && shares->size() != row.size()) {
      c.add(ViolationKind::kShape, l, -1, -1, -1,
            str_cat("layer ", l, ": shares has ", shares->size(), " entries, expected ", row.size()));
      shares = nullptr;
    }
    std::fill(count.begin(), count.end(), 0);
    std::fill(seen_on_rank.begin(), seen_on_rank.end(), 0);
    std::fill(share_sum.begin(), share_sum.end(), 0.0);
    for (int64_t g = 0; g < R * spr && !c.full(); ++g) {
      const ExpertId e = row[static_cast<size_t>(g)];
      const auto r = static_cast<RankId>(g / spr);
      const auto s = static_cast<SlotId>(g % spr);
      if (shares) {
        const double sh = (*shares)[static_cast<size_t>(g)];
        if (!std::isfinite(sh) || sh < 0 || sh > 1 + 1e-9) {
          c.add(ViolationKind::kBadShare, l, r, s, e,
                str_cat("layer ", l, ", rank ", r, ", slot ", s, ": share ", sh, " must be in [0, 1]"));
        } else if (e == kEmptySlot && sh != 0) {
          c.add(ViolationKind::kBadShare, l, r, s, e,
                str_cat("layer ", l, ", rank ", r, ", slot ", s, ": empty slot has share ", sh, ", must be 0"));
        } else if (e >= 0 && e < E) {
          share_sum[static_cast<size_t>(e)] += sh;
        }
      }
      if (e == kEmptySlot) continue;
      if (e < 0 || e >= E) {
        c.add(ViolationKind::kExpertOutOfRange, l, r, s, e,
              str_cat("layer ", l, ", rank ", r, ", slot ", s, ": expert ", e, " out of range; valid are 0..", E - 1,
                      " or -1 for an empty slot"));
        continue;
      }
      ++count[static_cast<size_t>(e)];
      if (seen_on_rank[static_cast<size_t>(e)] == r + 1 && rules.forbid_same_rank_duplicates) {
        c.add(ViolationKind::kSameRankDuplicate, l, r, s, e,
              str_cat("layer ", l, ", rank ", r, ", slot ", s, ": expert ", e,
                      " already has a replica on this rank (same-rank duplicate)"));
      }
      seen_on_rank[static_cast<size_t>(e)] = r + 1;
    }
    for (ExpertId e = 0; e < E && !c.full(); ++e) {
      const int32_t n = count[static_cast<size_t>(e)];
      if (n == 0 && rules.require_every_expert) {
        c.add(ViolationKind::kExpertMissing, l, -1, -1, e, str_cat("layer ", l, ": expert ", e, " has no replica"));
      }
      if (rules.max_replicas_per_expert > 0 && n > rules.max_replicas_per_expert) {
        c.add(ViolationKind::kTooManyReplicas, l, -1, -1, e,
              str_cat("layer ", l, ": expert ", e, " has ", n, " replicas, more than the cap of ",
                      rules.max_replicas_per_expert));
      }
      if (shares && n > 0 && std::abs(share_sum[static_cast<size_t>(e)] - 1.0) > 1e-6) {
        c.add(ViolationKind::kBadShare, l, -1, -1, e,
              str_cat("layer ", l, ": shares of expert ", e, " sum to ", share_sum[static_cast<size_t>(e)],
                      ", must sum to 1"));
      }
    }
  }
  return out;
}

Status violations_to_status(const std::vector<Violation>& violations, size_t max_listed) {
  if (violations.empty()) return ok_status();
  std::string msg = str_cat("invalid placement (", violations.size(), violations.size() == 1 ? " violation" : " violations", "): ");
  for (size_t i = 0; i < violations.size() && i < max_listed; ++i) {
    if (i) msg += "; ";
    msg += violations[i].message;
  }
  if (violations.size() > max_listed) msg += str_cat("; ... (", violations.size() - max_listed, " more)");
  return invalid_argument_error(std::move(msg));
}

}  // namespace omni
