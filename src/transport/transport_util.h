// Pieces shared by the transport backends: argument checks with the messages
// every backend gives, and the element-wise reductions (LocalTransport applies
// them directly, MpiTransport registers them as MPI user operations so that
// both backends saturate int64 sums the same way). Internal to the module.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "omniplacement/transport/transport.h"

namespace omni::transport_internal {

// "rank 2 (local)": the prefix of every error message of a backend.
std::string where(const Transport& t);

// peer must be a rank of the group other than t.rank(), not marked failed.
// what names the call ("send", "recv", "broadcast root").
Status check_peer(const Transport& t, RankId peer, const char* what, bool allow_self);
// 0 <= tag <= kMaxTag.
Status check_tag(const Transport& t, int32_t tag);

// acc[i] = op(acc[i], in[i]) for i < acc.size() (in.size() == acc.size()).
// Integer sums saturate (stickily) at INT64_MAX / INT64_MIN; returns whether any did.
bool reduce_into(std::span<int64_t> acc, std::span<const int64_t> in, ReduceOp op);
void reduce_into(std::span<double> acc, std::span<const double> in, ReduceOp op);

// Whether any element is INT64_MAX or INT64_MIN, i.e. may have saturated.
bool any_saturated(std::span<const int64_t> values);

}  // namespace omni::transport_internal
