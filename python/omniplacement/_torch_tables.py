"""RoutingTables: the expert map in force as tensors on the engine's device (omniplacement.torch).

Shapes (L layers, E experts, R ranks, S_l = slots_per_rank(l), G = max_l R * S_l,
S = max_l S_l, M = max_replicas):

  phy2log        [L, G]    int64  expert in each global slot (r * S_l + s); -1 empty or padding
  log2phy        [L, E, M] int64  global slots of each expert's replicas, ascending; -1 padded
  logcnt         [L, E]    int64  replicas of each expert
  local_phy2log  [L, S]    int64  expert in each slot of this rank; -1 empty or beyond S_l
  slots_per_rank [L]       int64  S_l

Ownership: the tensors are allocated once, on `device`, and never reallocated;
update_layer() writes rows in place (``copy_``), so their ``data_ptr()`` stays the
same for the tables' life and a captured CUDA graph that reads them stays valid.
The engine reads them; only the owner (omniplacement.torch.PlacementManager, on the
engine thread at a commit step) writes them.

Threads: dispatch() and update_layer() run on the engine thread (on CUDA, in the
order of its current stream); layer_rows() touches host memory only and may run on
any thread (the manager's planner thread prepares rows there).

torch is imported absolutely: this module lives next to omniplacement.torch.
"""
import collections

import numpy as np
import torch

from . import _omni

# Host rows of one layer, ready to be copied into the tables (CPU int64 tensors).
LayerRows = collections.namedtuple("LayerRows", ["layer", "phy2log", "log2phy", "logcnt", "local_phy2log"])


def max_replicas_needed(placement):
    """The most replicas any placement of this shape can give one expert: max over
    layers of num_slots(l) - num_experts + 1 (every other expert keeps one slot)."""
    return max(placement.num_slots(l) - placement.num_experts + 1 for l in range(placement.num_layers))


