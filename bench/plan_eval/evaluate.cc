#include "plan_eval/evaluate.h"

#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>

#include "omniplacement/core/metrics.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/planner/migration_plan.h"
#include "omniplacement/planner/planner.h"
#include "omniplacement/dispatch/batch_split.h"

namespace omni::plan_eval {

const char* dispatch_name(Dispatch d) { return d == Dispatch::kShares ? "shares" : "per-batch"; }

namespace {

double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

struct Served {
  double mean_max_over_mean = 0;  // mean over layers
  double sum_max = 0;
  double sum_mean = 0;
};

// Window t of w served by placement p under dispatch d.
StatusOr<Served> serve(const Placement& p, const EvalWorkload& w, size_t t, Dispatch d) {
  const LoadMatrix& window = w.windows[t];
  const int32_t L = window.num_layers(), E = window.num_experts(), R = p.num_ranks();
  Served out;
  int32_t layers = 0;
  std::vector<int64_t> totals(static_cast<size_t>(E));
  std::vector<double> rank(static_cast<size_t>(R));
  for (LayerId l = 0; l < L; ++l) {
    const double total = window.layer_total(l);
    if (total <= 0) continue;
    if (d == Dispatch::kShares) {
      OMNI_ASSIGN_OR_RETURN(rank, rank_loads(p, window, l));
    } else {
      std::fill(rank.begin(), rank.end(), 0.0);
      const auto ranks_of = layer_replica_ranks(p, l);
      auto add_step = [&](auto&& count_of) -> Status {
        for (ExpertId e = 0; e < E; ++e) totals[static_cast<size_t>(e)] = count_of(e);
        OMNI_ASSIGN_OR_RETURN(std::vector<int64_t> loads, balance_batch_loads(R, ranks_of, totals));
        for (RankId r = 0; r < R; ++r) rank[static_cast<size_t>(r)] += static_cast<double>(loads[static_cast<size_t>(r)]);
        return ok_status();
      };
      if (w.steps.empty()) {
        const auto row = window.row(l);
        OMNI_RETURN_IF_ERROR(add_step([&](ExpertId e) { return static_cast<int64_t>(row[static_cast<size_t>(e)]); }));
      } else {
        for (const StepCounts& s : w.steps[t]) {
          const int32_t* row = s.data() + static_cast<size_t>(l) * static_cast<size_t>(E);
          OMNI_RETURN_IF_ERROR(add_step([&](ExpertId e) { return static_cast<int64_t>(row[e]); }));
        }
      }
    }
    const double mean = total / R;
    const double mx = *std::max_element(rank.begin(), rank.end());
    out.mean_max_over_mean += mx / mean;
    out.sum_max += mx;
    out.sum_mean += mean;
    ++layers;
  }
  if (layers > 0) out.mean_max_over_mean /= layers;
  return out;
}

// Slots of `next` holding an expert that `cur` does not hold there (weights to move).
int64_t slots_changed(const Placement& cur, const Placement& next) {
  int64_t n = 0;
  for (LayerId l = 0; l < next.num_layers(); ++l) {
    const auto a = cur.phy2log(l), b = next.phy2log(l);
    for (size_t g = 0; g < b.size(); ++g) n += b[g] != kEmptySlot && (g >= a.size() || a[g] != b[g]);
  }
  return n;
}

struct Policy {
  std::string mode;  // scratch, inc, oracle
  std::string spec;
};

StatusOr<Policy> parse_policy(const std::string& s) {
  const size_t colon = s.find(':');
  if (colon == std::string::npos) return invalid_argument_error(str_cat("plan_eval: policy '", s, "' is not <mode>:<spec>"));
  Policy p{s.substr(0, colon), s.substr(colon + 1)};
  if (p.mode != "scratch" && p.mode != "inc" && p.mode != "oracle" && p.mode.rfind("mean", 0) != 0)
    return invalid_argument_error(str_cat("plan_eval: policy '", s, "': mode must be scratch, inc, meanK or oracle"));
  return p;
}

}  // namespace

StatusOr<std::vector<PolicyFigures>> evaluate(const EvalWorkload& w, const EvalOptions& options) {
  const size_t T = w.windows.size();
  if (T < 3) return invalid_argument_error(str_cat("plan_eval: workload ", w.name, " has ", T, " windows, need 3"));
  OMNI_ASSIGN_OR_RETURN(Topology topo, Topology::uniform(w.num_ranks, w.ranks_per_host));
  PlanInput base;
  base.num_ranks = w.num_ranks;
  base.slots_per_rank = {w.slots_per_rank};
  base.topology = &topo;
  base.num_groups = w.num_groups;
  // The common start: options.start (eplb by default) on window 0.
  OMNI_ASSIGN_OR_RETURN(auto eplb, make_planner(options.start));
  PlanInput first = base;
  first.load = &w.windows[0];
  OMNI_ASSIGN_OR_RETURN(PlanResult start, eplb->plan(first));

  std::vector<PolicyFigures> out;
  for (Dispatch d : options.dispatch) {
    for (const std::string& name : options.policies) {
      PolicyFigures f;
      f.policy = name;
      f.dispatch = d;
      auto run = [&]() -> Status {
        OMNI_ASSIGN_OR_RETURN(Policy pol, parse_policy(name));
        OMNI_ASSIGN_OR_RETURN(auto planner, make_planner(pol.spec));
        Placement current = start.placement;
        double sum_max = 0, sum_mean = 0, fitted = 0, cpu = 0;
        for (size_t t = 0; t + 1 < T; ++t) {
          PlanInput in = base;
          in.serving = w.serving;
          in.serving.dispatch = d == Dispatch::kShares ? DispatchMode::kShares : DispatchMode::kPerBatch;
          if (options.expert_bytes >= 0) in.serving.expert_bytes = options.expert_bytes;
          if (options.seconds_per_token > 0) in.serving.seconds_per_token = options.seconds_per_token;
          if (options.interval_windows > 0)
            in.serving.interval_steps =
                static_cast<int64_t>(options.interval_windows * static_cast<double>(in.serving.window_steps));
          std::vector<LoadMatrix> samples;
          const size_t plan_on = pol.mode == "oracle" ? t + 1 : t;
          in.load = &w.windows[plan_on];
          if (pol.mode == "inc") {
            const size_t from = t + 1 >= static_cast<size_t>(options.history) ? t + 1 - static_cast<size_t>(options.history) : 0;
            samples.assign(w.windows.begin() + static_cast<std::ptrdiff_t>(from),
                           w.windows.begin() + static_cast<std::ptrdiff_t>(t + 1));
            in.samples = &samples;
            in.current = &current;
          }
          LoadMatrix mean;
          if (pol.mode.rfind("mean", 0) == 0) {
            // meanK: from scratch on the sum of the last K windows (a smoothed input).
            const size_t k = static_cast<size_t>(std::stoi(pol.mode.substr(4)));
            mean = w.windows[t];
            for (size_t j = 1; j < k && j <= t; ++j) OMNI_RETURN_IF_ERROR(mean.add(w.windows[t - j]));
            in.load = &mean;
          }
          const double c0 = thread_cpu_ms();
          StatusOr<PlanResult> r = planner->plan(in);
          const double c1 = thread_cpu_ms();
          if (!r.ok()) return r.status().with_context(str_cat("re-plan after window ", t));
          cpu += c1 - c0;
          f.cpu_ms_max = std::max(f.cpu_ms_max, c1 - c0);
          if (pol.mode != "oracle") f.moves += slots_changed(current, r->placement);
          if (in.serving.expert_bytes >= 1) {
            MigrationOptions mo;
            mo.expert_bytes = static_cast<int64_t>(in.serving.expert_bytes);
            OMNI_ASSIGN_OR_RETURN(MigrationPlan mig, diff(current, r->placement, topo, mo));
            f.migration_s += mig.total_seconds;
            f.transfers_same_host += mig.transfers_by_link[static_cast<size_t>(LinkClass::kSameHost)];
            f.transfers_cross_host += mig.transfers_by_link[static_cast<size_t>(LinkClass::kCrossHost)];
            std::vector<double> receive(static_cast<size_t>(w.num_ranks), 0.0);
            for (const MigrationRound& round : mig.rounds)
              for (const Transfer& x : round.transfers)
                receive[static_cast<size_t>(x.dst_rank)] +=
                    topo.transfer_seconds(x.src_rank, x.dst_rank, static_cast<double>(x.bytes));
            double sum = 0;
            for (double v : receive) sum += v;
            f.receive_busiest_s += *std::max_element(receive.begin(), receive.end());
            f.receive_mean_s += sum / static_cast<double>(w.num_ranks);
          }
          current = std::move(r->placement);
          OMNI_ASSIGN_OR_RETURN(Served fit, serve(current, w, plan_on, Dispatch::kShares));
          OMNI_ASSIGN_OR_RETURN(Served next, serve(current, w, t + 1, d));
          fitted += fit.mean_max_over_mean;
          if (getenv("PLAN_EVAL_TRACE") != nullptr)
            std::fprintf(stderr, "%s %s t=%zu next=%.4f moves=%lld\n", name.c_str(), dispatch_name(d), t,
                         next.mean_max_over_mean, static_cast<long long>(f.moves));
          f.realised += next.mean_max_over_mean;
          f.compute_s += next.sum_max * in.serving.seconds_per_token;
          sum_max += next.sum_max;
          sum_mean += next.sum_mean;
          ++f.replans;
        }
        f.realised /= f.replans;
        f.fitted = fitted / f.replans;
        f.realised_sum = sum_mean > 0 ? sum_max / sum_mean : 1.0;
        f.cpu_ms_mean = cpu / f.replans;
        return ok_status();
      };
      if (Status s = run(); !s.ok()) f.error = s.to_string();
      out.push_back(std::move(f));
    }
  }
  return out;
}

std::string figures_table(const EvalWorkload& w, const std::vector<PolicyFigures>& figures) {
  std::ostringstream os;
  os << "== " << w.name << ": " << w.description << "\n";
  std::map<int, const PolicyFigures*> eplb;  // per dispatch
  for (const PolicyFigures& f : figures)
    if (f.policy == "scratch:eplb" && f.error.empty()) eplb[static_cast<int>(f.dispatch)] = &f;
  Dispatch last = figures.empty() ? Dispatch::kShares : figures.front().dispatch;
  bool header = true;
  for (const PolicyFigures& f : figures) {
    if (header || f.dispatch != last) {
      char line[256];
      std::snprintf(line, sizeof line, "  dispatch %-9s %-58s %9s %9s %8s %9s %7s %9s %9s %9s %8s\n", dispatch_name(f.dispatch),
                    "policy", "realised", "vs eplb", "fitted", "moves", "of eplb", "cpu ms", "cpu max", "time s", "vs eplb");
      os << line;
      header = false;
      last = f.dispatch;
    }
    char line[512];
    if (!f.error.empty()) {
      std::snprintf(line, sizeof line, "  %-18s %-58s error: %s\n", "", f.policy.c_str(), f.error.c_str());
      os << line;
      continue;
    }
    const auto it = eplb.find(static_cast<int>(f.dispatch));
    const PolicyFigures* e = it == eplb.end() ? nullptr : it->second;
    const bool oracle = f.policy.rfind("oracle:", 0) == 0;
    const double time_s = f.compute_s + f.migration_s;
    const double eplb_s = e ? e->compute_s + e->migration_s : 0.0;
    std::snprintf(line, sizeof line, "  %-18s %-58s %9.4f %+9.4f %8.4f %9lld %6.1f%% %9.2f %9.2f %9.4f %+7.1f%%\n", "",
                  f.policy.c_str(), f.realised, e ? f.realised - e->realised : 0.0, f.fitted,
                  static_cast<long long>(oracle ? 0 : f.moves),
                  e && e->moves > 0 && !oracle ? 100.0 * static_cast<double>(f.moves) / static_cast<double>(e->moves) : 0.0,
                  f.cpu_ms_mean, f.cpu_ms_max, time_s, eplb_s > 0 ? 100.0 * (time_s / eplb_s - 1.0) : 0.0);
    os << line;
  }
  return os.str();
}

std::string figures_json(const EvalWorkload& w, const std::vector<PolicyFigures>& figures) {
  std::ostringstream os;
  for (const PolicyFigures& f : figures) {
    char line[2048];
    std::snprintf(line, sizeof line,
                  "{\"workload\": \"%s\", \"held_out\": %s, \"dispatch\": \"%s\", \"policy\": \"%s\", \"realised\": %.6f, "
                  "\"realised_sum\": %.6f, \"fitted\": %.6f, \"moves\": %lld, \"replans\": %d, \"cpu_ms_mean\": %.4f, "
                  "\"cpu_ms_max\": %.4f, \"compute_s\": %.6f, \"migration_s\": %.6f, \"transfers_same_host\": %lld, "
                  "\"transfers_cross_host\": %lld, \"receive_busiest_s\": %.6f, \"receive_mean_s\": %.6f, \"error\": \"%s\"}\n",
                  w.name.c_str(), w.held_out ? "true" : "false", dispatch_name(f.dispatch), f.policy.c_str(), f.realised,
                  f.realised_sum, f.fitted, static_cast<long long>(f.moves), f.replans, f.cpu_ms_mean, f.cpu_ms_max,
                  f.compute_s, f.migration_s, static_cast<long long>(f.transfers_same_host),
                  static_cast<long long>(f.transfers_cross_host), f.receive_busiest_s, f.receive_mean_s, f.error.c_str());
    os << line;
  }
  return os.str();
}

}  // namespace omni::plan_eval
