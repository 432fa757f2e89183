"""OmniPlacement for SGLang: its EPLB algorithm table, its load dumps, its placement file.

SGLang (``sglang.srt.eplb``) names its EPLB algorithms in an enum, ``EplbAlgorithm``
(``--eplb-algorithm deepseek|deepseek_hierarchical|...``, "auto" by default), and
plans through one dispatcher, ``eplb_algorithms.rebalance_experts(tokens_per_expert,
num_physical_experts, num_local_physical_experts, num_groups, num_nodes, algorithm)``,
where tokens_per_expert holds its logical counts per recorded forward pass,
``[num_steps, num_layers, num_logical_experts]``. ``register()`` adds an algorithm that
plans with an OmniPlacement planner, before the server starts (in every process that
plans; SGLang plans on every rank):

    import omniplacement.sglang as osg
    osg.register(name="omni", planner="omni")   # then: --enable-eplb --eplb-algorithm omni

A name that SGLang already has ("deepseek") is taken over instead. The counts are summed
over the steps, and the recent steps go to the planner as samples (from which
omni forecasts the next interval). SGLang does not pass the placement in force; with
incremental=True the hook reads it from SGLang's global ExpertLocationMetadata, so that
omni plans incrementally and experts that stay on a GPU keep their slots.

Offline: SGLang records loads with ``--expert-distribution-recorder-mode stat`` (or
``per_pass``, ``per_token``) and writes ``.pt`` dumps (torch.save) on
``/dump_expert_distribution_record``; ``read_expert_distribution()`` turns them into
logical counts, and ``write_init_expert_location()`` writes the file that
``--init-expert-location`` reads (``.pt`` or ``.json``, ``{"physical_to_logical_map":
[num_layers][num_physical_experts]}``). ``plan_from_dumps()`` does both:

    phy2log = osg.plan_from_dumps(["expert_distribution_recorder_1700000000.0.pt"], "placement.json",
                                  num_physical_experts=288, ep_size=32)
    # sglang ... --ep-num-redundant-experts 32 --init-expert-location placement.json

Physical expert p lives on GPU p // (num_physical_experts // ep_size), as in SGLang.
"""
import enum
import importlib
import json
import os
import sys

import numpy as np

from ._rebalance import rebalance_experts as _rebalance_experts
from ._tensors import to_numpy

__all__ = ["rebalance_experts", "register", "read_expert_distribution", "write_init_expert_location",
           "read_init_expert_location", "plan_from_dumps", "SGLANG_ALGORITHMS_MODULE", "SGLANG_LOCATION_MODULE"]

SGLANG_ALGORITHMS_MODULE = "sglang.srt.eplb.eplb_algorithms"
SGLANG_LOCATION_MODULE = "sglang.srt.eplb.expert_location"


def rebalance_experts(tokens_per_expert, num_physical_experts, num_local_physical_experts, num_groups, num_nodes,
                      planner="omni", current=None):
    """SGLang's dispatcher signature (module docstring), planning with `planner`.

    tokens_per_expert: [num_steps, num_layers, num_logical_experts] or [num_layers,
    num_logical_experts] counts. num_groups None means no expert groups. current: the
    physical_to_logical_map in force [num_layers, num_physical_experts], or None.
    Returns (physical_to_logical_map [L, P], logical_to_all_physical_map [L, E, X] -1
    padded, expert_count [L, E]), int64, tensors on the counts' device for a tensor.
    """
    num_gpus = int(num_physical_experts) // int(num_local_physical_experts)
    return _rebalance_experts(tokens_per_expert, int(num_physical_experts), 1 if num_groups is None else num_groups,
                              num_nodes, num_gpus, planner=planner, current=current)


def _placement_in_force():
    """SGLang's current physical_to_logical_map (CPU copy), or None when there is none yet."""
    try:
        location = importlib.import_module(SGLANG_LOCATION_MODULE)
    except ImportError:
        return None
    getter = getattr(location, "get_global_expert_location_metadata", None)
    metadata = getter() if getter is not None else None
    if metadata is None:
        return None
    cpu = getattr(metadata, "physical_to_logical_map_cpu", None)
    return cpu if cpu is not None else getattr(metadata, "physical_to_logical_map", None)


