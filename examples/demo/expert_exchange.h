// ExpertExchange: the demo's all-to-all of one step. Each (token, expert)
// item goes to the rank owning its global slot under the placement in force;
// that rank applies the weights found in the slot of its weight store
// (ToyMoE::apply) and sends the result back; the requesting rank compares
// each answer bit for bit with the reference computed from the logical expert.
// A wrong expert, half-copied weights or a slot the owner does not hold all
// show up as wrong outputs; an item whose owner failed before answering is
// handed back (to be served again on the map without that rank).
//
//   omni::ExpertExchange ex(transport, model, store, /*top_k=*/4, timeout);
//   std::vector<omni::ServeItem> items = ...;          // {layer, index into ids[layer], slot}
//   std::vector<omni::ServeItem> lost;
//   omni::ServeCounts counts;
//   OMNI_RETURN_IF_ERROR(ex.serve(step, placement, items, ids, lost, counts));
//
// Collective: every rank of the transport calls serve() once per exchange
// (a rank with nothing to send still takes part). Peers marked failed on the
// transport are skipped. Thread safety: one thread per ExpertExchange (the
// rank's engine thread); the model and the store are borrowed.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "demo/toy_moe.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/transport.h"

namespace omni {

// One (token, expert) to serve: layer, index into that layer's ids (token
// index * top_k + k), and the global slot chosen for it.
struct ServeItem {
  LayerId layer;
  int32_t index;
  GlobalSlot slot;
};

// Outputs of this rank's requests: compared with the reference, of which
// differed (or never came back); requests this rank received for a slot it
// does not own (answered with NaN, so also wrong on the requester).
struct ServeCounts {
  int64_t checked = 0;
  int64_t wrong = 0;
  int64_t misrouted = 0;
};

class ExpertExchange {
 public:
  // top_k: experts per token (the gate of k-th choice is 1 / (1 + k)).
  ExpertExchange(Transport& transport, const ToyMoE& model, const HostWeightStore& store, int32_t top_k,
                 Timeout timeout);

  // Serves `items` of step `step` under `placement` (the rank's map in
  // force); ids[l] holds the logical expert ids of layer l of this rank's
  // batch (what the references are computed from). Items whose owner is
  // marked failed on the transport and did not answer are appended to `lost`
  // (not counted); the others are counted in `counts`. Errors: a transport
  // error other than a failed peer.
  Status serve(int64_t step, const Placement& placement, std::span<const ServeItem> items,
               const std::vector<std::vector<ExpertId>>& ids, std::vector<ServeItem>& lost, ServeCounts& counts);

  // The deterministic key of one token's input (ToyMoE::token_input).
  uint64_t token_key(int64_t step, LayerId layer, int32_t token) const;

 private:
  // Answers the items of one request buffer with this rank's weights.
  void answer(const Placement& placement, const std::vector<std::byte>& request, std::vector<std::byte>& response,
              ServeCounts& counts);

  Transport& t_;
  const ToyMoE& model_;
  const HostWeightStore& store_;
  const int32_t top_k_;
  const Timeout timeout_;
  const int32_t hidden_;
  std::vector<std::vector<std::byte>> requests_, responses_, incoming_, answers_;  // [num_ranks]
  std::vector<std::vector<ServeItem>> pending_;  // what each request to rank r was
  std::vector<float> x_, y_, ref_;
};

}  // namespace omni
