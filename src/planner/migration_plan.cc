// diff(), its options' checks and verify_migration() in one file (about 810
// lines, just above the project's ~800): the layer grid and the expert keys
// in the anonymous namespace below serve both the planning of a migration and
// its verification, which must read the two placements the same way.
#include "omniplacement/planner/migration_plan.h"

#include <algorithm>
#include <cstdio>
#include <tuple>

#include "omniplacement/core/placement_ops.h"
#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

// Both placements of one layer on a common grid of num_ranks x width slots,
// width = max of the two slots_per_rank (see "Slots" in the header). Index
// i = rank * width + slot.
struct LayerGrid {
  int32_t width = 0;
  std::vector<ExpertId> before;  // current, padded with kEmptySlot
  std::vector<ExpertId> after;   // next, padded with kEmptySlot
};

LayerGrid make_grid(const Placement& current, const Placement& next, LayerId l) {
  LayerGrid g;
  const int32_t r_count = current.num_ranks();
  const int32_t spr_c = current.slots_per_rank(l);
  const int32_t spr_n = next.slots_per_rank(l);
  g.width = std::max(spr_c, spr_n);
  const size_t n = static_cast<size_t>(r_count) * static_cast<size_t>(g.width);
  g.before.assign(n, kEmptySlot);
  g.after.assign(n, kEmptySlot);
  for (RankId r = 0; r < r_count; ++r) {
    const size_t row = static_cast<size_t>(r) * static_cast<size_t>(g.width);
    for (SlotId s = 0; s < spr_c; ++s) g.before[row + static_cast<size_t>(s)] = current.expert_at(l, r, s);
    for (SlotId s = 0; s < spr_n; ++s) g.after[row + static_cast<size_t>(s)] = next.expert_at(l, r, s);
  }
  return g;
}

Status check_same_shape(const Placement& current, const Placement& next, const char* what) {
  if (current.num_layers() != next.num_layers() || current.num_ranks() != next.num_ranks() ||
      current.num_experts() != next.num_experts()) {
    return invalid_argument_error(str_cat(what, ": the placements differ in shape: current has ", current.num_layers(),
                                          " layers, ", current.num_ranks(), " ranks, ", current.num_experts(),
                                          " experts; next has ", next.num_layers(), " layers, ", next.num_ranks(),
                                          " ranks, ", next.num_experts(), " experts (they must be equal)"));
  }
  return ok_status();
}

size_t key(LayerId l, ExpertId e, int32_t num_experts) {
  return static_cast<size_t>(l) * static_cast<size_t>(num_experts) + static_cast<size_t>(e);
}

// One transfer still to schedule.
struct Pending {
  LayerId layer = 0;
  int32_t dst = 0;               // grid index of the destination
  ExpertId expert = kEmptySlot;  // what the destination receives
  ExpertId replaced = kEmptySlot;
  int32_t src = -1;  // grid index of the chosen source (while in a round)
  bool in_round = false;
  bool done = false;
};

// The round builder of diff(): greedy, in (layer, dst rank, dst slot) order,
// adding each transfer together with the chain of transfers its safety needs.
class Scheduler {
 public:
  Scheduler(const Placement& current, const Placement& next, const Topology& topology, const MigrationOptions& options)
      : topo_(topology),
        num_ranks_(current.num_ranks()),
        num_experts_(current.num_experts()),
        limit_(options.max_per_round),
        byte_limit_(options.staging_bytes_per_rank),
        layer_limit_(options.layers_per_commit) {
    const int32_t num_layers = current.num_layers();
    for (LayerId l = 0; l < num_layers; ++l)
      bytes_.push_back(options.layer_expert_bytes.empty() ? options.expert_bytes
                                                          : options.layer_expert_bytes[static_cast<size_t>(l)]);
    in_round_of_layer_.assign(static_cast<size_t>(num_layers), 0);
    grids_.reserve(static_cast<size_t>(num_layers));
    for (LayerId l = 0; l < num_layers; ++l) grids_.push_back(make_grid(current, next, l));
    const size_t keys = static_cast<size_t>(num_layers) * static_cast<size_t>(num_experts_);
    copies_.resize(keys);
    alive_.assign(keys, 0);
    delta_.assign(keys, 0);
    by_expert_.resize(keys);
    for (LayerId l = 0; l < num_layers; ++l) {
      const LayerGrid& g = grids_[static_cast<size_t>(l)];
      for (int32_t i = 0; i < static_cast<int32_t>(g.before.size()); ++i) {
        const ExpertId b = g.before[static_cast<size_t>(i)];
        const ExpertId a = g.after[static_cast<size_t>(i)];
        if (b != kEmptySlot) copies_[key(l, b, num_experts_)].push_back(i);
        if (a != kEmptySlot) alive_[key(l, a, num_experts_)] = 1;
        if (a != kEmptySlot && a != b) {
          by_expert_[key(l, a, num_experts_)].push_back(static_cast<int32_t>(pending_.size()));
          pending_.push_back(Pending{l, i, a, b});
        }
      }
    }
    // An expert that only the current placement has is not protected: nothing
    // will ever read it again, and the next placement drops it.
    for (size_t k = 0; k < keys; ++k)
      if (copies_[k].empty()) alive_[k] = 0;
    failed_.assign(pending_.size(), 0);
    overwritten_.resize(grids_.size());
    for (size_t l = 0; l < grids_.size(); ++l) overwritten_[l].assign(grids_[l].before.size(), 0);
    sends_.assign(static_cast<size_t>(num_ranks_), 0);
    receives_.assign(static_cast<size_t>(num_ranks_), 0);
    receive_bytes_.assign(static_cast<size_t>(num_ranks_), 0);
    total_sends_.assign(static_cast<size_t>(num_ranks_), 0);
  }

