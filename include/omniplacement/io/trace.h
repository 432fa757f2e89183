// Routing traces: measured expert loads of real models, in the CSV layouts of
// data/traces (docs/formats.md, "Traces").
//
//   per-domain     model,domain,layer_index,<expert 0>,...        (OLMoE, Mixtral)
//   per-iteration  <row>,dataset,iteration,layer_idx,<expert 0>,... (Qwen1.5-MoE)
//
// A trace holds one LoadMatrix [num_layers, num_experts] per window: per
// (model, domain) or per (dataset, iteration). A selector picks one:
//
//   omni::StatusOr<omni::Trace> t = omni::Trace::read_csv("data/traces/qwen15moe_expert_freq_by_iteration.csv");
//   auto sel = omni::TraceSelector::parse("dataset=wikitext,iteration=3");
//   omni::StatusOr<omni::LoadMatrix> w = t->select(*sel);                  // 12 x 60 counts
//   // The time series other modules replay: 60 windows, bookcorpus 0..19, then wikitext, then wmt19.
//   auto series = t->windows({"bookcorpus", "wikitext", "wmt19"});
//
// Thread safety: a Trace is an immutable value; const methods may run concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/status.h"

namespace omni {

// Limits of the trace reader (docs/formats.md, "Limits"). Beside them the
// core limits hold: at most kMaxExperts expert columns and kMaxLayers layers.
inline constexpr int32_t kMaxTraceWindows = 1 << 16;          // distinct windows in one file
inline constexpr int64_t kMaxTraceIteration = 1'000'000'000;  // per-iteration traces
inline constexpr size_t kMaxTraceNameBytes = 256;             // a model, domain or dataset name

enum class TraceLayout {
  kPerDomain,     // model,domain,layer_index,...
  kPerIteration,  // <row>,dataset,iteration,layer_idx,...
};

// Which window to take. Empty fields and iteration -1 match anything; a
// selection must match exactly one window.
struct TraceSelector {
  std::string model;    // per-domain traces
  std::string domain;   // per-domain traces
  std::string dataset;  // per-iteration traces
  int32_t iteration = -1;

  // "key=value[,key=value...]" with keys model, domain, dataset, iteration.
  static StatusOr<TraceSelector> parse(std::string_view spec);
  std::string to_string() const;  // the same syntax
  bool empty() const { return model.empty() && domain.empty() && dataset.empty() && iteration < 0; }
};

// One window of a trace.
struct TraceWindow {
  std::string model;     // per-domain; empty for per-iteration traces
  std::string group;     // the domain or the dataset
  int32_t iteration = -1;  // per-iteration traces; -1 otherwise
  LoadMatrix load;       // [num_layers, num_experts]

  std::string label() const;  // "olmoe/arxiv" or "wikitext#3"
};

class Trace {
 public:
  // True when the first line of `text` is the header of a trace layout.
  static bool looks_like_trace(std::string_view text);
  static StatusOr<Trace> parse_csv(std::string_view text, std::string_view name = "<trace>");
  static StatusOr<Trace> read_csv(const std::string& path);

  TraceLayout layout() const { return layout_; }
  int32_t num_layers() const { return num_layers_; }
  int32_t num_experts() const { return num_experts_; }
  // Windows in file order of their first row.
  const std::vector<TraceWindow>& windows() const { return windows_; }

  // The one window matching `selector` (error listing what is available otherwise).
  StatusOr<LoadMatrix> select(const TraceSelector& selector) const;
  // Per-iteration traces: for each dataset in `datasets` in the given order, its
  // iterations first_iteration..last_iteration (inclusive; -1 = its last) in
  // ascending order. Every requested (dataset, iteration) must exist.
  StatusOr<std::vector<TraceWindow>> windows(const std::vector<std::string>& datasets, int32_t first_iteration = 0,
                                             int32_t last_iteration = -1) const;

 private:
  friend struct TraceParser;  // trace.cc: fills a Trace while streaming the file
  TraceLayout layout_ = TraceLayout::kPerDomain;
  int32_t num_layers_ = 0;
  int32_t num_experts_ = 0;
  std::vector<TraceWindow> windows_;
};

}  // namespace omni
