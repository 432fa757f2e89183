// Identifiers and size limits shared by every module.
//
// Vocabulary (docs/DESIGN.md): a *layer* is an MoE layer, an *expert* a logical
// expert of a layer, a *rank* one device of the expert-parallel group, a *host*
// a machine, a *slot* a place on a rank that holds one expert's weights. The
// *global slot* of slot s on rank r in layer l is r * slots_per_rank[l] + s
// (vLLM/SGLang call it the physical expert id).
//
// All ids are int32 and dense from 0. Sizes are validated against the limits
// below before any arithmetic, so that products such as
// num_ranks * slots_per_rank never overflow.
#pragma once

#include <cstdint>

namespace omni {

using LayerId = int32_t;
using ExpertId = int32_t;
using RankId = int32_t;
using HostId = int32_t;
using SlotId = int32_t;      // slot index within a rank: 0 <= s < slots_per_rank[l]
using GlobalSlot = int32_t;  // r * slots_per_rank[l] + s

// A global slot that holds no expert.
inline constexpr ExpertId kEmptySlot = -1;

// Hard limits on sizes accepted from users and files. Generous for any real
// deployment (DeepSeek-V3: 58 layers, 256 experts, up to a few hundred ranks)
// while keeping every product of two sizes far below 2^31.
inline constexpr int32_t kMaxLayers = 1 << 14;          // 16384
inline constexpr int32_t kMaxExperts = 1 << 16;         // 65536
inline constexpr int32_t kMaxRanks = 1 << 14;           // 16384
inline constexpr int32_t kMaxSlotsPerRank = 1 << 14;    // 16384
inline constexpr int64_t kMaxSlotsPerLayer = int64_t{1} << 24;  // ranks * slots_per_rank
inline constexpr int64_t kMaxMatrixElements = int64_t{1} << 28; // layers * experts (or slots)

}  // namespace omni
