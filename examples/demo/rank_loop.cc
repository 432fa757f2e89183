#include "demo/rank_loop.h"

#include <chrono>
#include <thread>

#include "demo/survivor_collective.h"
#include "omniplacement/dispatch/batch_split.h"

namespace omni {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

DemoRankLoop::DemoRankLoop(const DemoRank& rank, const DemoConfig& config, const RoutingWorkload& workload,
                           const ToyMoE& model, const Placement& initial, const Topology& topology)
    : rank_(rank),
      config_(config),
      workload_(workload),
      initial_(initial),
      topology_(topology),
      L_(workload.num_layers()),
      E_(workload.num_experts()),
      n_(workload.ids_per_step()),
      failing_(config.injects_failures()),
      per_batch_(config.manager.dispatch_mode == DispatchMode::kPerBatch),
      exchange_(*rank.transport, model, *rank.store, workload.top_k(), config.manager.collective_timeout),
      static_counters_(static_cast<size_t>(L_), std::vector<uint32_t>(static_cast<size_t>(E_), 0)),
      retry_counters_(static_cast<size_t>(L_), std::vector<uint32_t>(static_cast<size_t>(E_), 0)),
      loads_(workload.num_windows(), L_, rank.transport->size(), E_),
      ids_(static_cast<size_t>(L_), std::vector<ExpertId>(static_cast<size_t>(n_))),
      out_(static_cast<size_t>(L_), std::vector<GlobalSlot>(static_cast<size_t>(n_))),
      static_out_(static_cast<size_t>(n_)) {}

StatusOr<std::unique_ptr<DemoRankLoop>> DemoRankLoop::create(const DemoRank& rank, const DemoConfig& config,
                                                             const RoutingWorkload& workload, const ToyMoE& model,
                                                             const Placement& initial, const Topology& topology) {
  std::unique_ptr<DemoRankLoop> loop(new DemoRankLoop(rank, config, workload, model, initial, topology));
  for (LayerId l = 0; l < loop->L_; ++l) {
    OMNI_ASSIGN_OR_RETURN(auto d, LayerDispatch::build(initial, l, topology, rank.transport->rank()));
    loop->static_tables_.push_back(std::move(d));
  }
  return loop;
}

Status DemoRankLoop::dispatch_layer(LayerId l) {
  const auto deadline = Clock::now() + config_.manager.collective_timeout;
  for (;;) {
    Status s = rank_.manager->dispatch(l, ids_[static_cast<size_t>(l)], out_[static_cast<size_t>(l)]);
    if (s.ok() || !failing_ || Clock::now() > deadline ||
        (s.code() != StatusCode::kUnavailable && s.code() != StatusCode::kFailedPrecondition))
      return s;
    // Fenced (this rank was declared failed): no retry can help.
    OMNI_RETURN_IF_ERROR(rank_.transport->fence_status());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

Status DemoRankLoop::account(int64_t step, const Placement& now) {
  const RankId q = rank_.transport->rank();
  const int32_t win = workload_.window_of(step);
  items_.clear();
  for (LayerId l = 0; l < L_; ++l) {
    const auto& li = ids_[static_cast<size_t>(l)];
    const auto& lo = out_[static_cast<size_t>(l)];
    // The same tokens under the static placement.
    if (per_batch_) {
      OMNI_ASSIGN_OR_RETURN(BatchSplit split,
                            split_batch(initial_, l, topology_, q, rank_.manager->last_batch_counts(l)));
      BatchDispatch(split).dispatch(li, static_out_);
    } else {
      static_tables_[static_cast<size_t>(l)].dispatch(li, static_out_, static_counters_[static_cast<size_t>(l)]);
    }
    int64_t* dl = loads_.mutable_dynamic_row(win, l);
    int64_t* sl = loads_.mutable_static_row(win, l);
    int64_t* cl = loads_.mutable_counts_row(win, l);
    for (int32_t i = 0; i < n_; ++i) {
      const ExpertId e = li[static_cast<size_t>(i)];
      const GlobalSlot g = lo[static_cast<size_t>(i)];
      ++cl[e];
      if (static_out_[static_cast<size_t>(i)] >= 0) ++sl[initial_.rank_of(l, static_out_[static_cast<size_t>(i)])];
      if (g == kLostExpertSlot) {
        ++tokens_lost_expert_;  // its expert has no replica left: reported, not served
        continue;
      }
      if (g < 0) {
        ++counts_.wrong;  // a token with no slot is a wrong output
        ++counts_.checked;
        continue;
      }
      ++dl[now.rank_of(l, g)];
      items_.push_back({l, i, g});
    }
  }
  return ok_status();
}

Status DemoRankLoop::serve_again(int64_t step) {
  // Requests that died with a rank are dispatched again on the map without
  // it (every survivor takes part in the second exchange).
  Transport& t = *rank_.transport;
  PlacementManager& pm = *rank_.manager;
  std::vector<int64_t> need = {retry_.empty() ? 0 : 1};
  OMNI_RETURN_IF_ERROR(all_reduce_among_survivors(t, std::span<int64_t>(need), ReduceOp::kMax,
                                                  config_.manager.collective_timeout, failing_));
  if (need[0] == 0) return ok_status();
  const auto deadline = Clock::now() + config_.manager.collective_timeout;
  while (pm.failed_ranks().size() < t.failed_ranks().size() && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  items_.clear();
  const auto snap = pm.snapshot();
  for (const ServeItem& it : retry_) {
    // The replica by the dispatch tables of the new map (no collective,
    // whatever the dispatch mode).
    GlobalSlot g = -1;
    snap->layer(it.layer).dispatch.dispatch(
        std::span<const ExpertId>(&ids_[static_cast<size_t>(it.layer)][static_cast<size_t>(it.index)], 1),
        std::span<GlobalSlot>(&g, 1), retry_counters_[static_cast<size_t>(it.layer)]);
    if (g == kLostExpertSlot) {
      ++tokens_lost_expert_;
      continue;
    }
    ++requests_reserved_;
    items_.push_back({it.layer, it.index, g});
  }
  std::vector<ServeItem> again;
  OMNI_RETURN_IF_ERROR(exchange_.serve(step, snap->placement(), items_, ids_, again, counts_));
  counts_.wrong += static_cast<int64_t>(again.size());  // a second failure within one step is not retried
  counts_.checked += static_cast<int64_t>(again.size());
  return ok_status();
}

Status DemoRankLoop::serve_step(int64_t step) {
  const RankId q = rank_.transport->rank();
  PlacementManager& pm = *rank_.manager;
  for (LayerId l = 0; l < L_; ++l) workload_.topk_ids(step, q, l, ids_[static_cast<size_t>(l)]);
  const auto t0 = Clock::now();
  for (LayerId l = 0; l < L_; ++l) {
    pm.record(l, ids_[static_cast<size_t>(l)]);
    OMNI_RETURN_IF_ERROR(dispatch_layer(l));
  }
  dispatch_s_ += seconds_since(t0);
  const auto snap = pm.snapshot();
  OMNI_RETURN_IF_ERROR(account(step, snap->placement()));
  retry_.clear();
  OMNI_RETURN_IF_ERROR(exchange_.serve(step, snap->placement(), items_, ids_, retry_, counts_));
  if (failing_) OMNI_RETURN_IF_ERROR(serve_again(step));
  const auto tb = Clock::now();
  OMNI_RETURN_IF_ERROR(pm.step_boundary(step));
  boundary_s_ += seconds_since(tb);
  return ok_status();
}

}  // namespace omni
