// Uses the installed headers and library: builds a contiguous placement,
// measures it under a skewed load and checks one number.
#include <omniplacement/core/core.h>

#include <cstdio>

int main() {
  auto placement = omni::Placement::contiguous(1, 4, 8, 2);
  if (!placement.ok()) return 1;
  auto load = omni::LoadMatrix::from_counts(1, 8, {8, 0, 0, 0, 0, 0, 0, 0});
  if (!load.ok()) return 1;
  auto b = omni::placement_balance(*placement, *load);
  if (!b.ok()) return 1;
  // All 8 tokens on rank 0, mean 2: max/mean = 4.
  std::printf("consumer: max/mean = %.2f\n", b->mean_max_over_mean);
  return b->mean_max_over_mean == 4.0 ? 0 : 1;
}
