"""OmniPlacement's planners as vLLM's EPLB policy.

vLLM keeps its EPLB algorithms in a registry, ``vllm.distributed.eplb.policy``: classes
derived from ``AbstractEplbPolicy`` whose classmethod ``rebalance_experts`` plans, and an
``EPLB_POLICIES`` table from the name that ``--eplb-config '{"policy": ...}'`` gives to
the class. ``register()`` puts a policy that plans with an OmniPlacement planner into
that table, in the process that builds the engine, before the engine starts:

    import omniplacement.vllm as ov
    ov.register(planner="omni")       # EPLB_POLICIES["default"] now plans with omni

vLLM validates the policy name against a fixed list (``EPLBPolicyOption``, only
"default" so far), so the default name replaces vLLM's default policy. vLLM starts
worker processes of its own; to register in each of them, install the package with
pip (it declares a ``vllm.general_plugins`` entry point, which vLLM runs in every
process) and set ``OMNI_VLLM_PLANNER`` to a planner spec:

    OMNI_VLLM_PLANNER=omni vllm serve MODEL --enable-expert-parallel --enable-eplb

The contract (vLLM's ``AbstractEplbPolicy``): every EP rank calls, on the CPU,

    rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_ranks,
                      old_global_expert_indices=None)

  weight      [num_layers, num_logical_experts] tokens per expert over the window
              (int32 counts or float; a CPU tensor in vLLM)
  old_global_expert_indices
              [num_layers, num_replicas] the physical-to-logical map in force, or None
  returns     phy2log [num_layers, num_replicas], log2phy [num_layers,
              num_logical_experts, num_replicas - num_logical_experts + 1] (-1 padded,
              replicas in creation order), logcnt [num_layers, num_logical_experts];
              int64 tensors on weight's device

vLLM 0.14-0.18 take the three maps; from 0.23 vLLM takes phy2log alone and derives the
others itself. ``register()`` reads which from the installed ``AbstractEplbPolicy``'s
return annotation (a tuple: the three maps; otherwise phy2log alone), or takes
``returns="maps"|"phy2log"``. vLLM 0.13 passes no old map; vLLM before the registry
(0.9-0.12) kept a module-level function: ``omniplacement.integrations.use_in_vllm()``
handles both layouts.

With the old map the plan is incremental: the planner gets it as the placement in
force (omni moves only what pays, max_moves_per_rank bounds the moves per rank and
layer), and an expert that stays on a rank keeps its slot, so vLLM moves only the
weights of experts that arrive on a rank. Every rank gets the same plan from the same
inputs (the planners are deterministic without a time budget).

planner="eplb" is DeepSeek's algorithm bit for bit (vLLM's DefaultEplbPolicy); any
planner spec works ("omni", "omni(max_moves_per_rank=2)", ...).
"""
import importlib
import inspect
import os
import sys
import typing

import numpy as np

from . import _omni
from ._rebalance import rebalance_experts as _rebalance_experts
from ._tensors import is_tensor

__all__ = ["OmniEplbPolicy", "policy_class", "register", "plugin", "VLLM_POLICY_MODULE", "PLANNER_ENV"]

VLLM_POLICY_MODULE = "vllm.distributed.eplb.policy"
# The planner spec plugin() registers with (unset: plugin() does nothing).
PLANNER_ENV = "OMNI_VLLM_PLANNER"
_RETURNS = ("maps", "phy2log")


def _pad_last(a, width):
    """a [..., k] padded with -1 to [..., width] (numpy array or tensor)."""
    extra = width - a.shape[-1]
    if extra <= 0:
        return a
    if is_tensor(a):
        torch = sys.modules["torch"]
        return torch.nn.functional.pad(a, (0, extra), value=-1)
    return np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, extra)], constant_values=-1)


class OmniEplbPolicy:
    """An EPLB policy with vLLM's contract (module docstring) that plans with `planner`.

    Use policy_class() for another planner or return convention, register() to install
    one into vLLM. Stateless: rebalance_experts may run on any thread.
    """

    planner = "omni"
    returns = "maps"

    @classmethod
    def rebalance_experts(cls, weight, num_replicas, num_groups, num_nodes, num_ranks,
                          old_global_expert_indices=None):
        phy2log, log2phy, logcnt = _rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_ranks,
                                                      planner=cls.planner, current=old_global_expert_indices)
        if cls.returns == "phy2log":
            return phy2log
        num_experts = logcnt.shape[-1]
        return phy2log, _pad_last(log2phy, int(num_replicas) - num_experts + 1), logcnt


def policy_class(planner="omni", returns="maps", base=None):
    """A subclass of OmniEplbPolicy (and of `base`, vLLM's AbstractEplbPolicy, when given)
    planning with `planner` (any spec string; checked here) and returning the three maps
    (returns="maps") or phy2log alone ("phy2log")."""
    if returns not in _RETURNS:
        raise ValueError(f"INVALID_ARGUMENT: returns must be one of {_RETURNS}, got {returns!r}")
    spec = _omni.canonical_spec(planner)  # raises on an unknown planner or bad parameters
    bases = (OmniEplbPolicy,) if base is None else (OmniEplbPolicy, base)
    return type("OmniEplbPolicy", bases, {"planner": spec, "returns": returns,
                                          "__doc__": f"vLLM EPLB policy planning with {spec!r}."})


def _returns_of(abstract):
    """'maps' when the installed AbstractEplbPolicy.rebalance_experts is annotated to return a tuple."""
    ann = inspect.signature(abstract.rebalance_experts).return_annotation
    if isinstance(ann, str):
        return "maps" if ann.replace(" ", "").lower().startswith(("tuple", "typing.tuple")) else "phy2log"
    return "maps" if ann is tuple or typing.get_origin(ann) is tuple else "phy2log"


def register(name="default", planner="omni", returns=None, module_name=VLLM_POLICY_MODULE):
    """Puts a policy planning with `planner` into vLLM's EPLB_POLICIES under `name`.

    returns: "maps" or "phy2log"; None reads it from the installed AbstractEplbPolicy.
    Returns a function that puts back what the table held under `name` (or removes the
    entry). Raises ModuleNotFoundError without vLLM, RuntimeError when the module has no
    policy registry (use omniplacement.integrations.use_in_vllm for older vLLM).
    Call it in every process that builds an engine, before the engine starts.
    """
    module = importlib.import_module(module_name)
    abstract = getattr(module, "AbstractEplbPolicy", None)
    table = getattr(module, "EPLB_POLICIES", None)
    if abstract is None or not isinstance(table, dict):
        raise RuntimeError(f"FAILED_PRECONDITION: {module_name} has no AbstractEplbPolicy / EPLB_POLICIES: this vLLM "
                           f"predates the policy registry; use omniplacement.integrations.use_in_vllm()")
    cls = policy_class(planner, returns or _returns_of(abstract), base=abstract)
    had, previous = name in table, table.get(name)
    table[name] = cls  # in place: vLLM's eplb_state holds this same dict

    def restore():
        if had:
            table[name] = previous
        else:
            table.pop(name, None)

    return restore


def plugin():
    """vLLM general plugin (entry point ``vllm.general_plugins``, run in every vLLM process):
    registers a policy planning with $OMNI_VLLM_PLANNER under "default"; does nothing when
    the variable is unset or empty."""
    spec = os.environ.get(PLANNER_ENV, "").strip()
    if spec:
        register(planner=spec)
