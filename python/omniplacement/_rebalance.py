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

Given a torch tensor the three results are int64 tensors on the weight's device (a CPU
tensor, as the reference returns, for a CPU weight; vLLM's policies return theirs on
the weight's device too); otherwise int64 numpy arrays.

weight may also be [num_steps, num_layers, num_logical_experts] (SGLang's logical counts
per forward pass): it is summed over the steps, and the most recent steps (at most
32, all-zero steps dropped) are handed to the planner as recent windows
(PlanInput::samples), from which omni forecasts the next interval; other planners use
the sum.

current: the placement in force, phy2log [num_layers, num_replicas] (array or tensor,
-1 for an empty slot; vLLM's old physical_to_logical_map). The planner gets it as the
current placement (omni plans incrementally from it: experts that stay keep their
slots, max_moves_per_rank bounds the changes), and every plan is then aligned to it:
an expert that stays on a GPU keeps the slot it has there, so only experts that
arrive on a GPU move weights. A current placement of another width (vLLM after an
elastic scale-down changed num_replicas) is ignored.

planner=None (the default) is "eplb" without a current placement (the drop-in) and
"omni" with one (it plans incrementally, pricing every move against what it saves).
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
from ._tensors import is_tensor, to_numpy, to_torch

__all__ = ["rebalance_experts", "align_to_current", "slots_changed"]

# Canonical eplb specs and the policy each asks eplb_rebalance for.
_EPLB_POLICIES = {"eplb": "auto", "eplb(hierarchical)": "hierarchical", "eplb(global)": "global"}
# Most recent steps of a [steps, layers, experts] weight handed to the planner as samples.
_MAX_SAMPLES = 32


def _weight_matrix(weight):
    """(LoadMatrix of the load, samples or None, tensor to model the outputs on or None)."""
    like = weight if is_tensor(weight) else None
    w = np.asarray(to_numpy(weight))
    if w.ndim == 3:
        steps = [s for s in w if s.any()][-_MAX_SAMPLES:]
        return _omni.LoadMatrix(w.sum(axis=0)), (steps or None), like
    if w.ndim != 2:
        raise ValueError(f"INVALID_ARGUMENT: rebalance_experts: weight must be [num_layers, num_experts] or "
                         f"[num_steps, num_layers, num_experts], got shape {tuple(w.shape)}")
    return _omni.LoadMatrix(w), None, like


def _out(a, like):
    a = np.ascontiguousarray(a, dtype=np.int64)
    return a if like is None else to_torch(a, like)


def _current_matrix(current, num_layers, num_replicas):
    """current as an int64 [num_layers, num_replicas] array, or None when absent or of another width."""
    if current is None:
        return None
    if isinstance(current, _omni.Placement):
        cur = current.phy2log_matrix()
    else:
        cur = np.asarray(to_numpy(current))
    if cur.ndim != 2 or cur.shape[0] != num_layers:
        raise ValueError(f"INVALID_ARGUMENT: rebalance_experts: current must be [num_layers={num_layers}, "
                         f"num_replicas], got shape {tuple(cur.shape)}")
    if cur.shape[1] != num_replicas:
        return None
    return cur.astype(np.int64, copy=False)


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


def align_to_current(phy2log, current, num_gpus, replica_rank=None):
    """phy2log [L, R] with each GPU's slots reordered so that an expert the GPU holds in
    `current` (same shape) keeps its slot there; the other experts fill the remaining
    slots in their original order. Returns (phy2log, replica_rank), replica_rank (same
    shape, or None) permuted alongside. The set of experts on every GPU is unchanged,
    so rank loads and the balance are too; only the slots an expert arrives in change.
    """
    L, R = phy2log.shape
    S = R // num_gpus
    new = np.array(phy2log, dtype=np.int64).reshape(L, num_gpus, S)
    old = np.asarray(current, dtype=np.int64).reshape(L, num_gpus, S)
    rank = None if replica_rank is None else np.array(replica_rank, dtype=np.int64).reshape(L, num_gpus, S)
    # Only GPUs where an expert held in `current` sits in another slot need reordering.
    held = (new[..., None, :] == old[..., :, None]).any(axis=3) & (old >= 0)   # old[s] is on the GPU again
    for l, r in zip(*np.nonzero((held & (new != old)).any(axis=2))):
        row, prev = new[l, r].tolist(), old[l, r].tolist()
        free = list(range(S))          # indices into row not placed yet
        order = [-1] * S               # order[s]: index into row that slot s takes
        for s, e in enumerate(prev):
            if e < 0:
                continue
            for k, i in enumerate(free):
                if row[i] == e:
                    order[s] = i
                    del free[k]
                    break
        for s in range(S):
            if order[s] < 0:
                order[s] = free.pop(0)
        new[l, r] = new[l, r][order]
        if rank is not None:
            rank[l, r] = rank[l, r][order]
    return new.reshape(L, R), (None if rank is None else rank.reshape(L, R))


def slots_changed(current, phy2log):
    """Slots whose expert differs between two phy2log maps of one shape [L, R] (arrays or
    tensors; -1 empty): the expert weights that must move to go from current to phy2log."""
    a, b = np.asarray(to_numpy(current)), np.asarray(to_numpy(phy2log))
    return int(((a != b) & (b >= 0)).sum())


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, planner=None,
                      replica_order="creation", current=None):
    """DeepSeek EPLB's rebalance_experts, or another planner in its shapes; see the module docstring."""
    if planner is None:
        planner = "eplb" if current is None else "omni"
    load, samples, like = _weight_matrix(weight)
    if replica_order not in ("creation", "slot"):
        raise ValueError(f"INVALID_ARGUMENT: replica_order must be 'creation' or 'slot', got {replica_order!r}")
    cur = _current_matrix(current, load.num_layers, int(num_replicas))
    spec = _omni.canonical_spec(planner)
    if spec in _EPLB_POLICIES:
        r = _omni.eplb_rebalance(load, int(num_replicas), int(num_groups), int(num_nodes), int(num_gpus),
                                 _EPLB_POLICIES[spec])
        phy2log, replica_rank = r["phy2log"], r["phyrank"]
    else:
        if int(num_gpus) < 1 or int(num_replicas) % int(num_gpus) != 0:
            raise ValueError(f"INVALID_ARGUMENT: rebalance_experts: num_replicas ({num_replicas}) must be a "
                             f"multiple of num_gpus ({num_gpus})")
        current_placement = None
        if cur is not None:
            current_placement = _omni.Placement(cur, num_ranks=int(num_gpus), num_experts=load.num_experts,
                                                rules=_omni.ValidationRules(require_every_expert=False))
        result = _omni.Planner(spec).plan(load, num_ranks=int(num_gpus), num_replicas=int(num_replicas),
                                             num_nodes=int(num_nodes), num_groups=int(num_groups),
                                             current=current_placement, samples=samples)
        phy2log, replica_rank = result.placement.phy2log_matrix(), np.array(result.replica_rank)
        if (phy2log < 0).any():
            phy2log, replica_rank = _fill_empty_slots(phy2log, replica_rank, load.values(), int(num_gpus))
    if cur is not None:
        phy2log, replica_rank = align_to_current(phy2log, cur, int(num_gpus), replica_rank)
    placement = _omni.Placement(phy2log, num_ranks=int(num_gpus), num_experts=load.num_experts)
    emap = _omni.ExpertMap(placement, order="creation", replica_rank=replica_rank)
    phy2log, log2phy, logcnt = emap.phy2log(), emap.log2phy(), emap.logcnt()
    if replica_order == "slot":
        log2phy = _by_slot(log2phy, logcnt)
    return _out(phy2log, like), _out(log2phy, like), _out(logcnt, like)
