#include "batch_refine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "omniplacement/core/mix64.h"
#include "omniplacement/dispatch/batch_balancer.h"

namespace omni::detail {

namespace {

// Scores placements of one layer under the per-batch split: the runtime's
// water-fill (BatchBalancer, dispatch/batch_balancer.h) in doubles. The
// balancer's buffers are reused between calls (no allocation per score once
// warm).
class SplitScorer {
 public:
  SplitScorer(int32_t R, int32_t S, int32_t E, const std::vector<std::vector<double>>& samples)
      : S_(S), samples_(samples), balancer_(*BatchBalancer<double>::create(R, E)) {
    for (const auto& x : samples_) mean_.push_back(std::accumulate(x.begin(), x.end(), 0.0) / R);
  }

  // Mean over samples of max/mean; returns +inf as soon as the mean cannot
  // stay below `stop_above` (each remaining term is >= 1).
  double score(std::span<const ExpertId> p, double stop_above = std::numeric_limits<double>::infinity()) {
    const Status placed = balancer_.set_slots(p, S_);
    OMNI_CHECK_MSG(placed.ok(), placed.to_string());
    const double K = static_cast<double>(samples_.size());
    double sum = 0;
    for (size_t k = 0; k < samples_.size(); ++k) {
      sum += mean_[k] > 0 ? max_load(samples_[k]) / mean_[k] : 1.0;
      if (sum + (K - static_cast<double>(k + 1)) >= stop_above * K) return std::numeric_limits<double>::infinity();
    }
    return sum / K;
  }

 private:
  double max_load(const std::vector<double>& total) {
    const Status split = balancer_.balance(total);
    OMNI_CHECK_MSG(split.ok(), split.to_string());
    const auto load = balancer_.rank_loads();
    return *std::max_element(load.begin(), load.end());
  }

  const int32_t S_;
  const std::vector<std::vector<double>>& samples_;
  std::vector<double> mean_;
  BatchBalancer<double> balancer_;
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
  for (size_t i = cand.size(); i > 1; --i) std::swap(cand[i - 1], cand[splitmix64_next(state) % i]);

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
