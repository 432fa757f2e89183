// Expert-to-host assignment for omni's locality options (see host_sets.h).
#include "host_sets.h"

#include <algorithm>
#include <numeric>

namespace omni::detail {

// Expert groups onto hosts: largest group first to the lightest host with
// room (G / H groups each), then pairwise swaps while the heaviest host drops.
HostSets group_hosts(std::span<const double> w, int32_t num_groups, int32_t num_hosts) {
  const int32_t E = static_cast<int32_t>(w.size());
  const int32_t gs = E / num_groups, per_host = num_groups / num_hosts;
  std::vector<double> gl(static_cast<size_t>(num_groups), 0.0);
  for (int32_t g = 0; g < num_groups; ++g)
    for (int32_t k = 0; k < gs; ++k) gl[static_cast<size_t>(g)] += w[static_cast<size_t>(g * gs + k)];
  std::vector<int32_t> order(static_cast<size_t>(num_groups));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return gl[static_cast<size_t>(a)] > gl[static_cast<size_t>(b)]; });
  std::vector<int32_t> host_of(static_cast<size_t>(num_groups));
  std::vector<double> hl(static_cast<size_t>(num_hosts), 0.0);
  std::vector<int32_t> items(static_cast<size_t>(num_hosts), 0);
  for (int32_t g : order) {
    int32_t best = -1;
    for (int32_t h = 0; h < num_hosts; ++h)
      if (items[static_cast<size_t>(h)] < per_host && (best < 0 || hl[static_cast<size_t>(h)] < hl[static_cast<size_t>(best)])) best = h;
    host_of[static_cast<size_t>(g)] = best;
    hl[static_cast<size_t>(best)] += gl[static_cast<size_t>(g)];
    ++items[static_cast<size_t>(best)];
  }
  for (int it = 0; it < 1000; ++it) {
    const int32_t hmax = static_cast<int32_t>(std::max_element(hl.begin(), hl.end()) - hl.begin());
    double best = hl[static_cast<size_t>(hmax)] * (1 - 1e-12);
    int32_t ba = -1, bb = -1;
    for (int32_t a = 0; a < num_groups; ++a) {
      if (host_of[static_cast<size_t>(a)] != hmax) continue;
      for (int32_t b = 0; b < num_groups; ++b) {
        const int32_t hb = host_of[static_cast<size_t>(b)];
        if (hb == hmax) continue;
        const double d = gl[static_cast<size_t>(a)] - gl[static_cast<size_t>(b)];
        if (d <= 0) continue;
        const double nm = std::max(hl[static_cast<size_t>(hmax)] - d, hl[static_cast<size_t>(hb)] + d);
        if (nm < best) { best = nm; ba = a; bb = b; }
      }
    }
    if (ba < 0) break;
    const int32_t hb = host_of[static_cast<size_t>(bb)];
    const double d = gl[static_cast<size_t>(ba)] - gl[static_cast<size_t>(bb)];
    hl[static_cast<size_t>(hmax)] -= d;
    hl[static_cast<size_t>(hb)] += d;
    host_of[static_cast<size_t>(ba)] = hb;
    host_of[static_cast<size_t>(bb)] = hmax;
  }
  HostSets sets(static_cast<size_t>(num_hosts));
  for (int32_t g = 0; g < num_groups; ++g)
    for (int32_t k = 0; k < gs; ++k) sets[static_cast<size_t>(host_of[static_cast<size_t>(g)])].push_back(g * gs + k);
  return sets;
}

