#include "omniplacement/core/placement.h"

#include <algorithm>
#include <cstring>

#include "omniplacement/core/str_cat.h"

namespace omni {

StatusOr<Placement> Placement::create(PlacementLayout layout, const ValidationRules& rules) {
  OMNI_RETURN_IF_ERROR(violations_to_status(omni::validate(layout, rules)));
  Placement p;
  p.layout_ = std::move(layout);
  p.build_index();
  return p;
}

StatusOr<Placement> Placement::contiguous(int32_t num_layers, int32_t num_ranks, int32_t num_experts,
                                          int32_t slots_per_rank) {
  if (num_ranks < 1 || num_ranks > kMaxRanks || num_experts < 1 || num_experts > kMaxExperts ||
      num_layers < 1 || num_layers > kMaxLayers) {
    return invalid_argument_error(str_cat("contiguous placement: need 1..", kMaxLayers, " layers, 1..", kMaxRanks,
                                          " ranks and 1..", kMaxExperts, " experts, got ", num_layers, ", ", num_ranks,
                                          ", ", num_experts));
  }
  const int32_t need = (num_experts + num_ranks - 1) / num_ranks;
  if (slots_per_rank < need || slots_per_rank > kMaxSlotsPerRank ||
      static_cast<int64_t>(num_ranks) * slots_per_rank > kMaxSlotsPerLayer) {
    return invalid_argument_error(str_cat("contiguous placement: ", num_experts, " experts on ", num_ranks,
                                          " ranks need slots_per_rank >= ", need, " (and <= ", kMaxSlotsPerRank,
                                          "), got ", slots_per_rank));
  }
  PlacementLayout layout;
  layout.num_ranks = num_ranks;
  layout.num_experts = num_experts;
  layout.slots_per_rank.assign(static_cast<size_t>(num_layers), slots_per_rank);
  std::vector<ExpertId> row(static_cast<size_t>(num_ranks) * static_cast<size_t>(slots_per_rank), kEmptySlot);
  const int32_t base = num_experts / num_ranks;
  const int32_t extra = num_experts % num_ranks;
  ExpertId e = 0;
  for (RankId r = 0; r < num_ranks; ++r) {
    const int32_t n = base + (r < extra ? 1 : 0);
    for (int32_t s = 0; s < n; ++s) row[static_cast<size_t>(r) * static_cast<size_t>(slots_per_rank) + static_cast<size_t>(s)] = e++;
  }
  layout.phy2log.assign(static_cast<size_t>(num_layers), row);
  return create(std::move(layout));
}

void Placement::build_index() {
  const auto L = static_cast<size_t>(num_layers());
  const auto E = static_cast<size_t>(num_experts());
  replica_offsets_.assign(L, {});
  replica_slots_.assign(L, {});
  for (size_t l = 0; l < L; ++l) {
    const auto& row = layout_.phy2log[l];
    auto& off = replica_offsets_[l];
    off.assign(E + 1, 0);
    for (ExpertId e : row)
      if (e >= 0) ++off[static_cast<size_t>(e) + 1];
    for (size_t e = 0; e < E; ++e) off[e + 1] += off[e];
    auto& slots = replica_slots_[l];
    slots.resize(static_cast<size_t>(off[E]));
    std::vector<int32_t> fill(off.begin(), off.end() - 1);
    for (size_t g = 0; g < row.size(); ++g) {
      const ExpertId e = row[g];
      if (e >= 0) slots[static_cast<size_t>(fill[static_cast<size_t>(e)]++)] = static_cast<GlobalSlot>(g);
    }
  }
}

StatusOr<Placement> Placement::without_ranks(std::span<const char> failed) const {
  if (failed.size() != static_cast<size_t>(num_ranks()))
    return invalid_argument_error(str_cat("without_ranks: ", failed.size(), " failed-rank flags, expected one per rank (",
                                          num_ranks(), ")"));
  Placement out;
  out.layout_ = layout_;
  out.replica_offsets_ = replica_offsets_;
  out.replica_slots_ = replica_slots_;
  const auto E = static_cast<size_t>(num_experts());
  std::vector<char> dead_slot;  // per global slot of the layer: on a failed rank
  for (size_t l = 0; l < layout_.phy2log.size(); ++l) {
    const auto spr = static_cast<size_t>(layout_.slots_per_rank[l]);
    dead_slot.assign(layout_.phy2log[l].size(), 0);
    auto& row = out.layout_.phy2log[l];
    bool any = false;
    for (size_t r = 0; r < failed.size(); ++r) {
      if (!failed[r]) continue;
      for (size_t g = r * spr; g < (r + 1) * spr; ++g) {
        any |= row[g] >= 0;
        dead_slot[g] = 1;
        row[g] = kEmptySlot;
        if (has_shares()) out.layout_.shares[l][g] = 0.0;
      }
    }
    auto& off = out.replica_offsets_[l];
    auto& slots = out.replica_slots_[l];
    if (any) {  // else the failed ranks held nothing here: the index stays
      // Filter each expert's ascending replica list in place (stays ascending).
      int32_t w = 0;
      for (size_t e = 0; e < E; ++e) {
        const int32_t begin = off[e], end = off[e + 1];
        off[e] = w;
        for (int32_t i = begin; i < end; ++i)
          if (!dead_slot[static_cast<size_t>(slots[static_cast<size_t>(i)])]) slots[static_cast<size_t>(w++)] = slots[static_cast<size_t>(i)];
      }
      off[E] = w;
      slots.resize(static_cast<size_t>(w));
    }
    // Renormalised in every layer, as a fresh drop_ranks of any placement
    // would (same sums in the same slot order, so the same bits).
    if (!has_shares()) continue;
    auto& sh = out.layout_.shares[l];
    for (size_t e = 0; e < E; ++e) {
      double s = 0;
      for (int32_t i = off[e]; i < off[e + 1]; ++i) s += sh[static_cast<size_t>(slots[static_cast<size_t>(i)])];
      const int32_t n = off[e + 1] - off[e];
      for (int32_t i = off[e]; i < off[e + 1]; ++i) {
        double& v = sh[static_cast<size_t>(slots[static_cast<size_t>(i)])];
        v = s > 0 ? v / s : 1.0 / n;
      }
    }
  }
  return out;
}

void Placement::check_layer(LayerId l) const {
  OMNI_CHECK_MSG(l >= 0 && l < num_layers(), str_cat("layer ", l, " out of [0, ", num_layers(), ")"));
}

int32_t Placement::slots_per_rank(LayerId l) const {
  check_layer(l);
  return layout_.slots_per_rank[static_cast<size_t>(l)];
}

bool Placement::is_uniform() const {
  return std::adjacent_find(layout_.slots_per_rank.begin(), layout_.slots_per_rank.end(), std::not_equal_to<>()) ==
         layout_.slots_per_rank.end();
}

std::span<const ExpertId> Placement::phy2log(LayerId l) const {
  check_layer(l);
  return layout_.phy2log[static_cast<size_t>(l)];
}

ExpertId Placement::expert_at(LayerId l, GlobalSlot g) const {
  check_layer(l);
  const auto& row = layout_.phy2log[static_cast<size_t>(l)];
  OMNI_CHECK_MSG(g >= 0 && static_cast<size_t>(g) < row.size(),
                 str_cat("layer ", l, ": global slot ", g, " out of [0, ", row.size(), ")"));
  return row[static_cast<size_t>(g)];
}

GlobalSlot Placement::global_slot(LayerId l, RankId r, SlotId s) const {
  const int32_t spr = slots_per_rank(l);
  OMNI_CHECK_MSG(r >= 0 && r < num_ranks() && s >= 0 && s < spr,
                 str_cat("layer ", l, ": (rank ", r, ", slot ", s, ") out of [", num_ranks(), ", ", spr, ")"));
  return r * spr + s;
}

RankId Placement::rank_of(LayerId l, GlobalSlot g) const {
  const int32_t spr = slots_per_rank(l);
  OMNI_CHECK_MSG(g >= 0 && g < num_ranks() * spr, str_cat("layer ", l, ": global slot ", g, " out of range"));
  return g / spr;
}

SlotId Placement::local_slot(LayerId l, GlobalSlot g) const {
  const int32_t spr = slots_per_rank(l);
  OMNI_CHECK_MSG(g >= 0 && g < num_ranks() * spr, str_cat("layer ", l, ": global slot ", g, " out of range"));
  return g % spr;
}

std::span<const GlobalSlot> Placement::replicas(LayerId l, ExpertId e) const {
  check_layer(l);
  OMNI_CHECK_MSG(e >= 0 && e < num_experts(), str_cat("layer ", l, ": expert ", e, " out of [0, ", num_experts(), ")"));
  const auto& off = replica_offsets_[static_cast<size_t>(l)];
  const auto b = static_cast<size_t>(off[static_cast<size_t>(e)]);
  const auto n = static_cast<size_t>(off[static_cast<size_t>(e) + 1]) - b;
  return std::span<const GlobalSlot>(replica_slots_[static_cast<size_t>(l)]).subspan(b, n);
}

int32_t Placement::num_replicas(LayerId l) const {
  check_layer(l);
  return static_cast<int32_t>(replica_slots_[static_cast<size_t>(l)].size());
}

std::span<const double> Placement::shares(LayerId l) const {
  check_layer(l);
  if (!has_shares()) return {};
  return layout_.shares[static_cast<size_t>(l)];
}

double Placement::share_of(LayerId l, GlobalSlot g) const {
  const ExpertId e = expert_at(l, g);
  if (e == kEmptySlot) return 0.0;
  if (has_shares()) return layout_.shares[static_cast<size_t>(l)][static_cast<size_t>(g)];
  return 1.0 / static_cast<double>(replica_count(l, e));
}

Placement Placement::without_shares() const {
  Placement p = *this;
  p.layout_.shares.clear();
  return p;
}

namespace {
struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
  }
  void i64(int64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    bytes(b, 8);
  }
};
}  // namespace