def register(name="omni", planner="omni", incremental=True, module_name=SGLANG_ALGORITHMS_MODULE):
    """Makes `--eplb-algorithm <name>` plan with `planner` (module docstring).

    Replaces the module's EplbAlgorithm with one that also has `name` (unless SGLang has
    it already) and its rebalance_experts with a dispatcher that plans `name` here and
    hands every other algorithm to SGLang's own. Returns a function that puts both back.
    Raises ModuleNotFoundError without SGLang, RuntimeError when the module has no
    algorithm table.
    """
    module = importlib.import_module(module_name)
    original_enum = getattr(module, "EplbAlgorithm", None)
    original_fn = getattr(module, "rebalance_experts", None)
    if not (isinstance(original_enum, enum.EnumMeta) and callable(original_fn)):
        raise RuntimeError(f"FAILED_PRECONDITION: {module_name} has no EplbAlgorithm enum and rebalance_experts: "
                           f"this SGLang keeps its EPLB algorithms elsewhere")
    names = [m.name for m in original_enum]
    table = original_enum if name in names else enum.Enum(original_enum.__name__, names + [name],
                                                          module=module.__name__)

    def dispatch(tokens_per_expert, num_physical_experts, num_local_physical_experts, num_groups, num_nodes,
                 algorithm):
        if algorithm.name == name:
            current = _placement_in_force() if incremental else None
            return rebalance_experts(tokens_per_expert, num_physical_experts, num_local_physical_experts,
                                     num_groups, num_nodes, planner=planner, current=current)
        # SGLang's dispatcher compares with its module's EplbAlgorithm, looked up when it runs
        # (the table installed here), so it gets that table's member of the same name.
        return original_fn(tokens_per_expert=tokens_per_expert, num_physical_experts=num_physical_experts,
                           num_local_physical_experts=num_local_physical_experts, num_groups=num_groups,
                           num_nodes=num_nodes, algorithm=module.EplbAlgorithm[algorithm.name])

    dispatch.__doc__ = f"SGLang's EPLB dispatcher with {name!r} planned by omniplacement ({planner!r})."
    module.EplbAlgorithm, module.rebalance_experts = table, dispatch

    def restore():
        module.EplbAlgorithm, module.rebalance_experts = original_enum, original_fn

    return restore


def _torch():
    return sys.modules.get("torch") or importlib.import_module("torch")


def _load(path):
    torch = _torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # torch without weights_only
        return torch.load(path, map_location="cpu")


def _physical_to_logical(physical, p2l, num_experts):
    """[..., L, P] physical counts -> [..., L, E] logical counts through p2l [L, P]."""
    physical = np.asarray(physical, dtype=np.int64)
    out = np.zeros(physical.shape[:-1] + (num_experts,), dtype=np.int64)
    for l in range(p2l.shape[0]):
        valid = p2l[l] >= 0
        np.add.at(out[..., l, :], (Ellipsis, p2l[l][valid]), physical[..., l, valid])
    return out


def _read_one(path):
    """('stat', logical [S, L, E]) or ('detail', {forward_pass_id: physical [L, P]}, p2l [L, P])."""
    data = _load(path)
    if not isinstance(data, dict):
        raise ValueError(f"INVALID_ARGUMENT: {path}: not an SGLang expert-distribution dump (a dict was expected, "
                         f"got {type(data).__name__})")
    if "logical_count" in data:
        counts = np.asarray(to_numpy(data["logical_count"]), dtype=np.int64)
        if counts.ndim == 2:
            counts = counts[None]
        if counts.ndim != 3:
            raise ValueError(f"INVALID_ARGUMENT: {path}: logical_count must be [steps, layers, experts], got shape "
                             f"{counts.shape}")
        return "stat", counts
    if "records" in data and "last_physical_to_logical_map" in data:
        p2l = np.asarray(to_numpy(data["last_physical_to_logical_map"]), dtype=np.int64)
        passes = {}
        for k, rec in enumerate(data["records"]):
            if "global_physical_count" in rec:
                physical = np.asarray(to_numpy(rec["global_physical_count"]), dtype=np.int64)
            elif "topk_ids_of_layer" in rec:
                ids = np.asarray(to_numpy(rec["topk_ids_of_layer"]), dtype=np.int64)  # [L, tokens, top_k], -1 pad
                physical = np.zeros(p2l.shape, dtype=np.int64)
                for l in range(ids.shape[0]):
                    row = ids[l][ids[l] >= 0]
                    physical[l] += np.bincount(row, minlength=p2l.shape[1])[:p2l.shape[1]]
            else:
                raise ValueError(f"INVALID_ARGUMENT: {path}: record {k} has neither global_physical_count nor "
                                 f"topk_ids_of_layer")
            if physical.shape != p2l.shape:
                raise ValueError(f"INVALID_ARGUMENT: {path}: record {k}: counts of shape {physical.shape}, but the "
                                 f"physical_to_logical_map is {p2l.shape}")
            fid = int(rec.get("forward_pass_id", k))
            passes[fid] = passes.get(fid, 0) + physical
        return "detail", passes, p2l
    raise ValueError(f"INVALID_ARGUMENT: {path}: neither a stat dump (logical_count) nor a per-pass/per-token dump "
                     f"(records, last_physical_to_logical_map); keys: {sorted(data)}")


