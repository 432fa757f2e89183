// Failure injection of the demo: the checks of a crash request, the backup
// sources lost experts are restored from, and the survivors' failure figures.
// The crash itself and the heartbeats are LocalCluster's (kill(), options
// heartbeats); the serving loop re-serves what died with a rank.
//
//   OMNI_RETURN_IF_ERROR(omni::check_failure_injection({5}, /*fail_at_step=*/300, /*steps=*/600, "host", 12));
//   auto backups = omni::DemoBackups::create("safetensors", model, 12);   // one checkpoint per rank
//   cluster_options.backups = (*backups)->sources();
//   ...after serving, on every survivor (collective):
//   auto f = omni::gather_failure_figures(t, pm, in);
//
// Thread safety: DemoBackups is immutable after create (its sources are read
// by every rank's planner thread); gather_failure_figures is called by one
// rank's engine thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "demo/toy_moe.h"
#include "omniplacement/core/status.h"
#include "omniplacement/runtime/backup_source.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/transport/transport.h"

namespace omni {

// What a failure did (survivors' view; times from std::chrono::steady_clock,
// -1 when the phase was not reached before the run ended).
struct DemoFailure {
  bool injected = false;
  std::vector<RankId> failed;           // the ranks made to crash or stall
  std::vector<RankId> declared_failed;  // what the survivors' detectors declared (more: false positives)
  int64_t fail_at_step = -1;       // the first crash or stall
  RankId stall_rank = -1;          // the rank made to stall (-1: none)
  int64_t stall_ms = 0;
  std::string backup;
  double detection_ms = -1;       // crash (or start of the stall) to the first survivor's detector declaring it failed
  double detection_all_ms = -1;   // crash to the last survivor declaring it
  double failover_ms = -1;        // first detection to every survivor routing on the map without it
  double failover_cost_us = 0;    // fail_ranks() on one survivor (the slowest): new map built and published
  int64_t experts_lost = 0;       // (layer, expert) pairs with no surviving replica
  int64_t experts_restored = 0;   // reloaded from the backup
  double restore_ms = -1;         // first detection to no expert lost on every survivor
  double restore_us_per_expert = 0;  // backup read into staging, mean per expert
  double redundancy_ms = -1;      // first detection to the survivors' rebuild round ended everywhere
  int64_t tokens_lost_expert = 0; // tokens of lost experts (kLostExpertSlot: reported, not served)
  int64_t requests_reserved = 0;  // requests that died with a rank, served again on the new map
};

// OK when ranks fail_ranks (distinct, in [0, num_ranks), at least one rank
// left) may crash before step fail_at_step (in [0, steps)) of a run of
// `steps` steps, with `backup` one of host, safetensors, none; otherwise
// INVALID_ARGUMENT saying which and what would be valid.
Status check_failure_injection(std::span<const RankId> fail_ranks, int64_t fail_at_step, int64_t steps,
                               const std::string& backup, int32_t num_ranks);

// OK when rank stall_rank (in [0, num_ranks), not one of fail_ranks, leaving a
// survivor) may stop for stall_ms (> 0) before step stall_at_step (in
// [0, steps)); otherwise INVALID_ARGUMENT saying which and what would be valid.
Status check_stall_injection(RankId stall_rank, int64_t stall_at_step, std::chrono::milliseconds stall_ms,
                             int64_t steps, std::span<const RankId> fail_ranks, int32_t num_ranks);

// One backup source per rank, as each rank's host keeps its own: "host", a
// host-memory copy of every expert of `model`; "safetensors", a checkpoint
// file per rank in the temp directory (removed when this object is
// destroyed); "none", no source (lost experts stay lost).
class DemoBackups {
 public:
  static StatusOr<std::unique_ptr<DemoBackups>> create(const std::string& kind, const ToyMoE& model,
                                                       int32_t num_ranks);
  ~DemoBackups();
  DemoBackups(const DemoBackups&) = delete;
  DemoBackups& operator=(const DemoBackups&) = delete;

  // [num_ranks]; null entries for "none". Valid while this object lives.
  std::vector<const BackupSource*> sources() const;
  // The checkpoint files written ("safetensors"; empty otherwise).
  const std::vector<std::string>& files() const { return files_; }

 private:
  DemoBackups() = default;
  std::vector<std::unique_ptr<BackupSource>> sources_;
  std::vector<std::string> files_;
};

// What one survivor knows of the failure, for gather_failure_figures.
struct SurvivorFailureView {
  std::vector<RankId> failed;       // the ranks made to crash or stall
  int64_t fail_at_step = -1;        // the first crash or stall
  RankId stall_rank = -1;
  int64_t stall_ms = 0;
  const BackupSource* backup = nullptr;  // this rank's (null: none)
  int64_t kill_ns = 0;              // steady-clock ns of the first crash or stall (0: none)
  int64_t detected_ns = 0;          // steady-clock ns of this rank's first detection (0: none)
  int64_t tokens_lost_expert = 0;   // this rank's
  int64_t requests_reserved = 0;    // this rank's
};

// The failure figures over the survivors (collective among the ranks live on
// the transport: each contributes its manager's failure phases; times are
// measured from the crash and from the first detection).
StatusOr<DemoFailure> gather_failure_figures(Transport& transport, const PlacementManager& manager,
                                             const SurvivorFailureView& view, Timeout timeout);

}  // namespace omni
