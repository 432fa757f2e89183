// omniplace_plan_eval: the planner evaluation harness.
//
//   omniplace_plan_eval checksums     plan checksums for behaviour-neutral checks
#include <cstdio>
#include <cstring>

#include "plan_eval/checksums.h"

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "checksums") == 0) return omni::plan_eval::run_checksums();
  std::fprintf(stderr, "usage: omniplace_plan_eval checksums\n");
  return 2;
}
