#include "batch_refine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/mix64.h"

namespace omni::detail {

namespace {

// Scores placements of one layer under the per-batch split; buffers are
// reused between calls (no allocation per score once warm).
class SplitScorer {
 public:
  SplitScorer(int32_t R, int32_t S, int32_t E, const std::vector<std::vector<double>>& samples)
      : R_(R), S_(S), E_(E), samples_(samples), num_ranks_of_(static_cast<size_t>(E)),
        ranks_of_(static_cast<size_t>(E) * static_cast<size_t>(R)), amount_(ranks_of_.size()),
        load_(static_cast<size_t>(R)), order_(static_cast<size_t>(R)) {
    for (const auto& x : samples_) mean_.push_back(std::accumulate(x.begin(), x.end(), 0.0) / R);
  }

  // Mean over samples of max/mean; returns +inf as soon as the mean cannot
  // stay below `stop_above` (each remaining term is >= 1).
  double score(std::span<const ExpertId> p, double stop_above = std::numeric_limits<double>::infinity()) {
    build(p);
    const double K = static_cast<double>(samples_.size());
    double sum = 0;
    for (size_t k = 0; k < samples_.size(); ++k) {
      sum += mean_[k] > 0 ? max_load(samples_[k]) / mean_[k] : 1.0;
      if (sum + (K - static_cast<double>(k + 1)) >= stop_above * K) return std::numeric_limits<double>::infinity();
    }
    return sum / K;
  }

 private:
  void build(std::span<const ExpertId> p) {
    std::fill(num_ranks_of_.begin(), num_ranks_of_.end(), 0);
    for (size_t g = 0; g < p.size(); ++g) {
      const ExpertId e = p[g];
      if (e < 0) continue;
      const auto r = static_cast<RankId>(g / static_cast<size_t>(S_));
      int32_t& n = num_ranks_of_[static_cast<size_t>(e)];
      RankId* list = &ranks_of_[static_cast<size_t>(e) * static_cast<size_t>(R_)];
      if (n == 0 || list[n - 1] != r) list[n++] = r;  // slots ascend, so ranks do
    }
    flexible_.clear();
    for (ExpertId e = 0; e < E_; ++e)
      if (num_ranks_of_[static_cast<size_t>(e)] > 1) flexible_.push_back(e);
  }

  // Water-fills `total` of expert e over its ranks (least loaded first).
  void fill(ExpertId e, double total) {
    const int32_t n = num_ranks_of_[static_cast<size_t>(e)];
    const RankId* list = &ranks_of_[static_cast<size_t>(e) * static_cast<size_t>(R_)];
    double* a = &amount_[static_cast<size_t>(e) * static_cast<size_t>(R_)];
    std::iota(order_.begin(), order_.begin() + n, 0);
    std::stable_sort(order_.begin(), order_.begin() + n, [&](int32_t x, int32_t y) {
      return load_[static_cast<size_t>(list[x])] < load_[static_cast<size_t>(list[y])];
    });
    double acc = total, level = 0;
    int32_t used = 0;
    for (int32_t i = 0; i < n; ++i) {
      acc += load_[static_cast<size_t>(list[order_[static_cast<size_t>(i)]])];
      level = acc / (i + 1);
      used = i + 1;
      if (i + 1 == n || level <= load_[static_cast<size_t>(list[order_[static_cast<size_t>(i) + 1]])]) break;
    }
    for (int32_t k = 0; k < n; ++k) a[k] = 0;
    for (int32_t i = 0; i < used; ++i) {
      const int32_t k = order_[static_cast<size_t>(i)];
      a[k] = std::max(0.0, level - load_[static_cast<size_t>(list[k])]);
      load_[static_cast<size_t>(list[k])] += a[k];
    }
  }