class RoutingTables:
    """The routing view of the placement in force, on the engine's device (module docstring).

    placement: the omniplacement.Placement in force at creation; rank: this rank
    (0 <= rank < num_ranks); device: where the tables live; max_replicas: the M of
    log2phy (0: max_replicas_needed(placement), which fits any later plan of the
    same shape). ValueError when the placement gives an expert more than M replicas.
    """

    def __init__(self, placement, rank, device, max_replicas=0):
        if not 0 <= rank < placement.num_ranks:
            raise ValueError(f"RoutingTables: rank {rank} out of range [0, {placement.num_ranks})")
        L, E, R = placement.num_layers, placement.num_experts, placement.num_ranks
        self.num_layers, self.num_experts, self.num_ranks, self.rank = L, E, R, rank
        self.max_replicas = int(max_replicas) if max_replicas > 0 else max_replicas_needed(placement)
        self._slots = [placement.slots_per_rank(l) for l in range(L)]
        self.device = torch.device(device)
        G = max(R * s for s in self._slots)
        S = max(self._slots)
        self.phy2log = torch.full((L, G), -1, dtype=torch.int64, device=self.device)
        self.log2phy = torch.full((L, E, self.max_replicas), -1, dtype=torch.int64, device=self.device)
        self.logcnt = torch.zeros((L, E), dtype=torch.int64, device=self.device)
        self.local_phy2log = torch.full((L, S), -1, dtype=torch.int64, device=self.device)
        self.slots_per_rank = torch.tensor(self._slots, dtype=torch.int64, device=self.device)
        self._tok_cache = {}
        for l in range(L):
            self.update_layer(self.layer_rows(placement, l))

    def slots_of(self, layer):
        """S_l as a Python int (no device access)."""
        return self._slots[layer]

    def layer_rows(self, placement, layer):
        """Host rows of `layer` of `placement` (same shape as these tables' placement).
        Any thread. ValueError when an expert has more than max_replicas replicas, or the
        placement's sizes differ from the tables'."""
        p, l = placement, layer
        if (p.num_layers, p.num_experts, p.num_ranks) != (self.num_layers, self.num_experts, self.num_ranks) or \
                p.slots_per_rank(l) != self._slots[l]:
            raise ValueError(f"RoutingTables: layer {l}: placement has {p.num_layers} layers, {p.num_experts} experts, "
                             f"{p.num_ranks} ranks, {p.slots_per_rank(l)} slots per rank; the tables have "
                             f"{self.num_layers}, {self.num_experts}, {self.num_ranks}, {self._slots[l]}")
        E, M, S = self.num_experts, self.max_replicas, self._slots[l]
        row = np.asarray(p.phy2log(l), dtype=np.int64)
        held = row >= 0
        cnt = np.bincount(row[held], minlength=E)
        if cnt.max(initial=0) > M:
            e = int(cnt.argmax())
            raise ValueError(f"RoutingTables: layer {l}: expert {e} has {int(cnt[e])} replicas, more than "
                             f"max_replicas {M} (create the tables with a larger max_replicas)")
        # Slots grouped by expert, ascending slot within an expert (stable sort).
        order = np.argsort(np.where(held, row, E), kind="stable")[: int(held.sum())]
        expert = row[order]
        first = np.concatenate(([0], np.cumsum(cnt)[:-1]))
        log2phy = np.full((E, M), -1, dtype=np.int64)
        log2phy[expert, np.arange(order.size) - first[expert]] = order
        phy2log = np.full(self.phy2log.shape[1], -1, dtype=np.int64)
        phy2log[: row.size] = row
        local = np.full(self.local_phy2log.shape[1], -1, dtype=np.int64)
        local[:S] = row[self.rank * S:(self.rank + 1) * S]
        return LayerRows(l, torch.from_numpy(phy2log), torch.from_numpy(log2phy), torch.from_numpy(cnt),
                         torch.from_numpy(local))

    def update_layer(self, rows):
        """Writes one layer's rows (from layer_rows) in place. Engine thread."""
        l = rows.layer
        self.phy2log[l].copy_(rows.phy2log)
        self.log2phy[l].copy_(rows.log2phy)
        self.logcnt[l].copy_(rows.logcnt)
        self.local_phy2log[l].copy_(rows.local_phy2log)

    def dispatch(self, layer, topk_ids):
        """Global slots serving `topk_ids` (logical expert ids of `layer`, shape
        [num_tokens, top_k] or [num_tokens]; -1 or an id outside [0, E) is padding).

        Returns int64 slots of the same shape on the tables' device (-1 for padding);
        slot g lives on rank g // slots_of(layer), in its slot g % slots_of(layer).
        Replica choice by token index: token t (the row) takes replica (t + rank) %
        logcnt of its expert, so each replica serves about an equal share and ranks
        start at different replicas. All on the device, no host sync (graph-safe).
        Engine thread."""
        if topk_ids.dim() == 0:
            raise ValueError("RoutingTables.dispatch: topk_ids must have a token dimension, got a 0-d tensor")
        ids = topk_ids.to(device=self.device, dtype=torch.int64)
        valid = (ids >= 0) & (ids < self.num_experts)
        idc = ids.clamp(0, self.num_experts - 1)
        cnt = self.logcnt[layer][idc].clamp_(min=1)
        tok = self._token_offsets(ids.shape[0], ids.dim())
        slots = self.log2phy[layer][idc, torch.remainder(tok, cnt)]
        return slots.masked_fill_(~valid, -1)

    def _token_offsets(self, n, ndim):
        """[n, 1, ...] int64 (t + rank) on the device, cached per shape (no allocation per call)."""
        key = (n, ndim)
        tok = self._tok_cache.get(key)
        if tok is None:
            tok = (torch.arange(n, device=self.device, dtype=torch.int64) + self.rank).view((n,) + (1,) * (ndim - 1))
            self._tok_cache[key] = tok
        return tok
