#include "omniplacement/capture/coactivation.h"

#include <algorithm>

#include "omniplacement/core/status.h"

namespace omni {

int64_t CoactivationCounts::pair(LayerId l, int32_t a, int32_t b) const {
  OMNI_CHECK_MSG(l >= 0 && l < num_layers && a >= 0 && a < num_ids && b >= 0 && b < num_ids,
                 "CoactivationCounts::pair index out of range");
  if (a == b) return 0;
  const int32_t lo = std::min(a, b);
  const int32_t hi = std::max(a, b);
  return pairs[static_cast<size_t>(l * pairs_per_layer() + pair_index(num_ids, lo, hi))];
}

}  // namespace omni