  const std::vector<LayerGrid>& grids() const { return grids_; }
  int64_t num_pending() const { return static_cast<int64_t>(pending_.size()); }

  // Schedules every pending transfer; calls emit(round_members) once per round
  // with the indices (into pending()) of the round's transfers.
  template <typename Emit>
  void run(Emit&& emit) {
    std::vector<int32_t> open(pending_.size());
    for (size_t i = 0; i < open.size(); ++i) open[i] = static_cast<int32_t>(i);
    while (!open.empty()) {
      round_.clear();
      saturated_ = 0;
      round_limit_ = limit_;
      round_byte_limit_ = byte_limit_;
      ++pass_;
      fill_round(open);
      if (round_.empty()) {
        // Every open transfer is blocked by the budget: the first one belongs to
        // a cycle that cannot be split (or needs more bytes than the budget on
        // its own), so it goes whole, beyond the budget. The round's staging
        // need is then set by that cycle, so other transfers may fill it up to
        // the same per-rank count and bytes (fewer over-limit rounds).
        const bool added = schedule(open.front(), /*use_cap=*/false);
        OMNI_CHECK_MSG(added, "an uncapped chain must always be schedulable");
        if (limit_ > 0) {
          round_limit_ = std::max(limit_, std::max(*std::max_element(sends_.begin(), sends_.end()),
                                                   *std::max_element(receives_.begin(), receives_.end())));
          saturated_ = static_cast<int32_t>(
              std::count_if(receives_.begin(), receives_.end(), [&](int32_t n) { return n >= round_limit_; }));
        }
        if (byte_limit_ > 0)
          round_byte_limit_ =
              std::max(byte_limit_, *std::max_element(receive_bytes_.begin(), receive_bytes_.end()));
        ++pass_;
        fill_round(open);
      }
      emit(round_);
      finish_round();
      open.erase(
          std::remove_if(open.begin(), open.end(), [&](int32_t p) { return pending_[static_cast<size_t>(p)].done; }),
          open.end());
    }
  }

  const Pending& pending(int32_t p) const { return pending_[static_cast<size_t>(p)]; }

 private:
  bool capped() const { return limit_ > 0 || byte_limit_ > 0 || layer_limit_ > 0; }
  RankId rank_of(LayerId l, int32_t index) const { return index / grids_[static_cast<size_t>(l)].width; }
  int32_t survivors(LayerId l, ExpertId e) const {
    const size_t k = key(l, e, num_experts_);
    return static_cast<int32_t>(copies_[k].size()) + delta_[k];
  }
  // Overwriting one copy of `e` leaves it at least one in-place copy (or it need not survive).
  bool safe_to_overwrite(LayerId l, ExpertId e) const {
    return e == kEmptySlot || !alive_[key(l, e, num_experts_)] || survivors(l, e) >= 2;
  }

  void fill_round(const std::vector<int32_t>& open) {
    for (int32_t p : open) {
      if (limit_ > 0 && saturated_ == num_ranks_) break;
      const Pending& t = pending_[static_cast<size_t>(p)];
      if (t.in_round || failed_[static_cast<size_t>(p)] == pass_) continue;
      if (capped() && !receive_fits(t)) continue;
      schedule(p, capped());
    }
  }

  // Whether the destination rank and the round can take t (count, bytes, layers).
  bool receive_fits(const Pending& t) const {
    const auto d = static_cast<size_t>(rank_of(t.layer, t.dst));
    if (limit_ > 0 && receives_[d] >= round_limit_) return false;
    if (byte_limit_ > 0 && receive_bytes_[d] + bytes_[static_cast<size_t>(t.layer)] > round_byte_limit_) return false;
    if (layer_limit_ > 0 && in_round_of_layer_[static_cast<size_t>(t.layer)] == 0 && layers_in_round_ >= layer_limit_)
      return false;
    return true;
  }

  // The nearest in-place source of pending transfer p (see "Source choice"), or -1.
  int32_t pick_source(const Pending& t, bool use_cap) const {
    const RankId d = rank_of(t.layer, t.dst);
    const std::vector<int32_t>& cands = copies_[key(t.layer, t.expert, num_experts_)];
    int best_class = 3;
    for (int32_t c : cands) best_class = std::min(best_class, static_cast<int>(topo_.link(rank_of(t.layer, c), d)));
    int32_t best = -1;
    std::tuple<int32_t, int64_t, int32_t> best_key{};
    for (int32_t c : cands) {
      const RankId r = rank_of(t.layer, c);
      if (static_cast<int>(topo_.link(r, d)) != best_class) continue;
      const int32_t busy = sends_[static_cast<size_t>(r)];
      if (use_cap && limit_ > 0 && busy >= round_limit_) continue;
      // Candidates come in ascending grid index, so the first of equal keys is the lowest (rank, slot).
      const std::tuple<int32_t, int64_t, int32_t> k{busy, total_sends_[static_cast<size_t>(r)], c};
      if (best < 0 || k < best_key) {
        best = c;
        best_key = k;
      }
    }
    return best;
  }

  bool feasible(const Pending& t, bool use_cap) const {
    if (use_cap && !receive_fits(t)) return false;
    return pick_source(t, use_cap) >= 0;
  }

