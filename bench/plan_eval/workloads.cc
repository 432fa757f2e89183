#include "plan_eval/workloads.h"

#include <string>

#include "omniplacement/io/trace.h"

namespace omni::plan_eval {

StatusOr<std::vector<LoadMatrix>> qwen_trace_windows() {
  OMNI_ASSIGN_OR_RETURN(Trace trace,
                        Trace::read_csv(std::string(OMNI_SOURCE_DIR) + "/data/traces/qwen15moe_expert_freq_by_iteration.csv"));
  OMNI_ASSIGN_OR_RETURN(auto windows, trace.windows({"bookcorpus", "wikitext", "wmt19"}, 0, 19));
  std::vector<LoadMatrix> out;
  for (auto& w : windows) out.push_back(std::move(w.load));
  return out;
}

}  // namespace omni::plan_eval
