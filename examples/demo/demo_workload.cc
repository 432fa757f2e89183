#include "demo/demo_workload.h"

#include "omniplacement/io/trace.h"

namespace omni {

StatusOr<DemoWorkload> trace_workload(const std::string& trace_path, const std::vector<std::string>& datasets,
                                      int64_t steps_per_window, int32_t tokens_per_rank, int32_t top_k, uint64_t seed,
                                      int32_t first_iteration, int32_t last_iteration) {
  OMNI_ASSIGN_OR_RETURN(Trace trace, Trace::read_csv(trace_path));
  OMNI_ASSIGN_OR_RETURN(auto windows, trace.windows(datasets, first_iteration, last_iteration));
  std::vector<LoadMatrix> loads;
  DemoWorkload out;
  for (const auto& w : windows) {
    loads.push_back(w.load);
    out.window_names.push_back(w.group);
  }
  OMNI_ASSIGN_OR_RETURN(out.routing,
                        RoutingWorkload::create(std::move(loads), steps_per_window, tokens_per_rank, top_k, seed));
  return out;
}

}  // namespace omni
