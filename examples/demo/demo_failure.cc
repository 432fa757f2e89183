#include "demo/demo_failure.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>

#include "demo/survivor_collective.h"
#include "omniplacement/core/str_cat.h"

namespace omni {

Status check_failure_injection(std::span<const RankId> fail_ranks, int64_t fail_at_step, int64_t steps,
                               const std::string& backup, int32_t num_ranks) {
  if (fail_at_step < 0 || fail_at_step >= steps)
    return invalid_argument_error(str_cat("demo: fail_at_step ", fail_at_step, " outside [0, ", steps, ")"));
  std::vector<RankId> f(fail_ranks.begin(), fail_ranks.end());
  std::sort(f.begin(), f.end());
  if (f.empty() || f.front() < 0 || f.back() >= num_ranks || std::adjacent_find(f.begin(), f.end()) != f.end() ||
      static_cast<int32_t>(f.size()) >= num_ranks)
    return invalid_argument_error(str_cat("demo: ranks to fail must be distinct, in [0, ", num_ranks,
                                          "), and leave a survivor (", f.size(), " given)"));
  if (backup != "host" && backup != "safetensors" && backup != "none")
    return invalid_argument_error(str_cat("demo: backup '", backup, "': use host, safetensors or none"));
  return ok_status();
}

Status check_stall_injection(RankId stall_rank, int64_t stall_at_step, std::chrono::milliseconds stall_ms,
                             int64_t steps, std::span<const RankId> fail_ranks, int32_t num_ranks) {
  if (stall_rank < 0 || stall_rank >= num_ranks)
    return invalid_argument_error(str_cat("demo: stall rank ", stall_rank, " outside [0, ", num_ranks, ")"));
  if (std::find(fail_ranks.begin(), fail_ranks.end(), stall_rank) != fail_ranks.end())
    return invalid_argument_error(str_cat("demo: rank ", stall_rank, " cannot both crash and stall"));
  if (static_cast<int32_t>(fail_ranks.size()) + 1 >= num_ranks)
    return invalid_argument_error(str_cat("demo: ", fail_ranks.size(), " crashed and 1 stalled rank of ", num_ranks,
                                          " leave no survivor"));
  if (stall_at_step < 0 || stall_at_step >= steps)
    return invalid_argument_error(str_cat("demo: stall_at_step ", stall_at_step, " outside [0, ", steps, ")"));
  if (stall_ms.count() <= 0)
    return invalid_argument_error(str_cat("demo: stall_ms ", stall_ms.count(), ": the stall must last > 0 ms"));
  return ok_status();
}

StatusOr<std::unique_ptr<DemoBackups>> DemoBackups::create(const std::string& kind, const ToyMoE& model,
                                                           int32_t num_ranks) {
  if (kind != "host" && kind != "safetensors" && kind != "none")
    return invalid_argument_error(str_cat("demo: backup '", kind, "': use host, safetensors or none"));
  std::unique_ptr<DemoBackups> out(new DemoBackups());
  const int32_t L = model.config().num_layers, E = model.config().num_experts;
  const std::vector<int64_t> expert_bytes(static_cast<size_t>(L), model.expert_bytes());
  auto fill = [&](LayerId l, ExpertId e, std::span<std::byte> o) { return model.expert_weights(l, e, o); };
  for (RankId q = 0; q < num_ranks; ++q) {
    if (kind == "host") {
      OMNI_ASSIGN_OR_RETURN(auto mem, HostMemoryBackup::create(expert_bytes, E));
      std::vector<std::byte> buf(static_cast<size_t>(model.expert_bytes()));
      for (LayerId l = 0; l < L; ++l)
        for (ExpertId e = 0; e < E; ++e) {
          OMNI_RETURN_IF_ERROR(fill(l, e, buf));
          OMNI_RETURN_IF_ERROR(mem->set(l, e, buf));
        }
      out->sources_.push_back(std::move(mem));
    } else if (kind == "safetensors") {
      const std::string path = (std::filesystem::temp_directory_path() /
                                str_cat("omniplace_demo_", ::getpid(), "_rank", q, ".safetensors"))
                                   .string();
      out->files_.push_back(path);  // removed by the destructor, even when writing fails half way
      OMNI_RETURN_IF_ERROR(write_expert_checkpoint(path, expert_bytes, E, fill));
      OMNI_ASSIGN_OR_RETURN(auto file, SafetensorsBackup::open(path, L, E));
      out->sources_.push_back(std::move(file));
    } else {
      out->sources_.push_back(nullptr);
    }
  }
  return out;
}

DemoBackups::~DemoBackups() {
  sources_.clear();  // close the files before removing them
  for (const std::string& path : files_) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
}

std::vector<const BackupSource*> DemoBackups::sources() const {
  std::vector<const BackupSource*> out;
  for (const auto& s : sources_) out.push_back(s.get());
  return out;
}

StatusOr<DemoFailure> gather_failure_figures(Transport& t, const PlacementManager& pm,
                                             const SurvivorFailureView& view, Timeout timeout) {
  // Times relative to the first detection (over the survivors).
  const auto st = pm.stats();
  const int64_t kInf = std::numeric_limits<int64_t>::max();
  auto or_inf = [&](int64_t v) { return v == 0 ? kInf : v; };
  std::vector<int64_t> mins = {or_inf(view.detected_ns)};
  std::vector<int64_t> maxs = {or_inf(view.detected_ns), or_inf(st.failover_published_ns), or_inf(st.restored_ns),
                               or_inf(st.redundancy_rebuilt_ns),
                               static_cast<int64_t>(st.last_failover_seconds * 1e9)};
  std::vector<int64_t> sums = {static_cast<int64_t>(st.restore_load_seconds * 1e9), st.experts_loaded,
                               view.tokens_lost_expert, view.requests_reserved};
  OMNI_RETURN_IF_ERROR(all_reduce_among_survivors(t, std::span<int64_t>(mins), ReduceOp::kMin, timeout, true));
  OMNI_RETURN_IF_ERROR(all_reduce_among_survivors(t, std::span<int64_t>(maxs), ReduceOp::kMax, timeout, true));
  OMNI_RETURN_IF_ERROR(all_reduce_among_survivors(t, std::span<int64_t>(sums), ReduceOp::kSum, timeout, true));
  const int64_t kill = view.kill_ns;
  const int64_t first = mins[0];
  auto ms = [&](int64_t at, int64_t from) { return at == kInf || from == kInf ? -1.0 : (at - from) / 1e6; };
  DemoFailure fr;
  fr.injected = true;
  fr.failed = view.failed;
  std::sort(fr.failed.begin(), fr.failed.end());
  fr.declared_failed = pm.failed_ranks();
  fr.fail_at_step = view.fail_at_step;
  fr.stall_rank = view.stall_rank;
  fr.stall_ms = view.stall_ms;
  fr.backup = view.backup ? view.backup->describe() : "none";
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
  return fr;
}

}  // namespace omni