  double max_load(const std::vector<double>& total) {
    std::fill(load_.begin(), load_.end(), 0.0);
    for (ExpertId e = 0; e < E_; ++e)
      if (num_ranks_of_[static_cast<size_t>(e)] == 1)
        load_[static_cast<size_t>(ranks_of_[static_cast<size_t>(e) * static_cast<size_t>(R_)])] +=
            total[static_cast<size_t>(e)];
    std::stable_sort(flexible_.begin(), flexible_.end(), [&](ExpertId a, ExpertId b) {
      return total[static_cast<size_t>(a)] > total[static_cast<size_t>(b)];
    });
    for (ExpertId e : flexible_) fill(e, total[static_cast<size_t>(e)]);
    for (int pass = 0; pass < 8; ++pass) {
      bool changed = false;
      for (ExpertId e : flexible_) {
        const int32_t n = num_ranks_of_[static_cast<size_t>(e)];
        const RankId* list = &ranks_of_[static_cast<size_t>(e) * static_cast<size_t>(R_)];
        double* a = &amount_[static_cast<size_t>(e) * static_cast<size_t>(R_)];
        for (int32_t k = 0; k < n; ++k) {
          old_[static_cast<size_t>(k)] = a[k];
          load_[static_cast<size_t>(list[k])] -= a[k];
        }
        fill(e, total[static_cast<size_t>(e)]);
        const double tol = 1e-9 * (1.0 + total[static_cast<size_t>(e)]);
        for (int32_t k = 0; k < n; ++k) changed |= std::abs(old_[static_cast<size_t>(k)] - a[k]) > tol;
      }
      if (!changed) break;
    }
    // Ids were re-sorted by this sample's loads; restore id order so that the
    // next sample's stable sort breaks ties by id, as the runtime does.
    std::sort(flexible_.begin(), flexible_.end());
    return *std::max_element(load_.begin(), load_.end());
  }

