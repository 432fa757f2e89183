// PlannerSpec: the parsed form of a planner spec string such as
// "eplb", "eplb(hierarchical)" or "omni(max_replicas_per_expert=8,time_budget_ms=5)".
//
// Grammar (whitespace around tokens is ignored):
//   spec  := name | name "(" [item ("," item)*] ")"
//   item  := key "=" value | flag
//   name, key, flag := [a-z_][a-z0-9_]*      value := any characters but "," "(" ")"
// Flags are positional words ("hierarchical"); keys appear at most once.
//
//   auto s = omni::PlannerSpec::parse("omni(max_replicas_per_expert=8, shares=true)");
//   s->name;                          // "omni"
//   s->params[0].key;                 // "max_replicas_per_expert"
//   s->to_string();                   // "omni(max_replicas_per_expert=8,shares=true)"
//
// Planners read their parameters through SpecReader, which reports unknown
// keys, malformed numbers and out-of-range values as INVALID_ARGUMENT errors
// that list what would be valid.
//
// Thread safety: value types and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "omniplacement/core/status.h"

namespace omni {

struct SpecParam {
  std::string key;    // empty for a flag
  std::string value;  // the flag word for a flag
};

struct PlannerSpec {
  std::string name;
  std::vector<SpecParam> params;  // in the order written

  static StatusOr<PlannerSpec> parse(std::string_view text);
  // "name" or "name(p1,p2,...)" with no spaces.
  std::string to_string() const;
};

// Typed, checked access to a spec's parameters. Each get_* marks the key as
// used; finish() fails when a key or flag was not recognised by the planner,
// listing the valid ones.
class SpecReader {
 public:
  explicit SpecReader(const PlannerSpec& spec) : spec_(spec), used_(spec.params.size(), false) {}

  // Integer in [min_value, max_value]; `def` when absent.
  StatusOr<int64_t> get_int(std::string_view key, int64_t def, int64_t min_value, int64_t max_value);
  // Finite double in [min_value, max_value]; `def` when absent.
  StatusOr<double> get_double(std::string_view key, double def, double min_value, double max_value);
  // "true"/"false"/"1"/"0"; `def` when absent.
  StatusOr<bool> get_bool(std::string_view key, bool def);
  // One of `choices`; `def` when absent.
  StatusOr<std::string> get_choice(std::string_view key, std::string_view def,
                                   const std::vector<std::string>& choices);
  // The first flag among `choices` (at most one may be given); `def` when none.
  StatusOr<std::string> get_flag(std::string_view def, const std::vector<std::string>& choices);

  // OK when every parameter was read. `valid` describes the accepted
  // parameters for the error message, e.g. "max_replicas_per_expert=<int>, ...".
  Status finish(std::string_view valid) const;

 private:
  const SpecParam* find(std::string_view key);
  Status bad(std::string_view key, std::string_view value, std::string_view expected) const;

  const PlannerSpec& spec_;
  std::vector<bool> used_;
};

}  // namespace omni
