#include "omniplacement/dispatch/dispatch_mode.h"

#include <string>

#include "omniplacement/core/str_cat.h"

namespace omni {

const char* dispatch_mode_name(DispatchMode mode) {
  return mode == DispatchMode::kPerBatch ? "per-batch" : "shares";
}

StatusOr<DispatchMode> parse_dispatch_mode(std::string_view name) {
  if (name == "shares") return DispatchMode::kShares;
  if (name == "per-batch") return DispatchMode::kPerBatch;
  return invalid_argument_error(str_cat("dispatch '", std::string(name), "' is not one of: shares, per-batch"));
}

}  // namespace omni