  void add(int32_t p, int32_t src) {
    Pending& t = pending_[static_cast<size_t>(p)];
    t.in_round = true;
    t.src = src;
    ++sends_[static_cast<size_t>(rank_of(t.layer, src))];
    int32_t& recv = receives_[static_cast<size_t>(rank_of(t.layer, t.dst))];
    if (++recv == round_limit_) ++saturated_;
    receive_bytes_[static_cast<size_t>(rank_of(t.layer, t.dst))] += bytes_[static_cast<size_t>(t.layer)];
    if (in_round_of_layer_[static_cast<size_t>(t.layer)]++ == 0) ++layers_in_round_;
    ++delta_[key(t.layer, t.expert, num_experts_)];
    if (t.replaced != kEmptySlot) --delta_[key(t.layer, t.replaced, num_experts_)];
    overwritten_[static_cast<size_t>(t.layer)][static_cast<size_t>(t.dst)] = 1;
    round_.push_back(p);
  }

  void remove_last() {
    const int32_t p = round_.back();
    round_.pop_back();
    Pending& t = pending_[static_cast<size_t>(p)];
    t.in_round = false;
    --sends_[static_cast<size_t>(rank_of(t.layer, t.src))];
    int32_t& recv = receives_[static_cast<size_t>(rank_of(t.layer, t.dst))];
    if (recv-- == round_limit_) --saturated_;
    receive_bytes_[static_cast<size_t>(rank_of(t.layer, t.dst))] -= bytes_[static_cast<size_t>(t.layer)];
    if (--in_round_of_layer_[static_cast<size_t>(t.layer)] == 0) --layers_in_round_;
    --delta_[key(t.layer, t.expert, num_experts_)];
    if (t.replaced != kEmptySlot) ++delta_[key(t.layer, t.replaced, num_experts_)];
    overwritten_[static_cast<size_t>(t.layer)][static_cast<size_t>(t.dst)] = 0;
    t.src = -1;
  }

  // Adds p's chain to the round (try_chain), then pulls in the readers of the
  // slots it overwrites: a pending transfer whose nearest source is a slot this
  // round overwrites would, in a later round, have to read from farther away, so
  // it goes in this round too when the budget allows (reading that slot before
  // it is written). Pulled transfers may pull others in turn.
  bool schedule(int32_t p, bool use_cap) {
    const size_t start = round_.size();
    if (!try_chain(p, use_cap, /*remember_failure=*/true)) return false;
    for (size_t i = start; i < round_.size(); ++i) {
      const Pending& t = pending_[static_cast<size_t>(round_[i])];
      if (t.replaced == kEmptySlot || !alive_[key(t.layer, t.replaced, num_experts_)]) continue;
      for (int32_t q : by_expert_[key(t.layer, t.replaced, num_experts_)]) {
        const Pending& u = pending_[static_cast<size_t>(q)];
        if (u.done || u.in_round) continue;
        const RankId to = rank_of(u.layer, u.dst);
        if (static_cast<int>(topo_.link(rank_of(t.layer, t.dst), to)) < nearest_after_round(u.layer, u.expert, to))
          try_chain(q, capped(), /*remember_failure=*/false);
      }
    }
    return true;
  }

  // The nearest link class (as int, 3 = none) to rank `to` from a copy of e that
  // will be in place after this round: not overwritten, or written by it.
  int nearest_after_round(LayerId l, ExpertId e, RankId to) const {
    int best = 3;
    for (int32_t c : copies_[key(l, e, num_experts_)])
      if (!overwritten_[static_cast<size_t>(l)][static_cast<size_t>(c)])
        best = std::min(best, static_cast<int>(topo_.link(rank_of(l, c), to)));
    for (int32_t q : by_expert_[key(l, e, num_experts_)]) {
      const Pending& u = pending_[static_cast<size_t>(q)];
      if (u.in_round) best = std::min(best, static_cast<int>(topo_.link(rank_of(l, u.dst), to)));
    }
    return best;
  }

  // Adds p to the round and, while the expert it overwrites would be left with no
  // in-place copy, a pending transfer of that expert (whose own overwrite may
  // need the next link, and so on until the chain ends at an empty or still
  // covered slot, or closes a cycle). All or nothing.
  bool try_chain(int32_t p, bool use_cap, bool remember_failure) {
    const size_t start = round_.size();
    int32_t cur = p;
    while (true) {
      const Pending& t = pending_[static_cast<size_t>(cur)];
      const int32_t src = feasible(t, use_cap) ? pick_source(t, use_cap) : -1;
      if (src < 0) break;
      add(cur, src);
      if (t.replaced == kEmptySlot || !alive_[key(t.layer, t.replaced, num_experts_)] ||
          survivors(t.layer, t.replaced) >= 1)
        return true;
      cur = next_link(t.layer, t.replaced, use_cap);
      if (cur < 0) break;
    }
    // The budget only fills up during a pass, so a chain that failed is unlikely to
    // succeed later in the pass from any of its members: they wait for the next
    // round (only speed and packing depend on this, never correctness). Without it
    // a long cycle of sole copies is walked once per member, quadratically.
    if (remember_failure && cur >= 0) failed_[static_cast<size_t>(cur)] = pass_;
    while (round_.size() > start) {
      if (remember_failure) failed_[static_cast<size_t>(round_.back())] = pass_;
      remove_last();
    }
    return false;
  }

