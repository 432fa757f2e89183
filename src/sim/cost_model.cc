#include "omniplacement/sim/cost_model.h"

#include <algorithm>
#include <cmath>

#include "omniplacement/core/metrics.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/dispatch/batch_split.h"
#include "omniplacement/planner/migration_plan.h"

namespace omni::sim {

namespace {

Status check_param(const char* name, double v) {
  if (!(std::isfinite(v) && v >= 0)) {
    return invalid_argument_error(str_cat("sim cost model: ", name, " = ", v, " must be finite and >= 0"));
  }
  return ok_status();
}

Status check_loads(const char* what, LayerId l, std::span<const double> w, int32_t num_experts) {
  if (static_cast<int64_t>(w.size()) != num_experts) {
    return invalid_argument_error(
        str_cat(what, ": layer ", l, ": ", w.size(), " expert loads, expected ", num_experts));
  }
  for (size_t e = 0; e < w.size(); ++e) {
    if (!(std::isfinite(w[e]) && w[e] >= 0)) {
      return invalid_argument_error(
          str_cat(what, ": layer ", l, ", expert ", e, ": load ", w[e], " must be finite and >= 0"));
    }
  }
  return ok_status();
}

}  // namespace

Status CostParams::validate() const {
  OMNI_RETURN_IF_ERROR(check_param("expert_bytes", expert_bytes));
  if (expert_bytes <= 0) return invalid_argument_error("sim cost model: expert_bytes must be > 0");
  OMNI_RETURN_IF_ERROR(check_param("dispatch_bytes_per_token", dispatch_bytes_per_token));
  OMNI_RETURN_IF_ERROR(check_param("combine_bytes_per_token", combine_bytes_per_token));
  OMNI_RETURN_IF_ERROR(check_param("compute_s_per_token", compute_s_per_token));
  OMNI_RETURN_IF_ERROR(check_param("compute_s_per_replica", compute_s_per_replica));
  OMNI_RETURN_IF_ERROR(check_param("layer_overhead_s", layer_overhead_s));
  OMNI_RETURN_IF_ERROR(check_param("batch_allgather_s", batch_allgather_s));
  if (dispatch != DispatchMode::kShares && dispatch != DispatchMode::kPerBatch)
    return invalid_argument_error(str_cat("sim cost model: dispatch ", static_cast<int>(dispatch),
                                          " is not kShares or kPerBatch"));
  return ok_status();
}

StatusOr<CostModel> CostModel::create(const Placement& placement, const Topology& topology,
                                      const CostParams& params) {
  OMNI_RETURN_IF_ERROR(params.validate());
  if (placement.num_layers() == 0) return invalid_argument_error("sim cost model: the placement has no layers");
  if (topology.num_ranks() != placement.num_ranks()) {
    return invalid_argument_error(str_cat("sim cost model: topology has ", topology.num_ranks(),
                                          " ranks but the placement has ", placement.num_ranks()));
  }
  const auto& bw = topology.bandwidths();
  if (!(bw.same_host_bytes_per_s > 0 && bw.cross_host_bytes_per_s > 0 && std::isfinite(bw.latency_s) &&
        bw.latency_s >= 0)) {
    return invalid_argument_error("sim cost model: topology bandwidths must be > 0 and latency >= 0");
  }
  CostModel m;
  m.params_ = params;
  m.num_experts_ = placement.num_experts();
  m.num_ranks_ = placement.num_ranks();
  m.host_of_rank_ = topology.host_of_rank();
  m.num_hosts_ = topology.num_hosts();
  m.same_host_bw_ = bw.same_host_bytes_per_s;
  m.cross_host_bw_ = bw.cross_host_bytes_per_s;
  m.latency_s_ = bw.latency_s;

  const int32_t R = m.num_ranks_;
  const int32_t H = m.num_hosts_;
  const int32_t E = m.num_experts_;
  std::vector<int32_t> ranks_on_host(static_cast<size_t>(H), 0);
  for (RankId r = 0; r < R; ++r) ++ranks_on_host[static_cast<size_t>(m.host_of_rank_[static_cast<size_t>(r)])];

  // Per expert: distinct ranks holding it, per host count of them.
  std::vector<int32_t> distinct_ranks(static_cast<size_t>(E));
  std::vector<int32_t> host_count(static_cast<size_t>(H) * static_cast<size_t>(E));
  std::vector<int32_t> covered_origins(static_cast<size_t>(E));  // ranks on hosts that hold e
  std::vector<char> seen_rank;
  m.layers_.resize(static_cast<size_t>(placement.num_layers()));
  for (LayerId l = 0; l < placement.num_layers(); ++l) {
    LayerRoute& route = m.layers_[static_cast<size_t>(l)];
    const int32_t spr = placement.slots_per_rank(l);
    route.slots_per_rank = spr;
    auto row = placement.phy2log(l);
    route.slot_expert.assign(row.begin(), row.end());
    route.slot_share.resize(row.size());
    for (size_t g = 0; g < row.size(); ++g) route.slot_share[g] = placement.share_of(l, static_cast<GlobalSlot>(g));
    if (params.dispatch == DispatchMode::kPerBatch) route.replica_ranks = layer_replica_ranks(placement, l);

    std::fill(distinct_ranks.begin(), distinct_ranks.end(), 0);
    std::fill(host_count.begin(), host_count.end(), 0);
    std::fill(covered_origins.begin(), covered_origins.end(), 0);
    // Distinct (rank, expert) pairs, rank-major: a rank's slots are contiguous.
    for (RankId r = 0; r < R; ++r) {
      const HostId h = m.host_of_rank_[static_cast<size_t>(r)];
      for (int32_t s = 0; s < spr; ++s) {
        const ExpertId e = row[static_cast<size_t>(r) * static_cast<size_t>(spr) + static_cast<size_t>(s)];
        if (e < 0) continue;
        bool dup = false;
        for (int32_t t = 0; t < s; ++t)
          dup |= row[static_cast<size_t>(r) * static_cast<size_t>(spr) + static_cast<size_t>(t)] == e;
        if (dup) continue;
        route.rank_holders.push_back(Holder{r, e, 0, 0});
        ++distinct_ranks[static_cast<size_t>(e)];
        int32_t& hc = host_count[static_cast<size_t>(h) * static_cast<size_t>(E) + static_cast<size_t>(e)];
        if (hc++ == 0) {
          route.host_holders.emplace_back(h, e);
          covered_origins[static_cast<size_t>(e)] += ranks_on_host[static_cast<size_t>(h)];
        }
      }
    }
    // Receive coefficients of the nearest-replica rule (per token of load_e,
    // each of the R origins holding load_e / R):
    //   same host: the n_h - k_he origins on h without e split over its k_he holders;
    //   cross host: the origins on hosts without e split over all c_e holders.
    const double inv_r = 1.0 / R;
    for (Holder& hold : route.rank_holders) {
      const HostId h = m.host_of_rank_[static_cast<size_t>(hold.rank)];
      const double k_he = host_count[static_cast<size_t>(h) * static_cast<size_t>(E) + static_cast<size_t>(hold.expert)];
      const double n_h = ranks_on_host[static_cast<size_t>(h)];
      const double c_e = distinct_ranks[static_cast<size_t>(hold.expert)];
      const double outside = R - covered_origins[static_cast<size_t>(hold.expert)];
      hold.recv_same_host = (n_h - k_he) / k_he * inv_r;
      hold.recv_cross_host = outside / c_e * inv_r;
    }
  }
  return m;
}

double CostModel::phase_seconds(double same_host_bytes, double cross_host_bytes) const {
  if (same_host_bytes <= 0 && cross_host_bytes <= 0) return 0;
  return latency_s_ + std::max(same_host_bytes / same_host_bw_, cross_host_bytes / cross_host_bw_);
}

Status CostModel::per_batch_tokens(const LayerRoute& route, std::span<const double> w, double* tokens,
                                   double* recv_same, double* recv_cross, double* send_same,
                                   double* send_cross) const {
  // The runtime's split works on whole tokens. Trace loads are token counts;
  // fractional loads (e.g. normalised frequencies) are scaled so that the
  // layer totals 2^32 before rounding, and the rank loads scaled back.
  double total = 0;
  bool integral = true;
  for (double v : w) {
    total += v;
    integral &= v == std::floor(v);
  }
  const double scale = integral || total <= 0 ? 1.0 : 4294967296.0 / total;
  std::vector<int64_t> totals(w.size());
  for (size_t e = 0; e < w.size(); ++e) {
    const double v = w[e] * scale;
    if (v > 1e15) {
      return invalid_argument_error(str_cat("sim cost model: per-batch dispatch: expert ", e, ": load ", w[e],
                                            " too large (at most 2^50 tokens)"));
    }
    totals[e] = std::llround(v);
  }
  std::vector<std::vector<int64_t>> amounts;
  OMNI_ASSIGN_OR_RETURN(std::vector<int64_t> loads,
                        balance_batch_loads(num_ranks_, route.replica_ranks, totals, &amounts));
  for (size_t r = 0; r < loads.size(); ++r) tokens[r] += static_cast<double>(loads[r]) / scale;
  // Token flows of experts with several replica ranks, as split_batch routes
  // them: every origin holds load / R of the expert; each replica rank takes
  // its amount from its own tokens first, then from its host, then from any
  // rank (the rest of the traffic follows the nearest-replica rule).
  const auto R = static_cast<size_t>(num_ranks_);
  std::vector<double> supply(R), demand;
  for (size_t e = 0; e < w.size(); ++e) {
    const auto& rs = route.replica_ranks[e];
    if (rs.size() < 2 || w[e] <= 0) continue;
    std::fill(supply.begin(), supply.end(), w[e] / static_cast<double>(R));
    demand.resize(rs.size());
    for (size_t k = 0; k < rs.size(); ++k) demand[k] = static_cast<double>(amounts[e][k]) / scale;
    auto move = [&](size_t q, size_t k) {
      const double t = std::min(supply[q], demand[k]);
      if (t <= 0) return;
      supply[q] -= t;
      demand[k] -= t;
      const auto r = static_cast<size_t>(rs[k]);
      if (q == r) return;
      const bool same = host_of_rank_[q] == host_of_rank_[r];
      (same ? recv_same : recv_cross)[r] += t;
      (same ? send_same : send_cross)[q] += t;
    };
    for (size_t k = 0; k < rs.size(); ++k) move(static_cast<size_t>(rs[k]), k);
    for (size_t k = 0; k < rs.size(); ++k)
      for (size_t q = 0; q < R; ++q)
        if (host_of_rank_[q] == host_of_rank_[static_cast<size_t>(rs[k])]) move(q, k);
    for (size_t k = 0; k < rs.size(); ++k)
      for (size_t q = 0; q < R && demand[k] > 0; ++q) move(q, k);
  }
  return ok_status();
}

StatusOr<LayerCost> CostModel::evaluate(const LayerRoute& route, std::span<const double> w,
                                        std::vector<double>& scratch) const {
  const size_t R = static_cast<size_t>(num_ranks_);
  const size_t H = static_cast<size_t>(num_hosts_);
  // scratch layout: compute tokens [R], replicas [R], rank cover [R], host cover [H],
  // received same-host [R], received cross-host [R], per-batch flows sent
  // same-host [R] and cross-host [R].
  scratch.assign(7 * R + H, 0.0);
  double* tokens = scratch.data();
  double* replicas = tokens + R;
  double* rank_cover = replicas + R;
  double* recv_same = rank_cover + R;
  double* recv_cross = recv_same + R;
  double* flow_send_same = recv_cross + R;
  double* flow_send_cross = flow_send_same + R;
  double* host_cover = flow_send_cross + R;
  const bool per_batch = params_.dispatch == DispatchMode::kPerBatch;
  // Per-batch dispatch: experts with several replica ranks move by the
  // split's flows (per_batch_tokens), the others by the nearest-replica rule.
  auto by_rule = [&](ExpertId e) { return !per_batch || route.replica_ranks[static_cast<size_t>(e)].size() < 2; };

  const size_t spr = static_cast<size_t>(route.slots_per_rank);
  for (size_t g = 0; g < route.slot_expert.size(); ++g) {
    const ExpertId e = route.slot_expert[g];
    if (e < 0) continue;
    const double load = w[static_cast<size_t>(e)];
    if (load <= 0) continue;
    if (params_.dispatch == DispatchMode::kShares) tokens[g / spr] += load * route.slot_share[g];
    replicas[g / spr] += 1;
  }
  if (per_batch)
    OMNI_RETURN_IF_ERROR(per_batch_tokens(route, w, tokens, recv_same, recv_cross, flow_send_same, flow_send_cross));
  double total = 0, rule_total = 0;
  for (size_t e = 0; e < w.size(); ++e) {
    total += w[e];
    if (by_rule(static_cast<ExpertId>(e))) rule_total += w[e];
  }
  for (const Holder& hold : route.rank_holders) {
    if (!by_rule(hold.expert)) continue;
    const double load = w[static_cast<size_t>(hold.expert)];
    rank_cover[hold.rank] += load;
    recv_same[hold.rank] += load * hold.recv_same_host;
    recv_cross[hold.rank] += load * hold.recv_cross_host;
  }
  for (const auto& [h, e] : route.host_holders)
    if (by_rule(e)) host_cover[h] += w[static_cast<size_t>(e)];

  LayerCost c;
  const double inv_r = 1.0 / static_cast<double>(R);
  double sent_same = 0, sent_cross = 0;
  for (size_t r = 0; r < R; ++r) {
    const double compute = tokens[r] * params_.compute_s_per_token + replicas[r] * params_.compute_s_per_replica;
    c.compute_s = std::max(c.compute_s, compute);
    c.max_tokens = std::max(c.max_tokens, tokens[r]);
    const double cover = host_cover[host_of_rank_[r]];
    const double send_same = std::max(0.0, (cover - rank_cover[r]) * inv_r) + flow_send_same[r];
    const double send_cross = std::max(0.0, (rule_total - cover) * inv_r) + flow_send_cross[r];
    sent_same += send_same;
    sent_cross += send_cross;
    const double same = std::max(send_same, recv_same[r]);
    const double cross = std::max(send_cross, recv_cross[r]);
    c.dispatch_s = std::max(c.dispatch_s, phase_seconds(same * params_.dispatch_bytes_per_token,
                                                        cross * params_.dispatch_bytes_per_token));
    c.combine_s = std::max(c.combine_s, phase_seconds(same * params_.combine_bytes_per_token,
                                                      cross * params_.combine_bytes_per_token));
  }
  c.mean_tokens = total * inv_r;
  const double per_token = params_.dispatch_bytes_per_token + params_.combine_bytes_per_token;
  c.same_host_bytes = sent_same * per_token;
  c.cross_host_bytes = sent_cross * per_token;
  if (params_.dispatch == DispatchMode::kPerBatch && total > 0) c.allgather_s = params_.batch_allgather_s;
  c.time_s = params_.layer_overhead_s + c.compute_s + c.dispatch_s + c.combine_s + c.allgather_s;
  return c;
}

StatusOr<LayerCost> CostModel::layer_cost(LayerId l, std::span<const double> expert_loads) const {
  if (l < 0 || l >= num_layers()) {
    return out_of_range_error(str_cat("sim cost model: layer ", l, " out of [0, ", num_layers(), ")"));
  }
  OMNI_RETURN_IF_ERROR(check_loads("sim cost model", l, expert_loads, num_experts_));
  std::vector<double> scratch;
  return evaluate(layers_[static_cast<size_t>(l)], expert_loads, scratch);
}

StatusOr<StepCost> CostModel::step_cost(const LoadMatrix& load, std::vector<LayerCost>* per_layer) const {
  if (load.num_layers() != num_layers() || load.num_experts() != num_experts_) {
    return invalid_argument_error(str_cat("sim cost model: load is ", load.num_layers(), " x ", load.num_experts(),
                                          " but the placement has ", num_layers(), " layers x ", num_experts_,
                                          " experts"));
  }
  // LoadMatrix values are finite and >= 0 by construction: no per-value check here.
  if (per_layer) per_layer->clear();
  StepCost s;
  std::vector<double> scratch;
  double sum_ratio = 0;
  int32_t loaded_layers = 0;
  for (LayerId l = 0; l < num_layers(); ++l) {
    OMNI_ASSIGN_OR_RETURN(const LayerCost c, evaluate(layers_[static_cast<size_t>(l)], load.row(l), scratch));
    s.time_s += c.time_s;
    s.compute_s += c.compute_s;
    s.comm_s += c.dispatch_s + c.combine_s + c.allgather_s;
    s.same_host_bytes += c.same_host_bytes;
    s.cross_host_bytes += c.cross_host_bytes;
    if (c.mean_tokens > 0) {
      sum_ratio += c.max_tokens / c.mean_tokens;
      ++loaded_layers;
    }
    if (per_layer) per_layer->push_back(c);
  }
  s.mean_max_over_mean = loaded_layers > 0 ? sum_ratio / loaded_layers : 1.0;
  return s;
}

StatusOr<StepBound> step_lower_bound(const LoadMatrix& load, int32_t num_ranks,
                                     std::span<const int64_t> num_slots_per_layer, const CostParams& params) {
  OMNI_RETURN_IF_ERROR(params.validate());
  if (num_ranks <= 0) return invalid_argument_error(str_cat("sim lower bound: num_ranks ", num_ranks, " must be > 0"));
  const size_t n = num_slots_per_layer.size();
  if (n != 1 && n != static_cast<size_t>(load.num_layers())) {
    return invalid_argument_error(str_cat("sim lower bound: ", n, " slot counts for ", load.num_layers(),
                                          " layers (give one per layer, or one for all)"));
  }
  StepBound out;
  double sum_ratio = 0;
  int32_t loaded = 0;
  for (LayerId l = 0; l < load.num_layers(); ++l) {
    const int64_t slots = num_slots_per_layer[n == 1 ? 0 : static_cast<size_t>(l)];
    if (slots < load.num_experts()) {
      return invalid_argument_error(str_cat("sim lower bound: layer ", l, ": ", slots, " slots for ",
                                            load.num_experts(), " experts"));
    }
    const double bound = lower_bound(load.row(l), num_ranks, slots);
    out.time_s += params.layer_overhead_s + bound * params.compute_s_per_token;
    const double mean = load.layer_total(l) / num_ranks;
    if (mean > 0) {
      sum_ratio += bound / mean;
      ++loaded;
    }
  }
  out.bound_over_mean = loaded > 0 ? sum_ratio / loaded : 1.0;
  return out;
}

}  // namespace omni::sim

