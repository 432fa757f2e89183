// DeepSeek EPLB in C++. Every arithmetic step is float32 and every ordering
// decision follows the reference (stable descending sort, first index on
// ties), because a single differently rounded comparison changes the plan.
#include "omniplacement/planner/eplb.h"

#include <algorithm>
#include <numeric>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/str_cat.h"

namespace omni {
namespace {

// balanced_packing of the reference: items in stable descending weight order,
// each to the lightest pack (first on ties) that still has room; every pack
// gets exactly n / num_packs items. With one item per pack the reference skips
// the greedy step and puts item i in pack i, which is reproduced.
void balanced_packing(const std::vector<float>& weight, int32_t num_packs, std::vector<int32_t>& pack_index,
                      std::vector<int32_t>& rank_in_pack) {
  const int32_t n = static_cast<int32_t>(weight.size());
  const int32_t per_pack = n / num_packs;
  pack_index.assign(static_cast<size_t>(n), 0);
  rank_in_pack.assign(static_cast<size_t>(n), 0);
  if (per_pack == 1) {
    std::iota(pack_index.begin(), pack_index.end(), 0);
    return;
  }
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return weight[static_cast<size_t>(a)] > weight[static_cast<size_t>(b)]; });
  std::vector<float> pack_weight(static_cast<size_t>(num_packs), 0.0f);
  std::vector<int32_t> pack_items(static_cast<size_t>(num_packs), 0);
  for (int32_t item : order) {
    int32_t best = -1;
    for (int32_t p = 0; p < num_packs; ++p) {
      if (pack_items[static_cast<size_t>(p)] >= per_pack) continue;
      if (best < 0 || pack_weight[static_cast<size_t>(p)] < pack_weight[static_cast<size_t>(best)]) best = p;
    }
    OMNI_CHECK(best >= 0);
    pack_index[static_cast<size_t>(item)] = best;
    rank_in_pack[static_cast<size_t>(item)] = pack_items[static_cast<size_t>(best)]++;
    pack_weight[static_cast<size_t>(best)] += weight[static_cast<size_t>(item)];
  }
}

// replicate_experts of the reference for one row: slot i < num_log holds
// expert i; each further slot goes to the expert with the largest
// weight / count (float32, first index on ties).
void replicate_experts(const float* weight, int32_t num_log, int32_t num_phy, std::vector<int32_t>& phy2log,
                       std::vector<int32_t>& rank, std::vector<int32_t>& logcnt) {
  phy2log.resize(static_cast<size_t>(num_phy));
  rank.assign(static_cast<size_t>(num_phy), 0);
  logcnt.assign(static_cast<size_t>(num_log), 1);
  std::iota(phy2log.begin(), phy2log.begin() + num_log, 0);
  for (int32_t i = num_log; i < num_phy; ++i) {
    int32_t best = 0;
    float best_value = weight[0] / static_cast<float>(logcnt[0]);
    for (int32_t e = 1; e < num_log; ++e) {
      const float v = weight[e] / static_cast<float>(logcnt[static_cast<size_t>(e)]);
      if (v > best_value) {
        best_value = v;
        best = e;
      }
    }
    phy2log[static_cast<size_t>(i)] = best;
    rank[static_cast<size_t>(i)] = logcnt[static_cast<size_t>(best)]++;
  }
}

Status check_positive(const char* what, int64_t v) {
  if (v < 1) return invalid_argument_error(str_cat("eplb: ", what, " must be >= 1, got ", v));
  return ok_status();
}

}  // namespace