  // A pending transfer of expert e (layer l) not yet in the round that can go now;
  // one whose own overwrite is safe is preferred, to end the chain early.
  int32_t next_link(LayerId l, ExpertId e, bool use_cap) const {
    int32_t fallback = -1;
    for (int32_t q : by_expert_[key(l, e, num_experts_)]) {
      const Pending& t = pending_[static_cast<size_t>(q)];
      if (t.done || t.in_round || !feasible(t, use_cap)) continue;
      if (safe_to_overwrite(l, t.replaced)) return q;
      if (fallback < 0) fallback = q;
    }
    return fallback;
  }

  // Commits the round: destinations now hold their new experts.
  void finish_round() {
    for (int32_t p : round_) {
      Pending& t = pending_[static_cast<size_t>(p)];
      if (t.replaced != kEmptySlot) {
        std::vector<int32_t>& v = copies_[key(t.layer, t.replaced, num_experts_)];
        v.erase(std::find(v.begin(), v.end(), t.dst));
        delta_[key(t.layer, t.replaced, num_experts_)] = 0;
      }
      std::vector<int32_t>& w = copies_[key(t.layer, t.expert, num_experts_)];
      w.insert(std::upper_bound(w.begin(), w.end(), t.dst), t.dst);
      delta_[key(t.layer, t.expert, num_experts_)] = 0;
      ++total_sends_[static_cast<size_t>(rank_of(t.layer, t.src))];
      overwritten_[static_cast<size_t>(t.layer)][static_cast<size_t>(t.dst)] = 0;
      in_round_of_layer_[static_cast<size_t>(t.layer)] = 0;
      t.in_round = false;
      t.done = true;
    }
    layers_in_round_ = 0;
    std::fill(sends_.begin(), sends_.end(), 0);
    std::fill(receives_.begin(), receives_.end(), 0);
    std::fill(receive_bytes_.begin(), receive_bytes_.end(), 0);
  }

  const Topology& topo_;
  int32_t num_ranks_;
  int32_t num_experts_;
  int32_t limit_;                // max_per_round
  int64_t byte_limit_;           // staging_bytes_per_rank
  int32_t layer_limit_;          // layers_per_commit
  int32_t round_limit_ = 0;      // limit_, or more in a round forced over it
  int64_t round_byte_limit_ = 0; // byte_limit_, or more in a round forced over it
  std::vector<int64_t> bytes_;   // [layer]: bytes of one expert
  int32_t pass_ = 0;             // stamp of the current fill pass
  std::vector<int32_t> failed_;  // [pending]: pass in which its chain last failed
  std::vector<LayerGrid> grids_;
  std::vector<Pending> pending_;                 // in (layer, dst index) order
  std::vector<std::vector<int32_t>> copies_;     // [layer, expert] -> in-place grid indices at round start, ascending
  std::vector<std::vector<int32_t>> by_expert_;  // [layer, expert] -> pending transfers of that expert
  std::vector<char> alive_;                      // [layer, expert]: in both placements, must keep a copy
  std::vector<int32_t> delta_;                   // [layer, expert]: copies gained minus lost in this round
  std::vector<std::vector<char>> overwritten_;   // [layer][grid index]: a destination in this round
  std::vector<int32_t> sends_, receives_;        // [rank], this round
  std::vector<int64_t> receive_bytes_;           // [rank], this round
  std::vector<int32_t> in_round_of_layer_;       // [layer]: transfers of the layer in this round
  int32_t layers_in_round_ = 0;                  // layers with a transfer in this round
  std::vector<int64_t> total_sends_;             // [rank], whole plan so far
  std::vector<int32_t> round_;
  int32_t saturated_ = 0;  // ranks whose receives reached the budget
};

Status check_options(const MigrationOptions& o, int32_t num_layers) {
  if (o.expert_bytes < 1 || o.expert_bytes > kMaxExpertBytes) {
    return invalid_argument_error(
        str_cat("diff: expert_bytes must be in [1, ", kMaxExpertBytes, "], got ", o.expert_bytes));
  }
  if (!o.layer_expert_bytes.empty()) {
    if (static_cast<int64_t>(o.layer_expert_bytes.size()) != num_layers) {
      return invalid_argument_error(str_cat("diff: layer_expert_bytes has ", o.layer_expert_bytes.size(),
                                            " elements; it must be empty or have one per layer (", num_layers, ")"));
    }
    for (size_t l = 0; l < o.layer_expert_bytes.size(); ++l) {
      if (o.layer_expert_bytes[l] < 1 || o.layer_expert_bytes[l] > kMaxExpertBytes) {
        return invalid_argument_error(str_cat("diff: layer_expert_bytes[", l, "] must be in [1, ", kMaxExpertBytes,
                                              "], got ", o.layer_expert_bytes[l]));
      }
    }
  }
  if (o.max_per_round < 0) {
    return invalid_argument_error(str_cat("diff: max_per_round must be >= 0 (0 = no limit), got ", o.max_per_round));
  }
  if (o.staging_bytes_per_rank < 0) {
    return invalid_argument_error(
        str_cat("diff: staging_bytes_per_rank must be >= 0 (0 = no limit), got ", o.staging_bytes_per_rank));
  }
  if (o.layers_per_commit < 0) {
    return invalid_argument_error(
        str_cat("diff: layers_per_commit must be >= 0 (0 = no limit), got ", o.layers_per_commit));
  }
  return ok_status();
}

}  // namespace

int32_t MigrationPlan::num_over_limit_rounds() const {
  return static_cast<int32_t>(
      std::count_if(rounds.begin(), rounds.end(), [](const MigrationRound& r) { return r.over_limit; }));
}

