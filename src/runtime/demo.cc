#include "omniplacement/runtime/demo.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <limits>
#include <thread>
#include <unistd.h>

#include "omniplacement/core/metrics.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/planner/planner.h"
#include "omniplacement/runtime/backup_source.h"
#include "omniplacement/dispatch/batch_split.h"
#include "omniplacement/dispatch/dispatch_table.h"
#include "omniplacement/runtime/toy_moe.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/failure_detector.h"

namespace omni {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
int64_t ns_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

constexpr int32_t kRequestTag = 1;
constexpr int32_t kResponseTag = 2;

// One (token, expert) sent to the rank that owns the chosen slot.
struct RequestHead {
  int32_t layer;
  int32_t slot;  // global slot
  float gate;
};

// Exchanges one message with every other rank: in round d rank q sends to
// q + d and receives from q - d (mod R), sends on a helper thread. Every pair
// meets in the same round, so the exchange cannot deadlock whatever the
// transport's send semantics.
// A peer that is (or becomes, while we wait for it) marked failed on t is
// skipped: its incoming message stays empty.
Status exchange(Transport& t, int32_t tag, const std::vector<std::vector<std::byte>>& outgoing,
                std::vector<std::vector<std::byte>>& incoming, Timeout timeout) {
  const int32_t R = t.size();
  const RankId q = t.rank();
  Status send_status;
  std::thread sender([&] {
    for (int32_t d = 1; d < R && send_status.ok(); ++d) {
      const RankId dst = (q + d) % R;
      if (t.is_failed(dst)) continue;
      send_status = t.send(dst, tag, outgoing[static_cast<size_t>(dst)], timeout);
      if (!send_status.ok() && t.is_failed(dst)) send_status = ok_status();
      send_status = send_status.with_context(str_cat("demo: rank ", q, " sending to rank ", dst));
    }
  });
  Status recv_status;
  for (int32_t d = 1; d < R && recv_status.ok(); ++d) {
    const RankId src = (q - d + R) % R;
    incoming[static_cast<size_t>(src)].clear();
    if (t.is_failed(src)) continue;
    auto msg = t.recv_message(src, tag, timeout);
    if (!msg.ok()) {
      if (t.is_failed(src)) continue;
      recv_status = msg.status().with_context(str_cat("demo: rank ", q, " receiving from rank ", src));
      break;
    }
    incoming[static_cast<size_t>(src)] = std::move(*msg);
  }
  sender.join();
  OMNI_RETURN_IF_ERROR(recv_status);
  return send_status;
}

template <typename T>
void put(std::vector<std::byte>& buf, const T& v) {
  const size_t at = buf.size();
  buf.resize(at + sizeof(T));
  std::memcpy(buf.data() + at, &v, sizeof(T));
}

double max_over_mean(std::span<const int64_t> loads) {
  int64_t total = 0, mx = 0;
  for (int64_t v : loads) {
    total += v;
    mx = std::max(mx, v);
  }
  if (total == 0) return 1.0;
  return static_cast<double>(mx) * static_cast<double>(loads.size()) / static_cast<double>(total);
}

}  // namespace

void DemoFailureSync::note_kill(int64_t steady_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  if (kill_ns_ == 0 || steady_ns < kill_ns_) kill_ns_ = steady_ns;
}
int64_t DemoFailureSync::kill_ns() const {
  std::lock_guard<std::mutex> lock(mu_);
  return kill_ns_;
}
void DemoFailureSync::survivor_done() {
  std::lock_guard<std::mutex> lock(mu_);
  ++done_;
  cv_.notify_all();
}
bool DemoFailureSync::wait_survivors(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return done_ >= survivors_; });
}