uint64_t Placement::checksum() const {
  Fnv f;
  f.i64(num_layers());
  f.i64(num_ranks());
  f.i64(num_experts());
  for (LayerId l = 0; l < num_layers(); ++l) {
    f.i64(layout_.slots_per_rank[static_cast<size_t>(l)]);
    for (ExpertId e : layout_.phy2log[static_cast<size_t>(l)]) f.i64(e);
  }
  f.i64(has_shares() ? 1 : 0);
  for (const auto& row : layout_.shares) {
    for (double d : row) {
      uint64_t bits;
      std::memcpy(&bits, &d, sizeof bits);
      f.i64(static_cast<int64_t>(bits));
    }
  }
  return f.h;
}

std::string Placement::summary() const {
  if (num_layers() == 0) return "empty placement";
  const auto [lo, hi] = std::minmax_element(layout_.slots_per_rank.begin(), layout_.slots_per_rank.end());
  std::string spr = *lo == *hi ? str_cat(*lo) : str_cat(*lo, "-", *hi);
  return str_cat(num_layers(), num_layers() == 1 ? " layer, " : " layers, ", num_ranks(), " ranks, ", num_experts(),
                 " experts, ", spr, " slots per rank", has_shares() ? ", with shares" : "");
}

bool operator==(const Placement& a, const Placement& b) {
  return a.layout_.num_ranks == b.layout_.num_ranks && a.layout_.num_experts == b.layout_.num_experts &&
         a.layout_.slots_per_rank == b.layout_.slots_per_rank && a.layout_.phy2log == b.layout_.phy2log &&
         a.layout_.shares == b.layout_.shares;
}

}  // namespace omni