std::string MigrationPlan::summary() const {
  char gb[32];
  std::snprintf(gb, sizeof gb, "%.2f GB", static_cast<double>(total_bytes) / 1e9);
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.4g s", total_seconds);
  std::string s =
      str_cat(num_transfers, num_transfers == 1 ? " transfer (" : " transfers (", gb, ": ", transfers_by_link[0],
              " same-rank, ", transfers_by_link[1], " same-host, ", transfers_by_link[2], " cross-host) in ",
              rounds.size(), rounds.size() == 1 ? " round" : " rounds", ", est. ", secs, "; ", num_unchanged_slots,
              " slots unchanged, ", releases.size(), " released");
  if (const int32_t over = num_over_limit_rounds(); over > 0) {
    s += str_cat("; ", over, over == 1 ? " round" : " rounds", " over the limit of ");
    if (max_per_round > 0) s += str_cat(max_per_round, " per rank");
    if (max_per_round > 0 && staging_bytes_per_rank > 0) s += " or ";
    if (staging_bytes_per_rank > 0) s += str_cat(staging_bytes_per_rank, " staging bytes per rank");
  }
  return s;
}

StatusOr<MigrationPlan> diff(const Placement& current, const Placement& next, const Topology& topology,
                             const MigrationOptions& options) {
  OMNI_RETURN_IF_ERROR(check_same_shape(current, next, "diff"));
  if (topology.num_ranks() != current.num_ranks()) {
    return invalid_argument_error(
        str_cat("diff: the topology has ", topology.num_ranks(), " ranks, the placements have ", current.num_ranks()));
  }
  OMNI_RETURN_IF_ERROR(check_options(options, current.num_layers()));
  for (LayerId l = 0; l < current.num_layers(); ++l) {
    for (ExpertId e = 0; e < current.num_experts(); ++e) {
      if (next.replica_count(l, e) > 0 && current.replica_count(l, e) == 0) {
        return failed_precondition_error(
            str_cat("diff: layer ", l, ", expert ", e,
                    ": the next placement has a replica but the current one has none, so no transfer can supply "
                    "it (restore it from a backup source first)"));
      }
    }
  }

  Scheduler sched(current, next, topology, options);
  MigrationPlan plan;
  plan.max_per_round = options.max_per_round;
  plan.staging_bytes_per_rank = options.staging_bytes_per_rank;
  plan.layers_per_commit = options.layers_per_commit;
  auto bytes_of = [&](LayerId l) {
    return options.layer_expert_bytes.empty() ? options.expert_bytes
                                              : options.layer_expert_bytes[static_cast<size_t>(l)];
  };
  std::vector<double> send_s(static_cast<size_t>(current.num_ranks()), 0.0);
  std::vector<double> recv_s(send_s.size(), 0.0);
  std::vector<int32_t> send_n(send_s.size(), 0);
  std::vector<int32_t> recv_n(send_s.size(), 0);
  std::vector<int64_t> recv_b(send_s.size(), 0);

  sched.run([&](const std::vector<int32_t>& members) {
    MigrationRound round;
    round.transfers.reserve(members.size());
    for (int32_t p : members) {
      const Pending& t = sched.pending(p);
      const int32_t w = sched.grids()[static_cast<size_t>(t.layer)].width;
      Transfer x;
      x.layer = t.layer;
      x.expert = t.expert;
      x.src_rank = t.src / w;
      x.src_slot = t.src % w;
      x.dst_rank = t.dst / w;
      x.dst_slot = t.dst % w;
      x.replaced = t.replaced;
      x.link = topology.link(x.src_rank, x.dst_rank);
      x.bytes = bytes_of(t.layer);
      round.transfers.push_back(x);
    }
    std::sort(round.transfers.begin(), round.transfers.end(), [](const Transfer& a, const Transfer& b) {
      return std::tie(a.layer, a.dst_rank, a.dst_slot) < std::tie(b.layer, b.dst_rank, b.dst_slot);
    });
    for (const Transfer& x : round.transfers) {
      const double s = topology.transfer_seconds(x.src_rank, x.dst_rank, static_cast<double>(x.bytes));
      send_s[static_cast<size_t>(x.src_rank)] += s;
      recv_s[static_cast<size_t>(x.dst_rank)] += s;
      ++send_n[static_cast<size_t>(x.src_rank)];
      ++recv_n[static_cast<size_t>(x.dst_rank)];
      recv_b[static_cast<size_t>(x.dst_rank)] += x.bytes;
      round.bytes += x.bytes;
      plan.transfers_by_link[static_cast<size_t>(x.link)] += 1;
      plan.bytes_by_link[static_cast<size_t>(x.link)] += x.bytes;
    }
    // Reset only the ranks this round touched, so a round costs O(its transfers).
    for (const Transfer& x : round.transfers) {
      for (RankId r : {x.src_rank, x.dst_rank}) {
        const auto i = static_cast<size_t>(r);
        round.seconds = std::max(round.seconds, std::max(send_s[i], recv_s[i]));
        round.max_sends = std::max(round.max_sends, send_n[i]);
        round.max_receives = std::max(round.max_receives, recv_n[i]);
        round.max_receive_bytes = std::max(round.max_receive_bytes, recv_b[i]);
      }
    }
    for (const Transfer& x : round.transfers) {
      for (RankId r : {x.src_rank, x.dst_rank}) {
        const auto i = static_cast<size_t>(r);
        send_s[i] = recv_s[i] = 0;
        send_n[i] = recv_n[i] = 0;
        recv_b[i] = 0;
      }
    }
    round.over_limit =
        (options.max_per_round > 0 && std::max(round.max_sends, round.max_receives) > options.max_per_round) ||
        (options.staging_bytes_per_rank > 0 && round.max_receive_bytes > options.staging_bytes_per_rank);
    plan.num_transfers += static_cast<int64_t>(round.transfers.size());
    plan.total_bytes += round.bytes;
    plan.total_seconds += round.seconds;
    plan.rounds.push_back(std::move(round));
  });

  for (LayerId l = 0; l < current.num_layers(); ++l) {
    const LayerGrid& g = sched.grids()[static_cast<size_t>(l)];
    for (size_t i = 0; i < g.before.size(); ++i) {
      const ExpertId b = g.before[i];
      const ExpertId a = g.after[i];
      if (a != kEmptySlot && a == b) ++plan.num_unchanged_slots;
      if (a == kEmptySlot && b != kEmptySlot) {
        plan.releases.push_back(SlotRelease{l, static_cast<RankId>(static_cast<int32_t>(i) / g.width),
                                            static_cast<SlotId>(static_cast<int32_t>(i) % g.width), b});
      }
    }
  }
  OMNI_CHECK(plan.num_transfers == sched.num_pending());
  return plan;
}

