// Maximum-overlap rank matching (Hungarian method) and slot alignment.
#include "omniplacement/planner/rank_matching.h"

#include <algorithm>
#include <limits>

#include "omniplacement/core/status.h"

namespace omni {
namespace {

// Minimum-cost perfect assignment on an n x n integer cost matrix (row-major);
// returns col_of_row. The classic O(n^3) potentials method.
std::vector<int32_t> hungarian(const std::vector<int64_t>& cost, int32_t n) {
  const int64_t inf = std::numeric_limits<int64_t>::max() / 4;
  const size_t N = static_cast<size_t>(n);
  std::vector<int64_t> u(N + 1, 0), v(N + 1, 0), minv(N + 1);
  std::vector<int32_t> p(N + 1, 0), way(N + 1, 0);
  std::vector<char> used(N + 1);
  for (int32_t i = 1; i <= n; ++i) {
    p[0] = i;
    int32_t j0 = 0;
    std::fill(minv.begin(), minv.end(), inf);
    std::fill(used.begin(), used.end(), 0);
    do {
      used[static_cast<size_t>(j0)] = 1;
      const int32_t i0 = p[static_cast<size_t>(j0)];
      int64_t delta = inf;
      int32_t j1 = 0;
      for (int32_t j = 1; j <= n; ++j) {
        if (used[static_cast<size_t>(j)]) continue;
        const int64_t cur = cost[static_cast<size_t>(i0 - 1) * N + static_cast<size_t>(j - 1)] -
                            u[static_cast<size_t>(i0)] - v[static_cast<size_t>(j)];
        if (cur < minv[static_cast<size_t>(j)]) {
          minv[static_cast<size_t>(j)] = cur;
          way[static_cast<size_t>(j)] = j0;
        }
        if (minv[static_cast<size_t>(j)] < delta) {
          delta = minv[static_cast<size_t>(j)];
          j1 = j;
        }
      }
      for (int32_t j = 0; j <= n; ++j) {
        if (used[static_cast<size_t>(j)]) {
          u[static_cast<size_t>(p[static_cast<size_t>(j)])] += delta;
          v[static_cast<size_t>(j)] -= delta;
        } else {
          minv[static_cast<size_t>(j)] -= delta;
        }
      }
      j0 = j1;
    } while (p[static_cast<size_t>(j0)] != 0);
    do {
      const int32_t j1 = way[static_cast<size_t>(j0)];
      p[static_cast<size_t>(j0)] = p[static_cast<size_t>(j1)];
      j0 = j1;
    } while (j0);
  }
  std::vector<int32_t> col_of_row(N);
  for (int32_t j = 1; j <= n; ++j) col_of_row[static_cast<size_t>(p[static_cast<size_t>(j)] - 1)] = j - 1;
  return col_of_row;
}

}  // namespace

std::vector<RankId> match_ranks(std::span<const ExpertId> old_p, std::span<const ExpertId> new_p, int32_t R) {
  const size_t So = old_p.size() / static_cast<size_t>(R), Sn = new_p.size() / static_cast<size_t>(R);
  const size_t N = static_cast<size_t>(R);
  // overlap[q][r]: experts of new rank q already on old rank r.
  std::vector<int64_t> cost(N * N, 0);
  ExpertId max_e = -1;
  for (ExpertId e : old_p) max_e = std::max(max_e, e);
  for (ExpertId e : new_p) max_e = std::max(max_e, e);
  std::vector<std::vector<RankId>> old_ranks(static_cast<size_t>(max_e + 1));
  for (size_t g = 0; g < old_p.size(); ++g)
    if (old_p[g] >= 0) old_ranks[static_cast<size_t>(old_p[g])].push_back(static_cast<RankId>(g / So));
  for (size_t q = 0; q < N; ++q)
    for (size_t s = 0; s < Sn; ++s) {
      const ExpertId e = new_p[q * Sn + s];
      if (e < 0) continue;
      for (RankId r : old_ranks[static_cast<size_t>(e)]) cost[q * N + static_cast<size_t>(r)] -= 2 * static_cast<int64_t>(N);
    }
  // Ties: staying on the same rank id is slightly preferred (less than one expert of overlap).
  for (size_t q = 0; q < N; ++q) cost[q * N + q] -= 1;
  const std::vector<int32_t> col = hungarian(cost, R);
  return std::vector<RankId>(col.begin(), col.end());
}

std::vector<ExpertId> relabel_and_align(std::span<const ExpertId> old_p, std::span<const ExpertId> new_p, int32_t R,
                                        std::span<const RankId> to) {
  const size_t So = old_p.size() / static_cast<size_t>(R), Sn = new_p.size() / static_cast<size_t>(R);
  std::vector<ExpertId> out(new_p.size(), kEmptySlot);
  for (size_t q = 0; q < static_cast<size_t>(R); ++q) {
    const size_t r = static_cast<size_t>(to[q]);
    std::vector<ExpertId> items(new_p.begin() + static_cast<ptrdiff_t>(q * Sn),
                                new_p.begin() + static_cast<ptrdiff_t>((q + 1) * Sn));
    std::vector<char> taken(Sn, 0), placed(Sn, 0);
    // Experts that were already on rank r keep their old slot.
    for (size_t i = 0; i < Sn; ++i) {
      if (items[i] < 0) continue;
      for (size_t s = 0; s < std::min(So, Sn); ++s) {
        if (!taken[s] && old_p[r * So + s] == items[i]) {
          out[r * Sn + s] = items[i];
          taken[s] = placed[i] = 1;
          break;
        }
      }
    }
    // The others fill the free slots in order.
    size_t s = 0;
    for (size_t i = 0; i < Sn; ++i) {
      if (items[i] < 0 || placed[i]) continue;
      while (taken[s]) ++s;
      out[r * Sn + s] = items[i];
      taken[s] = 1;
    }
  }
  return out;
}

std::vector<int32_t> slot_changes_per_rank(std::span<const ExpertId> old_p, std::span<const ExpertId> new_p, int32_t R) {
  OMNI_CHECK(old_p.size() == new_p.size());
  const size_t S = new_p.size() / static_cast<size_t>(R);
  std::vector<int32_t> c(static_cast<size_t>(R), 0);
  for (size_t g = 0; g < new_p.size(); ++g)
    if (new_p[g] >= 0 && new_p[g] != old_p[g]) ++c[g / S];
  return c;
}

}  // namespace omni
