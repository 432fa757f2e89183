// libFuzzer target: the trace CSV reader on its own (fuzz_loads also reaches it,
// for a third of its inputs). A trace that parses has windows of its stated
// shape, and a selector naming a window's keys picks exactly that window.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "omniplacement/io/trace.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto t = omni::Trace::parse_csv(text, "fuzz.csv");
  if (!t.ok()) return 0;
  OMNI_FUZZ_REQUIRE(!t->windows().empty());
  OMNI_FUZZ_REQUIRE(t->windows().size() <= static_cast<size_t>(omni::kMaxTraceWindows));
  for (const omni::TraceWindow& w : t->windows()) {
    OMNI_FUZZ_REQUIRE(w.load.num_layers() == t->num_layers() && w.load.num_experts() == t->num_experts());
    for (omni::LayerId l = 0; l < w.load.num_layers(); ++l) {
      OMNI_FUZZ_REQUIRE(w.load.layer_total(l) <= static_cast<double>(omni::kMaxLayerLoad));
    }
  }
  // Select the first window by its own keys, which identify it. Skipped when a
  // name cannot be written in a selector (empty, or holding '=' or blanks).
  const omni::TraceWindow& w = t->windows().front();
  const bool per_iteration = t->layout() == omni::TraceLayout::kPerIteration;
  if (w.group.find_first_of("= \t") != std::string::npos || w.model.find_first_of("= \t") != std::string::npos ||
      (!per_iteration && w.model.empty())) {
    return 0;
  }
  const std::string spec = per_iteration ? "dataset=" + w.group + ",iteration=" + std::to_string(w.iteration)
                                         : "model=" + w.model + ",domain=" + w.group;
  auto sel = omni::TraceSelector::parse(spec);
  OMNI_FUZZ_REQUIRE(sel.ok());
  auto m = t->select(*sel);
  OMNI_FUZZ_REQUIRE(m.ok() && *m == w.load);
  return 0;
}