Status verify_migration(const Placement& current, const MigrationPlan& plan, const Placement& next) {
  OMNI_RETURN_IF_ERROR(check_same_shape(current, next, "verify_migration"));
  const int32_t num_layers = current.num_layers();
  const int32_t num_ranks = current.num_ranks();
  const int32_t num_experts = current.num_experts();
  std::vector<LayerGrid> grids;
  grids.reserve(static_cast<size_t>(num_layers));
  for (LayerId l = 0; l < num_layers; ++l) grids.push_back(make_grid(current, next, l));
  const size_t keys = static_cast<size_t>(num_layers) * static_cast<size_t>(num_experts);
  // count[l, e]: slots holding e in the state; must_keep[l, e]: e is in both placements.
  std::vector<int32_t> count(keys, 0);
  std::vector<char> must_keep(keys, 0);
  for (LayerId l = 0; l < num_layers; ++l) {
    for (ExpertId e = 0; e < num_experts; ++e) {
      count[key(l, e, num_experts)] = current.replica_count(l, e);
      must_keep[key(l, e, num_experts)] = current.replica_count(l, e) > 0 && next.replica_count(l, e) > 0;
    }
  }
  // written[l][i]: 1 + the last round that wrote grid index i (0 = never).
  std::vector<std::vector<int32_t>> written(static_cast<size_t>(num_layers));
  for (LayerId l = 0; l < num_layers; ++l)
    written[static_cast<size_t>(l)].assign(grids[static_cast<size_t>(l)].before.size(), 0);
  std::vector<int32_t> sends(static_cast<size_t>(num_ranks), 0);
  std::vector<int32_t> receives(static_cast<size_t>(num_ranks), 0);
  std::vector<int64_t> receive_bytes(static_cast<size_t>(num_ranks), 0);
  std::vector<char> layer_in_round(static_cast<size_t>(num_layers), 0);
  int64_t num_transfers = 0;
  int64_t total_bytes = 0;

  for (size_t k = 0; k < plan.rounds.size(); ++k) {
    const MigrationRound& round = plan.rounds[k];
    std::fill(sends.begin(), sends.end(), 0);
    std::fill(receives.begin(), receives.end(), 0);
    std::fill(receive_bytes.begin(), receive_bytes.end(), 0);
    std::fill(layer_in_round.begin(), layer_in_round.end(), 0);
    int32_t layers = 0;
    int64_t round_bytes = 0;
    // Reads: every check sees the state at the start of the round.
    for (size_t i = 0; i < round.transfers.size(); ++i) {
      const Transfer& t = round.transfers[i];
      // Built only on failure: a plan has thousands of transfers.
      auto where = [&] {
        return str_cat("verify_migration: round ", k, ", transfer ", i, " (layer ", t.layer, ", expert ", t.expert,
                       ", rank ", t.src_rank, " slot ", t.src_slot, " -> rank ", t.dst_rank, " slot ", t.dst_slot, ")");
      };
      if (t.layer < 0 || t.layer >= num_layers) {
        return invalid_argument_error(str_cat(where(), ": layer out of [0, ", num_layers, ")"));
      }
      const LayerGrid& g = grids[static_cast<size_t>(t.layer)];
      if (t.expert < 0 || t.expert >= num_experts) {
        return invalid_argument_error(str_cat(where(), ": expert out of [0, ", num_experts, ")"));
      }
      if (t.src_rank < 0 || t.src_rank >= num_ranks || t.dst_rank < 0 || t.dst_rank >= num_ranks) {
        return invalid_argument_error(str_cat(where(), ": rank out of [0, ", num_ranks, ")"));
      }
      if (t.src_slot < 0 || t.src_slot >= g.width || t.dst_slot < 0 || t.dst_slot >= g.width) {
        return invalid_argument_error(
            str_cat(where(), ": slot out of [0, ", g.width, ") (the larger slots_per_rank of the layer)"));
      }
      if (t.bytes < 0) return invalid_argument_error(str_cat(where(), ": negative bytes ", t.bytes));
      if ((t.src_rank == t.dst_rank) != (t.link == LinkClass::kSameRank)) {
        return invalid_argument_error(
            str_cat(where(), ": link class ", link_class_name(t.link), " does not match the ranks"));
      }
      const size_t src =
          static_cast<size_t>(t.src_rank) * static_cast<size_t>(g.width) + static_cast<size_t>(t.src_slot);
      const size_t dst =
          static_cast<size_t>(t.dst_rank) * static_cast<size_t>(g.width) + static_cast<size_t>(t.dst_slot);
      if (g.before[src] != t.expert) {
        return invalid_argument_error(str_cat(where(), ": the source holds expert ", g.before[src],
                                              " at the start of the round, not expert ", t.expert));
      }
      if (g.before[dst] != t.replaced) {
        return invalid_argument_error(str_cat(where(), ": the destination holds expert ", g.before[dst],
                                              " at the start of the round, but the transfer says it replaces ",
                                              t.replaced));
      }
      int32_t& w = written[static_cast<size_t>(t.layer)][dst];
      if (w == static_cast<int32_t>(k) + 1) {
        return invalid_argument_error(str_cat(where(), ": the destination is written twice in this round"));
      }
      w = static_cast<int32_t>(k) + 1;
      ++sends[static_cast<size_t>(t.src_rank)];
      ++receives[static_cast<size_t>(t.dst_rank)];
      receive_bytes[static_cast<size_t>(t.dst_rank)] += t.bytes;
      if (!layer_in_round[static_cast<size_t>(t.layer)]) {
        layer_in_round[static_cast<size_t>(t.layer)] = 1;
        ++layers;
      }
      round_bytes += t.bytes;
    }
    if (plan.layers_per_commit > 0 && layers > plan.layers_per_commit) {
      return invalid_argument_error(str_cat("verify_migration: round ", k, " touches ", layers,
                                            " layers (layers_per_commit ", plan.layers_per_commit, ")"));
    }
    // Writes, at the end of the round.
    for (const Transfer& t : round.transfers) {
      LayerGrid& g = grids[static_cast<size_t>(t.layer)];
      const size_t dst =
          static_cast<size_t>(t.dst_rank) * static_cast<size_t>(g.width) + static_cast<size_t>(t.dst_slot);
      if (t.replaced != kEmptySlot) --count[key(t.layer, t.replaced, num_experts)];
      ++count[key(t.layer, t.expert, num_experts)];
      g.before[dst] = t.expert;
    }
    for (const Transfer& t : round.transfers) {
      if (t.replaced == kEmptySlot) continue;
      const size_t kk = key(t.layer, t.replaced, num_experts);
      if (must_keep[kk] && count[kk] == 0) {
        return invalid_argument_error(str_cat(
            "verify_migration: after round ", k, ", layer ", t.layer, ", expert ", t.replaced,
            " has no replica whose weights are in place (rank ", t.dst_rank, " slot ", t.dst_slot,
            " held a copy and was overwritten by expert ", t.expert, " in that round, and no copy was written)"));
      }
    }
    const int32_t max_sends = *std::max_element(sends.begin(), sends.end());
    const int32_t max_receives = *std::max_element(receives.begin(), receives.end());
    if (plan.max_per_round > 0 && !round.over_limit && std::max(max_sends, max_receives) > plan.max_per_round) {
      const auto busiest_send = std::max_element(sends.begin(), sends.end()) - sends.begin();
      const auto busiest_recv = std::max_element(receives.begin(), receives.end()) - receives.begin();
      return invalid_argument_error(str_cat("verify_migration: round ", k, " is not marked over_limit but rank ",
                                            max_sends >= max_receives ? busiest_send : busiest_recv, " ",
                                            max_sends >= max_receives ? "sends " : "receives ",
                                            std::max(max_sends, max_receives), " experts (max_per_round ",
                                            plan.max_per_round, ")"));
    }
    const auto busiest_bytes = std::max_element(receive_bytes.begin(), receive_bytes.end());
    if (plan.staging_bytes_per_rank > 0 && !round.over_limit && *busiest_bytes > plan.staging_bytes_per_rank) {
      return invalid_argument_error(str_cat("verify_migration: round ", k, " is not marked over_limit but rank ",
                                            busiest_bytes - receive_bytes.begin(), " receives ", *busiest_bytes,
                                            " bytes (staging_bytes_per_rank ", plan.staging_bytes_per_rank, ")"));
    }
    if (*busiest_bytes != round.max_receive_bytes) {
      return invalid_argument_error(str_cat("verify_migration: round ", k, " says max_receive_bytes ",
                                            round.max_receive_bytes, " but rank ", busiest_bytes - receive_bytes.begin(),
                                            " receives ", *busiest_bytes, " bytes"));
    }
    if (round_bytes != round.bytes) {
      return invalid_argument_error(str_cat("verify_migration: round ", k, " says ", round.bytes,
                                            " bytes but its transfers sum to ", round_bytes));
    }
    num_transfers += static_cast<int64_t>(round.transfers.size());
    total_bytes += round_bytes;
  }

  for (size_t i = 0; i < plan.releases.size(); ++i) {
    const SlotRelease& rel = plan.releases[i];
    auto where = [&] {
      return str_cat("verify_migration: release ", i, " (layer ", rel.layer, ", rank ", rel.rank, ", slot ", rel.slot,
                     ", expert ", rel.expert, ")");
    };
    if (rel.layer < 0 || rel.layer >= num_layers || rel.rank < 0 || rel.rank >= num_ranks || rel.slot < 0 ||
        rel.slot >= grids[static_cast<size_t>(rel.layer)].width) {
      return invalid_argument_error(str_cat(where(), ": out of range"));
    }
    LayerGrid& g = grids[static_cast<size_t>(rel.layer)];
    const size_t at = static_cast<size_t>(rel.rank) * static_cast<size_t>(g.width) + static_cast<size_t>(rel.slot);
    if (g.before[at] != rel.expert || rel.expert == kEmptySlot) {
      return invalid_argument_error(
          str_cat(where(), ": the slot holds expert ", g.before[at], " after the last round"));
    }
    if (g.after[at] != kEmptySlot) {
      return invalid_argument_error(str_cat(where(), ": the next placement puts expert ", g.after[at],
                                            " there, so it must be written, not released"));
    }
    g.before[at] = kEmptySlot;
  }

  for (LayerId l = 0; l < num_layers; ++l) {
    const LayerGrid& g = grids[static_cast<size_t>(l)];
    for (size_t i = 0; i < g.before.size(); ++i) {
      if (g.before[i] != g.after[i]) {
        return invalid_argument_error(str_cat("verify_migration: after the last round and the releases, layer ", l,
                                              ", rank ", static_cast<int32_t>(i) / g.width, " slot ",
                                              static_cast<int32_t>(i) % g.width, " holds expert ", g.before[i],
                                              " but the next placement has ", g.after[i], " (-1 = empty)"));
      }
    }
  }
  if (num_transfers != plan.num_transfers || total_bytes != plan.total_bytes) {
    return invalid_argument_error(str_cat("verify_migration: the plan says ", plan.num_transfers, " transfers and ",
                                          plan.total_bytes, " bytes, its rounds hold ", num_transfers, " and ",
                                          total_bytes));
  }
  return ok_status();
}