  const int32_t R_, S_, E_;
  const std::vector<std::vector<double>>& samples_;
  std::vector<double> mean_;
  std::vector<int32_t> num_ranks_of_;
  std::vector<RankId> ranks_of_;
  std::vector<double> amount_;
  std::vector<double> load_;
  std::vector<int32_t> order_;
  std::vector<ExpertId> flexible_;
  std::vector<double> old_ = std::vector<double>(static_cast<size_t>(R_));
};

}  // namespace

double batch_split_score(std::span<const ExpertId> phy2log, const std::vector<std::vector<double>>& samples,
                         int32_t num_ranks, int32_t slots_per_rank) {
  if (samples.empty()) return 1.0;
  SplitScorer scorer(num_ranks, slots_per_rank, static_cast<int32_t>(samples.front().size()), samples);
  return scorer.score(phy2log);
}

BatchRefineResult refine_for_batch_split(std::span<const ExpertId> plan, std::span<const ExpertId> current,
                                         const std::vector<std::vector<double>>& samples,
                                         const BatchRefineOptions& opt,
                                         const std::chrono::steady_clock::time_point* deadline) {
  const int32_t R = opt.num_ranks, S = opt.slots_per_rank;
  const auto E = static_cast<int32_t>(samples.front().size());
  const size_t G = static_cast<size_t>(R) * static_cast<size_t>(S);
  const int32_t cap = opt.max_replicas_per_expert;
  BatchRefineResult out;
  const bool has_current = !current.empty();
  auto arrives = [&](size_t g, ExpertId e) { return has_current && e >= 0 && e != current[g] ? 1 : 0; };
  SplitScorer scorer(R, S, E, samples);
  // The better start with move costs: the plan, or the placement in force (no moves).
  std::span<const ExpertId> start = plan;
  if (has_current) {
    int64_t arrivals = 0;
    for (size_t g = 0; g < G; ++g) arrivals += arrives(g, plan[g]);
    if (scorer.score(current) <= scorer.score(plan) + opt.move_cost * static_cast<double>(arrivals)) start = current;
  }
  out.phy2log.assign(start.begin(), start.end());
  std::vector<ExpertId>& p = out.phy2log;

  // Replica counts, replicas per (rank, expert), and moved slots per rank.
  std::vector<int32_t> count(static_cast<size_t>(E), 0);
  std::vector<int32_t> on_rank(static_cast<size_t>(R) * static_cast<size_t>(E), 0);
  std::vector<int32_t> moved(static_cast<size_t>(R), 0);
  for (size_t g = 0; g < G; ++g) {
    if (p[g] < 0) continue;
    ++count[static_cast<size_t>(p[g])];
    ++on_rank[(g / static_cast<size_t>(S)) * static_cast<size_t>(E) + static_cast<size_t>(p[g])];
    moved[g / static_cast<size_t>(S)] += arrives(g, p[g]);
  }
  int64_t total_moved = std::accumulate(moved.begin(), moved.end(), int64_t{0});

  out.score = scorer.score(p);
  out.evals = 1;
  double best = out.score + opt.move_cost * static_cast<double>(total_moved);

  // Candidates: (g, h) with h >= 0 swaps slots g and h; h < 0 puts expert -h - 1 into g.
  std::vector<std::pair<int32_t, int32_t>> cand;
  for (size_t g = 0; g < G; ++g)
    for (size_t h = g + 1; h < G; ++h)
      if (g / static_cast<size_t>(S) != h / static_cast<size_t>(S))
        cand.emplace_back(static_cast<int32_t>(g), static_cast<int32_t>(h));
  for (size_t g = 0; g < G; ++g)
    for (ExpertId e = 0; e < E; ++e) cand.emplace_back(static_cast<int32_t>(g), -e - 1);
  uint64_t state = opt.seed;
  for (size_t i = cand.size(); i > 1; --i) std::swap(cand[i - 1], cand[internal::splitmix64_next(state) % i]);

  auto rank_of = [&](int32_t g) { return static_cast<size_t>(g / S); };
  auto has = [&](size_t r, ExpertId e) { return on_rank[r * static_cast<size_t>(E) + static_cast<size_t>(e)] > 0; };
  auto set_slot = [&](int32_t g, ExpertId e) {
    const size_t r = rank_of(g);
    const ExpertId old = p[static_cast<size_t>(g)];
    if (old >= 0) {
      --count[static_cast<size_t>(old)];
      --on_rank[r * static_cast<size_t>(E) + static_cast<size_t>(old)];
    }
    const int32_t d = arrives(static_cast<size_t>(g), e) - arrives(static_cast<size_t>(g), old);
    moved[r] += d;
    total_moved += d;
    p[static_cast<size_t>(g)] = e;
    if (e >= 0) {
      ++count[static_cast<size_t>(e)];
      ++on_rank[r * static_cast<size_t>(E) + static_cast<size_t>(e)];
    }
  };
  auto within_cap = [&](size_t r) { return opt.max_moves_per_rank < 0 || moved[r] <= opt.max_moves_per_rank; };
  // Scores the placement as it now stands; keeps it (true) when it beats the
  // best so far, move costs included.
  auto improves = [&] {
    const double cost = opt.move_cost * static_cast<double>(total_moved);
    const double s = scorer.score(p, best - cost);
    ++out.evals;
    if (!(s + cost < best - 1e-9)) return false;
    best = s + cost;
    out.score = s;
    ++out.moves;
    return true;
  };

  size_t since_improvement = 0;
  for (size_t i = 0; since_improvement < cand.size(); i = (i + 1) % cand.size(), ++since_improvement) {
    if (opt.max_evals > 0 && out.evals >= opt.max_evals) {
      out.budget_hit = true;
      break;
    }
    if (deadline != nullptr && (out.evals & 63) == 0 && std::chrono::steady_clock::now() >= *deadline) {
      out.budget_hit = true;
      break;
    }
    const auto [g, h] = cand[i];
    const ExpertId a = p[static_cast<size_t>(g)];
    const size_t ra = rank_of(g);
    if (h >= 0) {
      const ExpertId b = p[static_cast<size_t>(h)];
      const size_t rb = rank_of(h);
      if (a == b || (a >= 0 && has(rb, a)) || (b >= 0 && has(ra, b))) continue;
      set_slot(g, b);
      set_slot(h, a);
      if (within_cap(ra) && within_cap(rb) && improves()) {
        since_improvement = 0;
        continue;
      }
      set_slot(g, a);
      set_slot(h, b);
    } else {
      const ExpertId e = -h - 1;
      if (e == a || (a >= 0 && count[static_cast<size_t>(a)] < 2) || count[static_cast<size_t>(e)] >= cap ||
          has(ra, e))
        continue;
      set_slot(g, e);
      if (within_cap(ra) && improves()) {
        since_improvement = 0;
        continue;
      }
      set_slot(g, a);
    }
  }
  return out;
}

}  // namespace omni::detail