StatusOr<EplbResult> eplb_rebalance(const LoadMatrix& weight, int32_t num_replicas, int32_t num_groups,
                                    int32_t num_nodes, int32_t num_gpus, EplbPolicy policy) {
  const int32_t L = weight.num_layers();
  const int32_t E = weight.num_experts();
  if (L < 1 || E < 1) return invalid_argument_error(str_cat("eplb: empty load matrix (", L, " x ", E, ")"));
  OMNI_RETURN_IF_ERROR(check_positive("num_replicas", num_replicas));
  OMNI_RETURN_IF_ERROR(check_positive("num_groups", num_groups));
  OMNI_RETURN_IF_ERROR(check_positive("num_nodes", num_nodes));
  OMNI_RETURN_IF_ERROR(check_positive("num_gpus", num_gpus));
  if (static_cast<int64_t>(num_replicas) * L > kMaxMatrixElements) {
    return invalid_argument_error(str_cat("eplb: ", L, " layers x ", num_replicas, " replicas exceeds the limit of ",
                                          kMaxMatrixElements, " slots"));
  }
  bool hierarchical = num_groups % num_nodes == 0;
  if (policy == EplbPolicy::kHierarchical && !hierarchical) {
    return invalid_argument_error(str_cat("eplb(hierarchical): num_groups (", num_groups,
                                          ") must be a multiple of num_nodes (", num_nodes,
                                          "); use eplb or eplb(global)"));
  }
  if (policy == EplbPolicy::kGlobal) hierarchical = false;
  const int32_t G = hierarchical ? num_groups : 1;
  const int32_t N = hierarchical ? num_nodes : 1;
  if (E % G != 0) {
    return invalid_argument_error(
        str_cat("eplb: num_experts (", E, ") must be a multiple of num_groups (", G, ")"));
  }
  if (num_gpus % N != 0) {
    return invalid_argument_error(
        str_cat("eplb: num_gpus (", num_gpus, ") must be a multiple of num_nodes (", N, ")"));
  }
  if (num_replicas % num_gpus != 0) {
    return invalid_argument_error(
        str_cat("eplb: num_replicas (", num_replicas, ") must be a multiple of num_gpus (", num_gpus, ")"));
  }
  if (num_replicas < E) {
    return invalid_argument_error(
        str_cat("eplb: num_replicas (", num_replicas, ") must be >= num_experts (", E, ")"));
  }

  const int32_t R = num_replicas;
  const int32_t group_size = E / G;
  const int32_t groups_per_node = G / N;
  const int32_t phy_per_gpu = R / num_gpus;
  const int32_t gpus_per_node = num_gpus / N;
  const int32_t log_per_node = E / N;
  const int32_t phy_per_node = R / N;

  EplbResult out;
  out.num_layers = L;
  out.num_experts = E;
  out.num_replicas = R;
  out.hierarchical = hierarchical;
  out.phy2log.resize(static_cast<size_t>(L) * static_cast<size_t>(R));
  out.phyrank.resize(out.phy2log.size());
  out.logcnt.resize(static_cast<size_t>(L) * static_cast<size_t>(E));

  std::vector<float> w(static_cast<size_t>(E));
  std::vector<float> group_tokens(static_cast<size_t>(G));
  std::vector<int32_t> group_pack, group_rank, log2mlog(static_cast<size_t>(E)), mlog2log(static_cast<size_t>(E));
  std::vector<float> mlog_tokens(static_cast<size_t>(log_per_node)), phy_tokens(static_cast<size_t>(phy_per_node));
  std::vector<int32_t> phy2mlog, phyrank, mlogcnt, pack_index, rank_in_pack;
  std::vector<int32_t> mlogcnt_all(static_cast<size_t>(E));
  std::vector<int32_t> pphy2phy(static_cast<size_t>(phy_per_node));

  for (LayerId l = 0; l < L; ++l) {
    // The reference converts the weights to float32 first (int64 counts convert directly).
    if (weight.is_counts()) {
      const auto c = weight.counts_row(l);
      for (int32_t e = 0; e < E; ++e) w[static_cast<size_t>(e)] = static_cast<float>(c[static_cast<size_t>(e)]);
    } else {
      const auto v = weight.row(l);
      for (int32_t e = 0; e < E; ++e) w[static_cast<size_t>(e)] = static_cast<float>(v[static_cast<size_t>(e)]);
    }
    // Step 1: expert groups onto nodes.
    for (int32_t g = 0; g < G; ++g) {
      float s = 0.0f;
      for (int32_t k = 0; k < group_size; ++k) s += w[static_cast<size_t>(g * group_size + k)];
      group_tokens[static_cast<size_t>(g)] = s;
    }
    balanced_packing(group_tokens, N, group_pack, group_rank);
    for (int32_t g = 0; g < G; ++g) {
      const int32_t base =
          (group_pack[static_cast<size_t>(g)] * groups_per_node + group_rank[static_cast<size_t>(g)]) * group_size;
      for (int32_t k = 0; k < group_size; ++k) log2mlog[static_cast<size_t>(g * group_size + k)] = base + k;
    }
    for (int32_t e = 0; e < E; ++e) mlog2log[static_cast<size_t>(log2mlog[static_cast<size_t>(e)])] = e;

    int32_t* phy2log_row = out.phy2log.data() + static_cast<size_t>(l) * static_cast<size_t>(R);
    int32_t* phyrank_row = out.phyrank.data() + static_cast<size_t>(l) * static_cast<size_t>(R);
    for (int32_t n = 0; n < N; ++n) {
      // Step 2: replicas within the node.
      for (int32_t j = 0; j < log_per_node; ++j) {
        mlog_tokens[static_cast<size_t>(j)] = w[static_cast<size_t>(mlog2log[static_cast<size_t>(n * log_per_node + j)])];
      }
      replicate_experts(mlog_tokens.data(), log_per_node, phy_per_node, phy2mlog, phyrank, mlogcnt);
      std::copy(mlogcnt.begin(), mlogcnt.end(), mlogcnt_all.begin() + static_cast<ptrdiff_t>(n) * log_per_node);
      // Step 3: the node's replicas onto its GPUs, each replica weighing load / count.
      for (int32_t i = 0; i < phy_per_node; ++i) {
        const int32_t m = phy2mlog[static_cast<size_t>(i)];
        phy_tokens[static_cast<size_t>(i)] =
            mlog_tokens[static_cast<size_t>(m)] / static_cast<float>(mlogcnt[static_cast<size_t>(m)]);
      }
      balanced_packing(phy_tokens, gpus_per_node, pack_index, rank_in_pack);
      for (int32_t i = 0; i < phy_per_node; ++i) {
        pphy2phy[static_cast<size_t>(pack_index[static_cast<size_t>(i)] * phy_per_gpu +
                                     rank_in_pack[static_cast<size_t>(i)])] = i;
      }
      for (int32_t p = 0; p < phy_per_node; ++p) {
        const int32_t i = pphy2phy[static_cast<size_t>(p)];
        const int32_t mlog = phy2mlog[static_cast<size_t>(i)] + n * log_per_node;
        phy2log_row[n * phy_per_node + p] = mlog2log[static_cast<size_t>(mlog)];
        phyrank_row[n * phy_per_node + p] = phyrank[static_cast<size_t>(i)];
      }
    }
    for (int32_t e = 0; e < E; ++e) {
      out.logcnt[static_cast<size_t>(l) * static_cast<size_t>(E) + static_cast<size_t>(e)] =
          mlogcnt_all[static_cast<size_t>(log2mlog[static_cast<size_t>(e)])];
    }
  }

  out.max_replicas = *std::max_element(out.logcnt.begin(), out.logcnt.end());
  const size_t M = static_cast<size_t>(out.max_replicas);
  out.log2phy.assign(static_cast<size_t>(L) * static_cast<size_t>(E) * M, -1);
  for (LayerId l = 0; l < L; ++l) {
    for (int32_t p = 0; p < R; ++p) {
      const size_t idx = static_cast<size_t>(l) * static_cast<size_t>(R) + static_cast<size_t>(p);
      out.log2phy[(static_cast<size_t>(l) * static_cast<size_t>(E) + static_cast<size_t>(out.phy2log[idx])) * M +
                  static_cast<size_t>(out.phyrank[idx])] = p;
    }
  }
  return out;
}

}  // namespace omni