StatusOr<Placement> placement_after_round(const Placement& current, const MigrationPlan& plan, const Placement& next,
                                          int32_t rounds_applied) {
  if (rounds_applied < 0 || rounds_applied > plan.num_rounds()) {
    return invalid_argument_error(
        str_cat("placement_after_round: rounds_applied must be in [0, ", plan.num_rounds(), "], got ", rounds_applied));
  }
  OMNI_RETURN_IF_ERROR(verify_migration(current, plan, next));
  PlacementLayout layout;
  layout.num_ranks = current.num_ranks();
  layout.num_experts = current.num_experts();
  for (LayerId l = 0; l < current.num_layers(); ++l) {
    LayerGrid g = make_grid(current, next, l);
    layout.slots_per_rank.push_back(g.width);
    layout.phy2log.push_back(std::move(g.before));
  }
  for (int32_t k = 0; k < rounds_applied; ++k) {
    for (const Transfer& t : plan.rounds[static_cast<size_t>(k)].transfers) {
      const int32_t w = layout.slots_per_rank[static_cast<size_t>(t.layer)];
      layout.phy2log[static_cast<size_t>(t.layer)][static_cast<size_t>(t.dst_rank * w + t.dst_slot)] = t.expert;
    }
  }
  ValidationRules rules;
  rules.require_every_expert = false;
  return Placement::create(std::move(layout), rules);
}

}  // namespace omni

