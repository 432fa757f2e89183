#include "omniplacement/transport/transport.h"

#include <algorithm>
#include <limits>

#include "omniplacement/core/str_cat.h"
#include "transport_util.h"

namespace omni {

std::chrono::steady_clock::time_point Transport::last_arrival(RankId /*r*/) const {
  return std::chrono::steady_clock::time_point::min();
}

std::string_view reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "unknown";
}

bool Transport::is_failed(RankId r) const {
  const std::vector<RankId> failed = failed_ranks();
  return std::binary_search(failed.begin(), failed.end(), r);
}

std::vector<RankId> Transport::live_ranks() const {
  const std::vector<RankId> failed = failed_ranks();
  std::vector<RankId> live;
  for (RankId r = 0; r < size(); ++r) {
    if (!std::binary_search(failed.begin(), failed.end(), r)) live.push_back(r);
  }
  return live;
}

namespace transport_internal {

std::string where(const Transport& t) { return str_cat("rank ", t.rank(), " (", t.backend(), ")"); }

Status check_peer(const Transport& t, RankId peer, const char* what, bool allow_self) {
  if (peer < 0 || peer >= t.size()) {
    return invalid_argument_error(
        str_cat(where(t), ": ", what, " rank ", peer, " is out of range; valid ranks are 0..", t.size() - 1));
  }
  if (!allow_self && peer == t.rank()) {
    return invalid_argument_error(str_cat(where(t), ": ", what, " rank ", peer, " is this rank itself"));
  }
  if (t.is_failed(peer)) {
    return unavailable_error(str_cat(where(t), ": ", what, " rank ", peer, " is marked failed"));
  }
  return ok_status();
}

Status check_tag(const Transport& t, int32_t tag) {
  if (tag < 0 || tag > kMaxTag) {
    return invalid_argument_error(str_cat(where(t), ": tag ", tag, " is out of range; valid tags are 0..", kMaxTag));
  }
  return ok_status();
}

bool reduce_into(std::span<int64_t> acc, std::span<const int64_t> in, ReduceOp op) {
  bool saturated = false;
  for (size_t i = 0; i < acc.size(); ++i) {
    switch (op) {
      case ReduceOp::kSum: {
        // Saturation is sticky (a saturated partial sum stays saturated), so
        // that whatever order MPI reduces in, an overflow anywhere shows in
        // the result and any_saturated() reports it.
        constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
        constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
        if (acc[i] == kMax || acc[i] == kMin) {
          saturated = true;
          break;
        }
        if (in[i] == kMax || in[i] == kMin) {
          acc[i] = in[i];
          saturated = true;
          break;
        }
        int64_t out = 0;
        if (__builtin_add_overflow(acc[i], in[i], &out)) {
          out = in[i] > 0 ? kMax : kMin;
          saturated = true;
        }
        acc[i] = out;
        break;
      }
      case ReduceOp::kMax: acc[i] = std::max(acc[i], in[i]); break;
      case ReduceOp::kMin: acc[i] = std::min(acc[i], in[i]); break;
    }
  }
  return saturated;
}

void reduce_into(std::span<double> acc, std::span<const double> in, ReduceOp op) {
  for (size_t i = 0; i < acc.size(); ++i) {
    switch (op) {
      case ReduceOp::kSum: acc[i] += in[i]; break;
      case ReduceOp::kMax: acc[i] = std::max(acc[i], in[i]); break;
      case ReduceOp::kMin: acc[i] = std::min(acc[i], in[i]); break;
    }
  }
}

bool any_saturated(std::span<const int64_t> values) {
  return std::any_of(values.begin(), values.end(), [](int64_t v) {
    return v == std::numeric_limits<int64_t>::max() || v == std::numeric_limits<int64_t>::min();
  });
}

}  // namespace transport_internal
}  // namespace omni
