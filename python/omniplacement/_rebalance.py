"""Drop-in replacement for DeepSeek EPLB's ``rebalance_experts``.

    phy2log, log2phy, logcnt = omniplacement.rebalance_experts(
        weight, num_replicas, num_groups, num_nodes, num_gpus, planner="eplb")

Same signature, shapes and dtypes as DeepSeek's ``eplb.rebalance_experts`` (the
algorithm vLLM and SGLang ship):

  weight   [num_layers, num_logical_experts] load per expert (torch tensor, numpy
           array or nested lists; any real dtype)
  phy2log  [num_layers, num_replicas] int64: the logical expert of every physical slot
           (slot p lives on GPU p // (num_replicas // num_gpus))
  log2phy  [num_layers, num_logical_experts, max(logcnt)] int64: the physical slots of
           every expert, -1 padded
  logcnt   [num_layers, num_logical_experts] int64: replicas of every expert

Given a torch tensor the three results are int64 CPU tensors, as the reference returns
(it computes on ``weight.float().cpu()``); otherwise int64 numpy arrays.

planner="eplb" is DeepSeek's algorithm bit for bit (C++, including its float32
arithmetic and tie-breaking, and its known same-GPU duplicate replicas);
"eplb(hierarchical)" and "eplb(global)" force one of its two policies. Any other
planner spec string ("omni", "omni(max_replicas_per_expert=4)", "eplb(global)", ...)
plans with that planner and returns its plan in the same shapes; num_groups and
num_nodes are passed on as expert groups and hosts. The EPLB format has no empty
slot (engines index weights with every phy2log entry), so a slot a planner leaves
empty is given one more replica of an expert that its GPU does not hold yet: the
one with the largest load per replica whose added share keeps that GPU at or below
the layer's most loaded GPU, else the one that adds the least.

replica_order: "creation" (default) lists an expert's slots in log2phy in the order
its replicas were created, as DeepSeek does; "slot" lists them by ascending physical
slot, as vLLM's later ``compute_logical_maps`` does.
"""
import numpy as np

from . import _omni
from ._tensors import is_tensor, to_numpy

__all__ = ["rebalance_experts"]

# Canonical eplb specs and the policy each asks eplb_rebalance for.
_EPLB_POLICIES = {"eplb": "auto", "eplb(hierarchical)": "hierarchical", "eplb(global)": "global"}


def _weight_matrix(weight):
    """The load as a LoadMatrix, and the tensor to model the outputs on (or None)."""
    like = weight if is_tensor(weight) else None
    w = np.asarray(to_numpy(weight))
    if w.ndim != 2:
        raise ValueError(f"INVALID_ARGUMENT: rebalance_experts: weight must be 2-D [num_layers, num_experts], "
                         f"got shape {tuple(w.shape)}")
    return _omni.LoadMatrix(w), like


def _out(a, like):
    a = np.ascontiguousarray(a, dtype=np.int64)
    if like is None:
        return a
    import torch  # a tensor was passed, so torch is imported already

    return torch.from_numpy(a)


def _by_slot(log2phy, logcnt):
    """log2phy rows re-ordered by ascending slot (padding stays at the end)."""
    width = log2phy.shape[-1]
    valid = np.arange(width)[None, None, :] < logcnt[..., None]
    keyed = np.where(valid, log2phy, np.iinfo(log2phy.dtype).max)
    out = np.sort(keyed, axis=-1)
    out[~valid] = -1
    return out


def _fill_empty_slots(phy2log, replica_rank, weight, num_gpus):
    """phy2log [L, R] with every -1 replaced (see the module docstring); replica_rank follows."""
    phy2log = phy2log.copy()
    slots_per_gpu = phy2log.shape[1] // num_gpus
    for l in np.nonzero((phy2log < 0).any(axis=1))[0]:
        w = weight[l]
        row, rank = phy2log[l], replica_rank[l].copy()
        cnt = np.bincount(row[row >= 0], minlength=w.size)
        for g in np.nonzero(row < 0)[0]:
            gpu = g // slots_per_gpu
            share = np.where(row >= 0, w[np.maximum(row, 0)] / np.maximum(cnt[np.maximum(row, 0)], 1), 0.0)
            gpu_load = share.reshape(num_gpus, slots_per_gpu).sum(axis=1)
            held = np.zeros(w.size, dtype=bool)
            on_gpu = row[gpu * slots_per_gpu:(gpu + 1) * slots_per_gpu]
            held[on_gpu[on_gpu >= 0]] = True
            added = w / (cnt + 1)
            fits = ~held & (gpu_load[gpu] + added <= gpu_load.max())
            if fits.any():
                e = int(np.argmax(np.where(fits, w / np.maximum(cnt, 1), -1.0)))
            else:
                e = int(np.argmin(np.where(held, np.inf, added)))
            row[g], rank[g] = e, cnt[e]
            cnt[e] += 1
        replica_rank[l] = rank
    return phy2log, replica_rank


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, planner="eplb",
                      replica_order="creation"):
    """DeepSeek EPLB's rebalance_experts, or another planner in its shapes; see the module docstring."""
    load, like = _weight_matrix(weight)
    if replica_order not in ("creation", "slot"):
        raise ValueError(f"INVALID_ARGUMENT: replica_order must be 'creation' or 'slot', got {replica_order!r}")
    spec = _omni.canonical_spec(planner)
    if spec in _EPLB_POLICIES:
        r = _omni.eplb_rebalance(load, int(num_replicas), int(num_groups), int(num_nodes), int(num_gpus),
                                 _EPLB_POLICIES[spec])
        phy2log, log2phy, logcnt = r["phy2log"], r["log2phy"], r["logcnt"]
    else:
        if int(num_gpus) < 1 or int(num_replicas) % int(num_gpus) != 0:
            raise ValueError(f"INVALID_ARGUMENT: rebalance_experts: num_replicas ({num_replicas}) must be a "
                             f"multiple of num_gpus ({num_gpus})")
        result = _omni.Planner(spec).plan(load, num_ranks=int(num_gpus), num_replicas=int(num_replicas),
                                             num_nodes=int(num_nodes), num_groups=int(num_groups))
        placement, replica_rank = result.placement, result.replica_rank
        phy2log = placement.phy2log_matrix()
        if (phy2log < 0).any():
            phy2log, replica_rank = _fill_empty_slots(phy2log, replica_rank, load.values(), int(num_gpus))
            placement = _omni.Placement(phy2log, num_ranks=int(num_gpus), num_experts=load.num_experts)
        emap = _omni.ExpertMap(placement, order="creation", replica_rank=replica_rank)
        phy2log, log2phy, logcnt = emap.phy2log(), emap.log2phy(), emap.logcnt()
    if replica_order == "slot":
        log2phy = _by_slot(log2phy, logcnt)
    return _out(phy2log, like), _out(log2phy, like), _out(logcnt, like)
