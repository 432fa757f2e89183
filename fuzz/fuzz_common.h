// Shared by the libFuzzer targets: an oracle that stops the run on a broken
// invariant (a round trip that does not give back what was parsed).
#pragma once

#include <cstdio>
#include <cstdlib>

#define OMNI_FUZZ_REQUIRE(cond)                                                        \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)
