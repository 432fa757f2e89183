// The transport conformance suite, written once and run over every backend:
// transport_test runs it on LocalGroup threads, transport_mpi_test runs the
// same cases on MpiTransport under `mpirun -np 4`.
//
// A case is a function every rank runs on its own Transport; it returns OK or a
// Status that names the rank, the check and the values seen. Cases assume
// nothing about the backend beyond transport.h, and each case starts on a
// fresh group (no failed rank, no pending message).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "omniplacement/core/status.h"
#include "omniplacement/transport/transport.h"

namespace omni::testing {

struct ConformanceCase {
  std::string name;          // gtest-friendly: letters and digits only
  int32_t min_ranks = 1;     // the case is skipped on smaller groups
  bool heavy = false;        // large memory or time: run once per backend, at 4 ranks
  std::function<Status(Transport&)> body;
};

// Every case, in a fixed order (MPI ranks must run the same sequence).
const std::vector<ConformanceCase>& conformance_cases();

}  // namespace omni::testing
