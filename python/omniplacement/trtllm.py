"""OmniPlacement plans as TensorRT-LLM's MoE load balancer configuration.

TensorRT-LLM's wide-EP MoE load balancer takes a YAML file through
``moe_config: {load_balancer: ./moe_load_balancer.yaml}``:

    num_slots: 288                   # slots per layer over all EP ranks
    layer_updates_per_iter: 0        # 0: static placement; > 0: layers re-placed online per iteration
    initial_global_assignments:      # model layer index -> expert of each of the num_slots slots;
      3: [138, 81, 60, ...]          # every num_slots / ep_size successive slots are one rank's

``write_load_balancer_config()`` writes a plan in that form, for example one made from
recorded loads:

    phy2log, _, _ = op.rebalance_experts(load, 288, 1, 1, 36, planner="omni")
    omniplacement.trtllm.write_load_balancer_config("moe_load_balancer.yaml", phy2log, first_layer=3)

The keys are the model's layer indices (DeepSeek-V3's MoE layers are 3..60), so the
MoE layer l of the plan is written under first_layer + l, or under layer_ids[l].
"""
import os

import numpy as np

from . import _omni
from ._tensors import to_numpy

__all__ = ["write_load_balancer_config", "read_load_balancer_config"]


def _assignments(phy2log):
    if isinstance(phy2log, _omni.Placement):
        phy2log = phy2log.phy2log_matrix()
    a = np.asarray(to_numpy(phy2log))
    if a.ndim != 2 or a.shape[1] < 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"INVALID_ARGUMENT: phy2log must be an integer [num_layers, num_slots] array, got "
                         f"{a.dtype} of shape {a.shape}")
    empty = np.argwhere(a < 0)
    if empty.size:
        l, g = empty[0]
        raise ValueError(f"INVALID_ARGUMENT: layer {l}, slot {g} is empty (-1); TensorRT-LLM's load balancer needs an "
                         f"expert in every slot ({len(empty)} empty slots; plan with rebalance_experts, which fills "
                         f"them)")
    return a.astype(np.int64)


def write_load_balancer_config(path, phy2log, *, layer_updates_per_iter=0, first_layer=0, layer_ids=None):
    """Writes TensorRT-LLM's load balancer YAML (module docstring) for phy2log [num_layers,
    num_slots] (array, tensor or Placement; no empty slot). layer_ids: the model layer
    index of each MoE layer (default first_layer + l). Returns the path."""
    a = _assignments(phy2log)
    if layer_ids is None:
        layer_ids = [int(first_layer) + l for l in range(a.shape[0])]
    layer_ids = [int(x) for x in layer_ids]
    if len(layer_ids) != a.shape[0] or len(set(layer_ids)) != len(layer_ids):
        raise ValueError(f"INVALID_ARGUMENT: layer_ids must name each of the {a.shape[0]} layers once, got "
                         f"{layer_ids}")
    if int(layer_updates_per_iter) < 0:
        raise ValueError(f"INVALID_ARGUMENT: layer_updates_per_iter must be >= 0, got {layer_updates_per_iter}")
    lines = [f"num_slots: {a.shape[1]}", f"layer_updates_per_iter: {int(layer_updates_per_iter)}",
             "initial_global_assignments:"]
    lines += [f"  {layer}: [{', '.join(str(int(e)) for e in row)}]" for layer, row in zip(layer_ids, a)]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return os.fspath(path)


def read_load_balancer_config(path):
    """A load balancer YAML as a dict: num_slots, layer_updates_per_iter, layer_ids (sorted)
    and phy2log [num_layers, num_slots] int64 numpy (None without initial assignments).
    Needs PyYAML (Debian: python3-yaml)."""
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict) or "num_slots" not in data:
        raise ValueError(f"INVALID_ARGUMENT: {path}: not a load balancer config (no num_slots)")
    num_slots = int(data["num_slots"])
    assignments = data.get("initial_global_assignments") or {}
    layer_ids = sorted(int(k) for k in assignments)
    rows = [list(assignments[k]) for k in sorted(assignments, key=int)]
    for layer, row in zip(layer_ids, rows):
        if len(row) != num_slots:
            raise ValueError(f"INVALID_ARGUMENT: {path}: layer {layer} assigns {len(row)} slots, num_slots is "
                             f"{num_slots}")
    return {"num_slots": num_slots, "layer_updates_per_iter": int(data.get("layer_updates_per_iter", 0)),
            "layer_ids": layer_ids, "phy2log": np.array(rows, dtype=np.int64) if rows else None}