namespace omni::sim {

StatusOr<MigrationPlan> priced_migration(const Placement& from, const Placement& to, const Topology& topology,
                                         const CostParams& params, int64_t staging_bytes_per_rank,
                                         int32_t layers_per_commit) {
  OMNI_RETURN_IF_ERROR(params.validate());
  if (params.expert_bytes < 1 || params.expert_bytes > static_cast<double>(kMaxExpertBytes)) {
    return invalid_argument_error(str_cat("sim migration: expert_bytes ", params.expert_bytes, " must be in [1, ",
                                          kMaxExpertBytes, "]"));
  }
  if (staging_bytes_per_rank < 0 || layers_per_commit < 0) {
    return invalid_argument_error(str_cat("sim migration: staging_bytes_per_rank (", staging_bytes_per_rank,
                                          ") and layers_per_commit (", layers_per_commit,
                                          ") must be >= 0 (0 = no limit)"));
  }
  // The PlacementManager's budget (runtime/placement_manager.h): no count
  // limit, only staging bytes and layers per commit.
  MigrationOptions options;
  options.expert_bytes = static_cast<int64_t>(std::llround(params.expert_bytes));
  options.staging_bytes_per_rank = staging_bytes_per_rank;
  options.layers_per_commit = layers_per_commit;
  options.max_per_round = 0;
  return diff(from, to, topology, options);
}

StatusOr<MigrationCost> migration_cost(const Placement& from, const Placement& to, const Topology& topology,
                                       const CostParams& params, int64_t staging_bytes_per_rank,
                                       int32_t layers_per_commit) {
  OMNI_ASSIGN_OR_RETURN(MigrationPlan plan,
                        priced_migration(from, to, topology, params, staging_bytes_per_rank, layers_per_commit));
  MigrationCost out;
  out.transfers = plan.num_transfers;
  out.rounds = plan.num_rounds();
  out.bytes = static_cast<double>(plan.total_bytes);
  out.cross_host_bytes = static_cast<double>(plan.bytes_by_link[static_cast<size_t>(LinkClass::kCrossHost)]);
  out.time_s = plan.total_seconds;
  return out;
}

}  // namespace omni::sim