// Experts onto hosts by co-activation. Raw pair counts grow with both experts'
// popularity (a hot expert is co-chosen with everything), so the affinity of
// a pair is its lift over independence: coact(a, b) - c_a c_b / C, where c_a
// is a's row sum and C the total. Heaviest expert first, each goes to the host
// (with room for E / H experts and load below (1 + slack) x W / H where
// possible) with the largest affinity to the experts already there, ties to
// the lightest host; then pairwise swaps between hosts while one raises the
// total affinity inside hosts without taking a host above that load cap
// (or above the heaviest host's load, when that is already above it).
HostSets coactivation_hosts(std::span<const double> w, const double* coact, int32_t num_hosts, double slack) {
  const int32_t E = static_cast<int32_t>(w.size());
  const size_t En = static_cast<size_t>(E), Hn = static_cast<size_t>(num_hosts);
  const int32_t per_host = E / num_hosts;
  double total = 0;
  for (double v : w) total += v;
  const double soft_cap = (1 + slack) * total / num_hosts;
  std::vector<double> row(En, 0.0);
  double all = 0;
  for (size_t a = 0; a < En; ++a) {
    for (size_t b = 0; b < En; ++b) row[a] += coact[a * En + b];
    all += row[a];
  }
  std::vector<double> lift(En * En, 0.0);
  for (size_t a = 0; a < En; ++a)
    for (size_t b = 0; b < En; ++b)
      if (a != b) lift[a * En + b] = coact[a * En + b] - (all > 0 ? row[a] * row[b] / all : 0.0);
  std::vector<int32_t> order(En);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return w[static_cast<size_t>(a)] > w[static_cast<size_t>(b)]; });
  std::vector<int32_t> host_of(En, -1), size(Hn, 0);
  std::vector<double> hl(Hn, 0.0);
  std::vector<double> aff(En * Hn, 0.0);  // aff[e * H + h]: lift of e to the experts on host h
  auto add_to = [&](int32_t e, int32_t h, double sign) {
    for (size_t f = 0; f < En; ++f) aff[f * Hn + static_cast<size_t>(h)] += sign * lift[f * En + static_cast<size_t>(e)];
    hl[static_cast<size_t>(h)] += sign * w[static_cast<size_t>(e)];
    size[static_cast<size_t>(h)] += sign > 0 ? 1 : -1;
  };
  for (int32_t e : order) {
    int32_t best = -1;
    bool best_fits = false;
    for (int32_t h = 0; h < num_hosts; ++h) {
      if (size[static_cast<size_t>(h)] >= per_host) continue;
      const bool fits = hl[static_cast<size_t>(h)] + w[static_cast<size_t>(e)] <= soft_cap;
      const double a = aff[static_cast<size_t>(e) * Hn + static_cast<size_t>(h)];
      const double ab = best < 0 ? 0 : aff[static_cast<size_t>(e) * Hn + static_cast<size_t>(best)];
      if (best < 0 || (fits && !best_fits) ||
          (fits == best_fits && (a > ab || (a == ab && hl[static_cast<size_t>(h)] < hl[static_cast<size_t>(best)])))) {
        best = h;
        best_fits = fits;
      }
    }
    host_of[static_cast<size_t>(e)] = best;
    add_to(e, best, +1);
  }
  // Swap refinement: the best swap of a pass, repeated while it gains.
  for (int pass = 0; pass < 4 * E; ++pass) {
    const double cap = std::max(soft_cap, *std::max_element(hl.begin(), hl.end()));
    double best_gain = 1e-9 * (all > 0 ? all : 1.0);
    int32_t ba = -1, bb = -1;
    for (int32_t a = 0; a < E; ++a) {
      const int32_t ha = host_of[static_cast<size_t>(a)];
      for (int32_t b = a + 1; b < E; ++b) {
        const int32_t hb = host_of[static_cast<size_t>(b)];
        if (ha == hb) continue;
        const double gain = aff[static_cast<size_t>(a) * Hn + static_cast<size_t>(hb)] -
                            aff[static_cast<size_t>(a) * Hn + static_cast<size_t>(ha)] +
                            aff[static_cast<size_t>(b) * Hn + static_cast<size_t>(ha)] -
                            aff[static_cast<size_t>(b) * Hn + static_cast<size_t>(hb)] -
                            2 * lift[static_cast<size_t>(a) * En + static_cast<size_t>(b)];
        if (gain <= best_gain) continue;
        const double d = w[static_cast<size_t>(b)] - w[static_cast<size_t>(a)];
        if (hl[static_cast<size_t>(ha)] + d > cap || hl[static_cast<size_t>(hb)] - d > cap) continue;
        best_gain = gain;
        ba = a;
        bb = b;
      }
    }
    if (ba < 0) break;
    const int32_t ha = host_of[static_cast<size_t>(ba)], hb = host_of[static_cast<size_t>(bb)];
    add_to(ba, ha, -1);
    add_to(bb, hb, -1);
    add_to(ba, hb, +1);
    add_to(bb, ha, +1);
    host_of[static_cast<size_t>(ba)] = hb;
    host_of[static_cast<size_t>(bb)] = ha;
  }
  HostSets sets(Hn);
  for (int32_t e = 0; e < E; ++e) sets[static_cast<size_t>(host_of[static_cast<size_t>(e)])].push_back(e);
  return sets;
}

// Every expert with two or more replicas in `phy2log` ([R * S]) sits on at
// least two hosts (host[r] = host of rank r), where there are two hosts.
bool spread_over_hosts(const std::vector<ExpertId>& phy2log, const std::vector<int32_t>& host, int32_t S) {
  if (*std::max_element(host.begin(), host.end()) == 0) return true;
  int32_t E = 0;
  for (ExpertId e : phy2log) E = std::max(E, e + 1);
  std::vector<int32_t> first(static_cast<size_t>(E), -1);
  std::vector<char> count(static_cast<size_t>(E), 0), two_hosts(static_cast<size_t>(E), 0);
  for (size_t g = 0; g < phy2log.size(); ++g) {
    const ExpertId e = phy2log[g];
    if (e < 0) continue;
    const int32_t h = host[g / static_cast<size_t>(S)];
    auto& f = first[static_cast<size_t>(e)];
    if (f < 0) f = h;
    else if (f != h) two_hosts[static_cast<size_t>(e)] = 1;
    count[static_cast<size_t>(e)] = static_cast<char>(std::min(2, count[static_cast<size_t>(e)] + 1));
  }
  for (int32_t e = 0; e < E; ++e)
    if (count[static_cast<size_t>(e)] >= 2 && !two_hosts[static_cast<size_t>(e)]) return false;
  return true;
}

// Incremental: local search from the layer's current slots under the move

}  // namespace omni::detail