namespace omni {

StatusOr<Placement> routing_after_round(const Placement& current, const MigrationPlan& plan, const Placement& next,
                                        int32_t rounds_applied) {
  OMNI_ASSIGN_OR_RETURN(Placement slots, placement_after_round(current, plan, next, rounds_applied));
  const int32_t num_layers = current.num_layers();
  // Rounds holding each layer's first and last transfer (-1: none).
  std::vector<int32_t> first(static_cast<size_t>(num_layers), -1), last(static_cast<size_t>(num_layers), -1);
  for (int32_t k = 0; k < plan.num_rounds(); ++k)
    for (const Transfer& t : plan.rounds[static_cast<size_t>(k)].transfers) {
      auto& f = first[static_cast<size_t>(t.layer)];
      if (f < 0) f = k;
      last[static_cast<size_t>(t.layer)] = k;
    }
  std::vector<LayerId> complete, partial;
  for (LayerId l = 0; l < num_layers; ++l) {
    const int32_t f = first[static_cast<size_t>(l)], z = last[static_cast<size_t>(l)];
    if (z < 0 ? rounds_applied >= 1 : z < rounds_applied) complete.push_back(l);
    else if (f >= 0 && f < rounds_applied) partial.push_back(l);
  }
  OMNI_ASSIGN_OR_RETURN(Placement out, compose_layers(current, next, complete));
  if (partial.empty()) return out;
  PlacementLayout layout = out.layout();
  for (LayerId l : partial) {
    const auto row = slots.phy2log(l);
    const int32_t width = slots.slots_per_rank(l);
    layout.slots_per_rank[static_cast<size_t>(l)] = width;
    layout.phy2log[static_cast<size_t>(l)].assign(row.begin(), row.end());
    if (layout.shares.empty()) continue;
    // Each slot keeps its share in the placement whose expert it holds (a
    // written slot holds next's expert, an untouched one current's).
    std::vector<double> sh(row.size(), 0.0);
    for (size_t i = 0; i < row.size(); ++i) {
      if (row[i] == kEmptySlot) continue;
      const RankId r = static_cast<RankId>(i) / width;
      const SlotId s = static_cast<SlotId>(i) % width;
      if (s < next.slots_per_rank(l) && next.expert_at(l, r, s) == row[i]) {
        sh[i] = next.share_of(l, next.global_slot(l, r, s));
      } else if (s < current.slots_per_rank(l) && current.expert_at(l, r, s) == row[i]) {
        sh[i] = current.share_of(l, current.global_slot(l, r, s));
      }
    }
    renormalise_shares(row, sh, current.num_experts());
    layout.shares[static_cast<size_t>(l)] = std::move(sh);
  }
  return Placement::create(std::move(layout), lost_experts_allowed());
}

}  // namespace omni
