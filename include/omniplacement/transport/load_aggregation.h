// all_reduce_load: one capture window summed over every surviving rank, so
// that each rank plans from the same global loads.
//
// Each rank's ActivationRecorder counts only the tokens its own engine routed;
// the planner needs the sum over the expert-parallel group. This helper sums
// a LoadMatrix ([num_layers, num_experts]) across ranks through any Transport:
//   - kCounts: an exact int64 all-reduce; an overflow is OUT_OF_RANGE.
//   - kWeights (EMA, gate-weighted loads): a double all-reduce whose result
//     is then broadcast from the lowest live rank, so that every rank holds
//     bitwise the same doubles whatever order the backend added them in
//     (planners are deterministic only if their inputs are identical).
//
//   omni::LoadMatrix window = recorder.take_window();    // this rank's counts
//   OMNI_RETURN_IF_ERROR(omni::all_reduce_load(transport, window, std::chrono::seconds(5)));
//   // window now holds the group's counts, the same on every rank.
//
// Threads: a collective of `transport` (see transport.h): one thread at a
// time per Transport, every surviving rank calls it in the same order.
#pragma once

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/transport/transport.h"

namespace omni {

// Replaces load with the sum over all surviving ranks. Every rank must pass
// the same shape and kind; otherwise every rank gets INVALID_ARGUMENT naming
// the ranges seen. timeout bounds the whole call (it runs two or three
// collectives). On any error load is left unchanged.
Status all_reduce_load(Transport& transport, LoadMatrix& load, Timeout timeout);

}  // namespace omni