def read_expert_distribution(paths, num_logical_experts=None):
    """Logical expert counts [num_steps, num_layers, num_logical_experts] (int64 numpy)
    from SGLang expert-distribution dumps.

    paths: one path or a list. Stat dumps (``logical_count``, already summed over ranks)
    are concatenated over steps in the order given. Per-pass and per-token dumps (one
    file per rank, ``records`` plus ``last_physical_to_logical_map``) are summed over
    the files per forward pass, ordered by forward_pass_id, and turned into logical
    counts through the map. num_logical_experts: default, the map's largest id + 1
    (stat dumps carry it in their shape).
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("INVALID_ARGUMENT: read_expert_distribution: no dump given")
    stat, passes, p2l = [], {}, None
    for path in paths:
        kind, *rest = _read_one(path)
        if kind == "stat":
            stat.append(rest[0])
            continue
        file_passes, file_map = rest
        if p2l is not None and not np.array_equal(p2l, file_map):
            raise ValueError(f"INVALID_ARGUMENT: {path}: its physical_to_logical_map differs from the other dumps'")
        p2l = file_map
        for fid, physical in file_passes.items():
            passes[fid] = passes.get(fid, 0) + physical
    if stat and passes:
        raise ValueError("INVALID_ARGUMENT: read_expert_distribution: stat dumps and per-pass dumps mixed")
    if stat:
        shapes = {c.shape[1:] for c in stat}
        if len(shapes) != 1:
            raise ValueError(f"INVALID_ARGUMENT: read_expert_distribution: dumps of different shapes {sorted(shapes)}")
        return np.concatenate(stat, axis=0)
    num_experts = int(p2l.max()) + 1 if num_logical_experts is None else int(num_logical_experts)
    physical = np.stack([passes[fid] for fid in sorted(passes)])
    return _physical_to_logical(physical, p2l, num_experts)


def write_init_expert_location(path, phy2log):
    """Writes phy2log [num_layers, num_physical_experts] as the file SGLang's
    --init-expert-location reads: ``.pt`` (torch.save of {"physical_to_logical_map":
    int64 tensor}) or ``.json``. Every entry must name an expert (no -1)."""
    p2l = np.asarray(to_numpy(phy2log), dtype=np.int64)
    if p2l.ndim != 2 or (p2l < 0).any():
        raise ValueError(f"INVALID_ARGUMENT: {path}: physical_to_logical_map must be [layers, physical experts] "
                         f"with no empty (-1) slot, got shape {p2l.shape}"
                         + (f" and {int((p2l < 0).sum())} empty slots" if p2l.ndim == 2 else ""))
    path = os.fspath(path)
    if path.endswith(".pt"):
        _torch().save({"physical_to_logical_map": _torch().from_numpy(p2l)}, path)
    elif path.endswith(".json"):
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"physical_to_logical_map": p2l.tolist()}, f)
    else:
        raise ValueError(f"INVALID_ARGUMENT: {path}: SGLang reads --init-expert-location from .pt or .json files")


def read_init_expert_location(path):
    """The physical_to_logical_map of an --init-expert-location file (.pt or .json), int64 numpy."""
    path = os.fspath(path)
    if path.endswith(".pt"):
        data = _load(path)
    else:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    if not isinstance(data, dict) or "physical_to_logical_map" not in data:
        raise ValueError(f"INVALID_ARGUMENT: {path}: no physical_to_logical_map")
    return np.asarray(to_numpy(data["physical_to_logical_map"]), dtype=np.int64)


def plan_from_dumps(dump_paths, output, *, num_physical_experts, ep_size, num_groups=1, num_nodes=1,
                    planner="omni"):
    """Reads SGLang dumps, plans, writes `output` for --init-expert-location; returns the phy2log written."""
    counts = read_expert_distribution(dump_paths)
    phy2log, _, _ = rebalance_experts(counts, num_physical_experts, int(num_physical_experts) // int(ep_size),
                                      num_groups, num_nodes, planner=planner)
    write_init_expert_location(output, phy2log)
    return phy2log
