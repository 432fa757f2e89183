// The demo's world collectives while ranks may fail: retried among the
// survivors.
//
// A process transport gives every survivor the same outcome for one
// collective when a rank fails during it (src/transport/message_engine.h:
// the contribution of the dead rank is relayed, or the call fails on every
// survivor with UNAVAILABLE; survivors that had not yet all marked the rank
// failed all get FAILED_PRECONDITION). So when every survivor retries such a
// failure, they stay in step: each attempt is one collective on every rank,
// and the attempts succeed together once every survivor's detector has
// marked the rank failed.
//
//   OMNI_RETURN_IF_ERROR(omni::all_reduce_among_survivors(t, std::span<int64_t>(v), ReduceOp::kSum,
//                                                         timeout, config.injects_failures()));
//
// Thread safety: as Transport::all_reduce (one rank's engine thread).
#pragma once

#include <cstdint>
#include <span>

#include "omniplacement/core/status.h"
#include "omniplacement/transport/transport.h"

namespace omni {

// t.all_reduce(data, op, ...), retried while it fails with UNAVAILABLE or
// FAILED_PRECONDITION, this rank is not fenced, `failures_expected` is true
// and `timeout` (for all attempts together) has not passed. `data` keeps its
// input until an attempt succeeds (a failed all_reduce does not write it).
// Without failures_expected: exactly one t.all_reduce. Returns the last
// attempt's status (a fenced rank: its fence status).
Status all_reduce_among_survivors(Transport& t, std::span<int64_t> data, ReduceOp op, Timeout timeout,
                                  bool failures_expected);
Status all_reduce_among_survivors(Transport& t, std::span<double> data, ReduceOp op, Timeout timeout,
                                  bool failures_expected);

}  // namespace omni