StatusOr<DemoReport> run_demo(Transport& t, const DemoConfig& c, const RoutingWorkload& w,
                              const std::vector<std::string>& window_names) {
  const auto t_start = Clock::now();
  const int32_t R = t.size();
  const RankId q = t.rank();
  const int32_t L = w.num_layers();
  const int32_t E = w.num_experts();
  const int32_t W = w.num_windows();
  const int32_t S = c.slots_per_rank;
  const int32_t n = w.ids_per_step();
  const int32_t k = w.top_k();
  if (static_cast<int32_t>(window_names.size()) != W)
    return invalid_argument_error(str_cat("demo: ", window_names.size(), " window names for ", W, " windows"));
  if (c.steps < 1 || c.ranks_per_host < 1 || R % c.ranks_per_host != 0)
    return invalid_argument_error(str_cat("demo: need steps >= 1 (", c.steps, ") and ranks_per_host dividing ", R,
                                          " ranks (", c.ranks_per_host, ")"));
  if (int64_t{R} * S < E)
    return invalid_argument_error(str_cat("demo: ", R, " ranks x ", S, " slots cannot hold ", E, " experts"));
  OMNI_ASSIGN_OR_RETURN(Topology topo, Topology::uniform(R, c.ranks_per_host));
  OMNI_ASSIGN_OR_RETURN(ToyMoE model, ToyMoE::create({L, E, c.hidden, c.seed}));
  const int32_t H = model.hidden();

  // The initial (and static) placement: the planner fitted on window 0, as a
  // deployment profiled once would ship it.
  OMNI_ASSIGN_OR_RETURN(auto planner, make_planner(c.manager.planner_spec));
  PlanInput in;
  in.load = &w.window(0);
  in.num_ranks = R;
  in.slots_per_rank = {S};
  in.topology = &topo;
  OMNI_ASSIGN_OR_RETURN(PlanResult first, planner->plan(in));
  const Placement initial = first.placement;

  OMNI_ASSIGN_OR_RETURN(auto store, HostWeightStore::create(std::vector<int64_t>(static_cast<size_t>(L), model.expert_bytes()),
                                                            std::vector<int32_t>(static_cast<size_t>(L), S),
                                                            c.manager.staging_limit_bytes));
  {
    std::vector<std::byte> buf(static_cast<size_t>(model.expert_bytes()));
    for (LayerId l = 0; l < L; ++l)
      for (SlotId s = 0; s < S; ++s) {
        const ExpertId e = initial.expert_at(l, q, s);
        if (e < 0) continue;
        OMNI_RETURN_IF_ERROR(model.expert_weights(l, e, buf));
        OMNI_RETURN_IF_ERROR(store->write_slot(l, s, 0, buf));
      }
  }
  const bool failing = !c.fail_ranks.empty();
  const bool victim = std::find(c.fail_ranks.begin(), c.fail_ranks.end(), q) != c.fail_ranks.end();
  if (failing) {
    if (t.backend() != "local" || !c.failure_sync)
      return invalid_argument_error("demo: failure injection needs the local transport (ranks as threads) and a failure_sync");
    if (c.fail_at_step < 0 || c.fail_at_step >= c.steps)
      return invalid_argument_error(str_cat("demo: fail_at_step ", c.fail_at_step, " outside [0, ", c.steps, ")"));
    std::vector<RankId> f = c.fail_ranks;
    std::sort(f.begin(), f.end());
    if (f.front() < 0 || f.back() >= R || std::adjacent_find(f.begin(), f.end()) != f.end() ||
        static_cast<int32_t>(f.size()) >= R)
      return invalid_argument_error(str_cat("demo: ranks to fail must be distinct, in [0, ", R,
                                            "), and leave a survivor (", f.size(), " given)"));
    if (c.backup != "host" && c.backup != "safetensors" && c.backup != "none")
      return invalid_argument_error(str_cat("demo: backup '", c.backup, "': use host, safetensors or none"));
  }
  // The backup source lost experts are restored from.
  std::unique_ptr<BackupSource> backup;
  std::string ckpt_path;
  const std::vector<int64_t> expert_bytes(static_cast<size_t>(L), model.expert_bytes());
  auto fill = [&](LayerId l, ExpertId e, std::span<std::byte> o) { return model.expert_weights(l, e, o); };
  if (failing && c.backup == "host") {
    OMNI_ASSIGN_OR_RETURN(auto mem, HostMemoryBackup::create(expert_bytes, E));
    std::vector<std::byte> buf(static_cast<size_t>(model.expert_bytes()));
    for (LayerId l = 0; l < L; ++l)
      for (ExpertId e = 0; e < E; ++e) {
        OMNI_RETURN_IF_ERROR(fill(l, e, buf));
        OMNI_RETURN_IF_ERROR(mem->set(l, e, buf));
      }
    backup = std::move(mem);
  } else if (failing && c.backup == "safetensors") {
    ckpt_path = (std::filesystem::temp_directory_path() /
                 str_cat("omniplace_demo_", ::getpid(), "_rank", q, ".safetensors")).string();
    OMNI_RETURN_IF_ERROR(write_expert_checkpoint(ckpt_path, expert_bytes, E, fill));
    OMNI_ASSIGN_OR_RETURN(backup, SafetensorsBackup::open(ckpt_path, L, E));
  }
  struct RemoveFile {
    std::string path;
    ~RemoveFile() {
      std::error_code ec;
      if (!path.empty()) std::filesystem::remove(path, ec);
    }
  } remove_ckpt{ckpt_path};
  PlacementManagerOptions mo = c.manager;
  mo.backup = backup.get();
  OMNI_ASSIGN_OR_RETURN(auto pm, PlacementManager::create(t, topo, initial, *store, mo));
  // Heartbeats (only with failure injection): the detector fails the dead
  // ranks over in the manager from its own thread.
  std::atomic<int64_t> detected_ns{0};
  std::unique_ptr<FailureDetector> detector;
  if (failing) {
    FailureDetectorOptions fo;
    fo.period = c.heartbeat_period;
    fo.timeout = c.heartbeat_timeout;
    PlacementManager* manager = pm.get();
    fo.on_change = [manager, &detected_ns](const Membership& m) {
      int64_t zero = 0;
      detected_ns.compare_exchange_strong(zero, ns_now());
      manager->on_membership(m);
    };
    OMNI_ASSIGN_OR_RETURN(detector, FailureDetector::start(t, fo));
    OMNI_RETURN_IF_ERROR(t.barrier(c.manager.collective_timeout));  // every detector runs before anyone dies
  }
  DemoFailure fr;
  bool dead = false;
  const bool per_batch = c.manager.dispatch_mode == DispatchMode::kPerBatch;

  std::vector<LayerDispatch> static_tables;
  for (LayerId l = 0; l < L; ++l) {
    OMNI_ASSIGN_OR_RETURN(auto d, LayerDispatch::build(initial, l, topo, q));
    static_tables.push_back(std::move(d));
  }
  std::vector<std::vector<uint32_t>> static_counters(static_cast<size_t>(L), std::vector<uint32_t>(static_cast<size_t>(E), 0));

  // Accumulators, summed over ranks at the end: [W][L][R] loads, [W][L][E] counts.
  const auto WLR = static_cast<size_t>(W) * static_cast<size_t>(L) * static_cast<size_t>(R);
  const auto WLE = static_cast<size_t>(W) * static_cast<size_t>(L) * static_cast<size_t>(E);
  std::vector<int64_t> dyn_load(WLR, 0), static_load(WLR, 0), counts(WLE, 0);
  int64_t checked = 0, wrong = 0, misrouted = 0;
  double dispatch_s = 0, boundary_s = 0;

  std::vector<std::vector<ExpertId>> ids(static_cast<size_t>(L), std::vector<ExpertId>(static_cast<size_t>(n)));
  std::vector<std::vector<GlobalSlot>> out(static_cast<size_t>(L), std::vector<GlobalSlot>(static_cast<size_t>(n)));
  std::vector<GlobalSlot> static_out(static_cast<size_t>(n));
  std::vector<std::vector<std::byte>> requests(static_cast<size_t>(R)), responses(static_cast<size_t>(R)),
      incoming(static_cast<size_t>(R));
  // One (token, expert) to serve: where it is in ids[layer], and its slot.
  struct Item {
    LayerId layer;
    int32_t index;
    GlobalSlot slot;
  };
  std::vector<Item> items, retry;
  std::vector<std::vector<uint32_t>> retry_counters(static_cast<size_t>(L), std::vector<uint32_t>(static_cast<size_t>(E), 0));
  std::vector<std::vector<Item>> pending(static_cast<size_t>(R));  // what each request to rank r was
  std::vector<float> x(static_cast<size_t>(H)), y(static_cast<size_t>(H)), ref(static_cast<size_t>(H));
  const size_t item_bytes = sizeof(RequestHead) + static_cast<size_t>(H) * sizeof(float);
  const size_t answer_bytes = static_cast<size_t>(H) * sizeof(float);
  auto token_key = [&](int64_t step, LayerId l, int32_t token) {
    return (static_cast<uint64_t>(step) << 32) ^ (static_cast<uint64_t>(q) << 24) ^ (static_cast<uint64_t>(l) << 16) ^
           static_cast<uint64_t>(token);
  };
  // Sends every item to the rank owning its slot, serves what others sent,
  // and checks each answer bit for bit against the logical expert. Items whose
  // rank failed before answering go to `lost` (re-served on the new map).
  auto serve_items = [&](int64_t step, const Placement& now, std::vector<Item>& lost) -> Status {
    for (auto& r : requests) r.clear();
    for (auto& p : pending) p.clear();
    for (const Item& it : items) {
      const RankId r = now.rank_of(it.layer, it.slot);
      auto& buf = requests[static_cast<size_t>(r)];
      model.token_input(token_key(step, it.layer, it.index / k), x);
      put(buf, RequestHead{it.layer, it.slot, 1.0f / static_cast<float>(1 + it.index % k)});
      for (float v : x) put(buf, v);
      pending[static_cast<size_t>(r)].push_back(it);
    }
    // Serve: my own requests locally, the others' after the exchange.
    auto serve = [&](const std::vector<std::byte>& req, std::vector<std::byte>& resp) {
      resp.clear();
      for (size_t at = 0; at + item_bytes <= req.size(); at += item_bytes) {
        RequestHead h;
        std::memcpy(&h, req.data() + at, sizeof(h));
        std::memcpy(x.data(), req.data() + at + sizeof(h), static_cast<size_t>(H) * sizeof(float));
        std::fill(y.begin(), y.end(), 0.0f);
        const bool mine = h.layer >= 0 && h.layer < L && h.slot >= 0 && h.slot < now.num_slots(h.layer) &&
                          now.rank_of(h.layer, h.slot) == q;
        if (mine) {
          ToyMoE::apply(store->slot_data(h.layer, now.local_slot(h.layer, h.slot)), H, x, h.gate, y);
        } else {
          ++misrouted;
          std::fill(y.begin(), y.end(), std::numeric_limits<float>::quiet_NaN());
        }
        for (float v : y) put(resp, v);
      }
    };
    OMNI_RETURN_IF_ERROR(exchange(t, kRequestTag, requests, incoming, c.manager.collective_timeout));
    for (RankId r = 0; r < R; ++r)
      if (r != q) serve(incoming[static_cast<size_t>(r)], responses[static_cast<size_t>(r)]);
    serve(requests[static_cast<size_t>(q)], incoming[static_cast<size_t>(q)]);
    std::swap(responses[static_cast<size_t>(q)], incoming[static_cast<size_t>(q)]);
    std::vector<std::vector<std::byte>> answers(static_cast<size_t>(R));
    OMNI_RETURN_IF_ERROR(exchange(t, kResponseTag, responses, answers, c.manager.collective_timeout));
    answers[static_cast<size_t>(q)] = std::move(responses[static_cast<size_t>(q)]);
    for (RankId r = 0; r < R; ++r) {
      const auto& ans = answers[static_cast<size_t>(r)];
      const auto& pend = pending[static_cast<size_t>(r)];
      for (size_t j = 0; j < pend.size(); ++j) {
        if (ans.size() < (j + 1) * answer_bytes && t.is_failed(r)) {
          lost.push_back(pend[j]);  // the rank died with the request
          continue;
        }
        ++checked;
        if (ans.size() < (j + 1) * answer_bytes) {
          ++wrong;
          continue;
        }
        const LayerId l = pend[j].layer;
        const int32_t i = pend[j].index;
        model.token_input(token_key(step, l, i / k), x);
        std::fill(ref.begin(), ref.end(), 0.0f);
        model.reference(l, ids[static_cast<size_t>(l)][static_cast<size_t>(i)], x, 1.0f / static_cast<float>(1 + i % k), ref);
        if (std::memcmp(ans.data() + j * answer_bytes, ref.data(), answer_bytes) != 0) ++wrong;
      }
    }
    return ok_status();
  };
  // In per-batch mode dispatch runs a collective; one that a rank's failure
  // cut short fails on every survivor alike, and they all try again.
  auto dispatch_layer = [&](LayerId l) -> Status {
    const auto deadline = Clock::now() + c.manager.collective_timeout;
    for (;;) {
      Status s = pm->dispatch(l, ids[static_cast<size_t>(l)], out[static_cast<size_t>(l)]);
      if (s.ok() || !failing || Clock::now() > deadline ||
          (s.code() != StatusCode::kUnavailable && s.code() != StatusCode::kFailedPrecondition))
        return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  };

  for (int64_t step = 0; step < c.steps; ++step) {
    if (failing && step == c.fail_at_step && victim) {
      // Crash: stop serving and go silent (no goodbye heartbeat).
      c.failure_sync->note_kill(ns_now());
      detector->stop(/*graceful=*/false);
      dead = true;
      break;
    }
    const int32_t win = w.window_of(step);
    const size_t wl = static_cast<size_t>(win) * static_cast<size_t>(L);
    for (LayerId l = 0; l < L; ++l) w.topk_ids(step, q, l, ids[static_cast<size_t>(l)]);
    const auto t0 = Clock::now();
    for (LayerId l = 0; l < L; ++l) {
      pm->record(l, ids[static_cast<size_t>(l)]);
      OMNI_RETURN_IF_ERROR(dispatch_layer(l));
    }
    dispatch_s += seconds_since(t0);
    const auto snap = pm->snapshot();
    const Placement& now = snap->placement();
    items.clear();
    for (LayerId l = 0; l < L; ++l) {
      const auto& li = ids[static_cast<size_t>(l)];
      const auto& lo = out[static_cast<size_t>(l)];
      // The same tokens under the static placement.
      if (per_batch) {
        OMNI_ASSIGN_OR_RETURN(BatchSplit split, split_batch(initial, l, topo, q, pm->last_batch_counts(l)));
        BatchDispatch(split).dispatch(li, static_out);
      } else {
        static_tables[static_cast<size_t>(l)].dispatch(li, static_out, static_counters[static_cast<size_t>(l)]);
      }
      int64_t* dl = dyn_load.data() + (wl + static_cast<size_t>(l)) * static_cast<size_t>(R);
      int64_t* sl = static_load.data() + (wl + static_cast<size_t>(l)) * static_cast<size_t>(R);
      int64_t* cl = counts.data() + (wl + static_cast<size_t>(l)) * static_cast<size_t>(E);
      for (int32_t i = 0; i < n; ++i) {
        const ExpertId e = li[static_cast<size_t>(i)];
        const GlobalSlot g = lo[static_cast<size_t>(i)];
        ++cl[e];
        if (static_out[static_cast<size_t>(i)] >= 0) ++sl[initial.rank_of(l, static_out[static_cast<size_t>(i)])];
        if (g == kLostExpertSlot) {
          ++fr.tokens_lost_expert;  // its expert has no replica left: reported, not served
          continue;
        }
        if (g < 0) {
          ++wrong;  // a token with no slot is a wrong output
          ++checked;
          continue;
        }
        ++dl[now.rank_of(l, g)];
        items.push_back({l, i, g});
      }
    }
    retry.clear();
    OMNI_RETURN_IF_ERROR(serve_items(step, now, retry));
    if (failing) {
      // Requests that died with a rank are dispatched again on the map
      // without it (every survivor takes part in the second exchange).
      std::vector<int64_t> need = {retry.empty() ? 0 : 1};
      OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(need), ReduceOp::kMax, c.manager.collective_timeout));
      if (need[0] != 0) {
        const auto deadline = Clock::now() + c.manager.collective_timeout;
        while (pm->failed_ranks().size() < t.failed_ranks().size() && Clock::now() < deadline)
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        items.clear();
        const auto snap2 = pm->snapshot();
        for (const Item& it : retry) {
          // The replica by the dispatch tables of the new map (no collective,
          // whatever the dispatch mode).
          GlobalSlot g = -1;
          snap2->layer(it.layer).dispatch.dispatch(
              std::span<const ExpertId>(&ids[static_cast<size_t>(it.layer)][static_cast<size_t>(it.index)], 1),
              std::span<GlobalSlot>(&g, 1), retry_counters[static_cast<size_t>(it.layer)]);
          if (g == kLostExpertSlot) {
            ++fr.tokens_lost_expert;
            continue;
          }
          ++fr.requests_reserved;
          items.push_back({it.layer, it.index, g});
        }
        std::vector<Item> again;
        OMNI_RETURN_IF_ERROR(serve_items(step, snap2->placement(), again));
        wrong += static_cast<int64_t>(again.size());  // a second failure within one step is not retried
        checked += static_cast<int64_t>(again.size());
      }
    }
    const auto tb = Clock::now();
    OMNI_RETURN_IF_ERROR(pm->step_boundary(step));
    boundary_s += seconds_since(tb);
    if (c.progress_every > 0 && ((step + 1) % c.progress_every == 0 || step + 1 == c.steps)) {
      std::vector<int64_t> v = {wrong, checked};
      OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(v), ReduceOp::kSum, c.manager.collective_timeout));
      if (q == t.live_ranks().front() && c.progress) {
        const auto st = pm->stats();
        c.progress(DemoProgress{step + 1, c.steps, win, window_names[static_cast<size_t>(win)], st.epoch,
                                st.rounds_started, st.experts_moved, v[0], v[1]});
      }
    }
  }

  if (dead) {
    // The survivors still use the transport this rank shares with them: stay
    // silent until they are done, then cut this rank off so that its
    // planner's waits end, and leave.
    if (!c.failure_sync->wait_survivors(std::chrono::minutes(10)))
      return deadline_exceeded_error(str_cat("demo: rank ", q, " (failed): the survivors did not finish"));
    std::vector<RankId> others;
    for (RankId r = 0; r < R; ++r)
      if (r != q) others.push_back(r);
    OMNI_RETURN_IF_ERROR(pm->fail_ranks(others));
    DemoReport rep;
    rep.rank_failed = true;
    return rep;
  }
  if (failing) {
    // Failure figures over the survivors (times relative to the first detection).
    const auto st = pm->stats();
    const int64_t kInf = std::numeric_limits<int64_t>::max();
    auto or_inf = [&](int64_t v) { return v == 0 ? kInf : v; };
    std::vector<int64_t> mins = {or_inf(detected_ns.load())};
    std::vector<int64_t> maxs = {or_inf(detected_ns.load()), or_inf(st.failover_published_ns), or_inf(st.restored_ns),
                                 or_inf(st.redundancy_rebuilt_ns),
                                 static_cast<int64_t>(st.last_failover_seconds * 1e9)};
    std::vector<int64_t> sums = {static_cast<int64_t>(st.restore_load_seconds * 1e9), st.experts_loaded,
                                 fr.tokens_lost_expert, fr.requests_reserved};
    OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(mins), ReduceOp::kMin, c.manager.collective_timeout));
    OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(maxs), ReduceOp::kMax, c.manager.collective_timeout));
    OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(sums), ReduceOp::kSum, c.manager.collective_timeout));
    const int64_t kill = c.failure_sync->kill_ns();
    const int64_t first = mins[0];
    auto ms = [&](int64_t at, int64_t from) { return at == kInf || from == kInf ? -1.0 : (at - from) / 1e6; };
    fr.injected = true;
    fr.failed = c.fail_ranks;
    std::sort(fr.failed.begin(), fr.failed.end());
    fr.declared_failed = pm->failed_ranks();
    fr.fail_at_step = c.fail_at_step;
    fr.backup = backup ? backup->describe() : "none";
    fr.detection_ms = ms(first, kill);
    fr.detection_all_ms = ms(maxs[0], kill);
    fr.failover_ms = ms(maxs[1], first);
    fr.failover_cost_us = static_cast<double>(maxs[4]) / 1e3;
    fr.restore_ms = ms(maxs[2], first);
    fr.redundancy_ms = ms(maxs[3], first);
    fr.experts_lost = st.experts_lost;
    fr.experts_restored = st.experts_restored;
    fr.restore_us_per_expert = sums[1] > 0 ? static_cast<double>(sums[0]) / 1e3 / static_cast<double>(sums[1]) : 0.0;
    fr.tokens_lost_expert = sums[2];
    fr.requests_reserved = sums[3];
  }

  // Sum everything over the ranks.
  OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(dyn_load), ReduceOp::kSum, c.manager.collective_timeout));
  OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(static_load), ReduceOp::kSum, c.manager.collective_timeout));
  OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(counts), ReduceOp::kSum, c.manager.collective_timeout));
  std::vector<int64_t> totals = {checked, wrong, misrouted};
  OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(totals), ReduceOp::kSum, c.manager.collective_timeout));
  std::vector<double> times = {dispatch_s, boundary_s};
  OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<double>(times), ReduceOp::kSum, c.manager.collective_timeout));

  DemoReport rep;
  rep.ranks = R;
  rep.steps = c.steps;
  rep.planner = planner->spec();
  rep.dispatch = per_batch ? "per-batch" : "shares";
  rep.transport = std::string(t.backend());
  rep.manager = pm->stats();
  rep.outputs_checked = totals[0];
  rep.wrong_outputs = totals[1];
  rep.misrouted = totals[2];
  const double per_rank_step = 1e6 / static_cast<double>(R) / static_cast<double>(c.steps);
  rep.dispatch_us_per_step = times[0] * per_rank_step;
  rep.step_boundary_us_per_step = times[1] * per_rank_step;
  rep.engine_us_per_step = rep.dispatch_us_per_step + rep.step_boundary_us_per_step;

  // Figures per window, then per phase (consecutive windows with one name).
  double sum_dyn = 0, sum_static = 0, sum_oracle = 0;
  int32_t used = 0;
  for (int32_t win = 0; win < W; ++win) {
    const size_t wl = static_cast<size_t>(win) * static_cast<size_t>(L);
    int64_t tokens = 0;
    for (size_t i = wl * static_cast<size_t>(E); i < (wl + static_cast<size_t>(L)) * static_cast<size_t>(E); ++i)
      tokens += counts[i];
    if (tokens == 0) continue;  // not reached within c.steps
    double d = 0, s = 0;
    for (LayerId l = 0; l < L; ++l) {
      const size_t at = (wl + static_cast<size_t>(l)) * static_cast<size_t>(R);
      d += max_over_mean(std::span<const int64_t>(dyn_load).subspan(at, static_cast<size_t>(R)));
      s += max_over_mean(std::span<const int64_t>(static_load).subspan(at, static_cast<size_t>(R)));
    }
    d /= L;
    s /= L;
    double o = 0;
    if (q == 0) {
      std::vector<int64_t> wc(counts.begin() + static_cast<std::ptrdiff_t>(wl * static_cast<size_t>(E)),
                              counts.begin() + static_cast<std::ptrdiff_t>((wl + static_cast<size_t>(L)) * static_cast<size_t>(E)));
      OMNI_ASSIGN_OR_RETURN(LoadMatrix load, LoadMatrix::from_counts(L, E, std::move(wc)));
      PlanInput oi = in;
      oi.load = &load;
      OMNI_ASSIGN_OR_RETURN(PlanResult op, planner->plan(oi));
      if (c.manager.dispatch_mode == DispatchMode::kPerBatch) {
        // Priced as the served columns are: the per-batch split of the window's counts.
        for (LayerId l = 0; l < L; ++l) {
          const auto first = counts.begin() + static_cast<std::ptrdiff_t>((wl + static_cast<size_t>(l)) * static_cast<size_t>(E));
          const std::vector<int64_t> totals(first, first + E);
          OMNI_ASSIGN_OR_RETURN(std::vector<int64_t> rl,
                                balance_batch_loads(R, layer_replica_ranks(op.placement, l), totals));
          o += max_over_mean(rl);
        }
        o /= L;
      } else {
        OMNI_ASSIGN_OR_RETURN(auto bal, placement_balance(op.placement, load));
        o = bal.mean_max_over_mean;
      }
    }
    const std::string& name = window_names[static_cast<size_t>(win)];
    if (rep.phases.empty() || rep.phases.back().name != name) rep.phases.push_back(DemoPhase{name, 0, 0, 0, 0});
    DemoPhase& ph = rep.phases.back();
    ++ph.num_windows;
    ph.dynamic += d;
    ph.static_ += s;
    ph.oracle += o;
    sum_dyn += d;
    sum_static += s;
    sum_oracle += o;
    ++used;
  }
  for (auto& ph : rep.phases) {
    ph.dynamic /= ph.num_windows;
    ph.static_ /= ph.num_windows;
    ph.oracle /= ph.num_windows;
  }
  rep.overall = DemoPhase{"all", used, used ? sum_dyn / used : 1.0, used ? sum_static / used : 1.0,
                          used ? sum_oracle / used : 1.0};
  rep.wall_seconds = seconds_since(t_start);
  rep.failure = fr;
  if (failing) c.failure_sync->survivor_done();
  return rep;
}

}  // namespace omni
