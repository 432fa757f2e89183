// TraceSource: a sequence of per-step expert loads that the simulator replays.
//
// A step's load is a LoadMatrix [num_layers, num_experts] of the tokens routed
// to each expert in that step. Sources:
//   WindowTrace     windows held in memory (from any load file read by io, an
//                   activation dump, or a generator), each holding the tokens
//                   of steps_per_window steps and replayed as that many steps
//                   of window / steps_per_window tokens each;
//   SyntheticTrace  a SyntheticWorkload streamed step by step (no memory for
//                   the whole trace: 10,000 steps x 58 x 256 would be 1.2 GB).
//
//   std::vector<omni::LoadMatrix> windows = ...;    // one per window
//   auto trace = omni::sim::WindowTrace::create(std::move(windows), /*steps_per_window=*/1);
//   omni::LoadMatrix load;
//   while (*trace->next(&load)) { ... }
//
// Thread safety: a source is used by one thread at a time.
#pragma once

#include <cstdint>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/status.h"
#include "omniplacement/sim/workload.h"

namespace omni::sim {

class TraceSource {
 public:
  virtual ~TraceSource() = default;
  virtual int32_t num_layers() const = 0;
  virtual int32_t num_experts() const = 0;
  // Total steps the source yields.
  virtual int64_t num_steps() const = 0;
  // Writes the next step's load into *out and returns true, or returns false
  // (leaving *out alone) when the trace is over.
  virtual StatusOr<bool> next(LoadMatrix* out) = 0;
};

class WindowTrace final : public TraceSource {
 public:
  // windows: at least one, all of the same shape, each the tokens of
  // steps_per_window >= 1 steps.
  static StatusOr<WindowTrace> create(std::vector<LoadMatrix> windows, int64_t steps_per_window = 1);

  int32_t num_layers() const override { return windows_.front().num_layers(); }
  int32_t num_experts() const override { return windows_.front().num_experts(); }
  int64_t num_steps() const override {
    return static_cast<int64_t>(windows_.size()) * steps_per_window_;
  }
  StatusOr<bool> next(LoadMatrix* out) override;
  // The per-step load of each window (window / steps_per_window).
  const std::vector<LoadMatrix>& windows() const { return windows_; }

 private:
  std::vector<LoadMatrix> windows_;
  int64_t steps_per_window_ = 1;
  int64_t step_ = 0;
};

class SyntheticTrace final : public TraceSource {
 public:
  // num_steps >= 1.
  static StatusOr<SyntheticTrace> create(const WorkloadParams& params, int64_t num_steps);

  int32_t num_layers() const override { return workload_.params().num_layers; }
  int32_t num_experts() const override { return workload_.params().num_experts; }
  int64_t num_steps() const override { return num_steps_; }
  StatusOr<bool> next(LoadMatrix* out) override;

 private:
  SyntheticWorkload workload_;
  int64_t num_steps_ = 0;
};

}  // namespace omni::sim
