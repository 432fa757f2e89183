"""Use OmniPlacement's planners as the EPLB algorithm of vLLM or SGLang (one call each).

vLLM from 0.13 keeps its EPLB algorithms in a policy registry: use_in_vllm() then
registers a policy through omniplacement.vllm.register() (see that module; it also
passes vLLM's old placement to the planner). Older vLLM and SGLang compute their
expert placement with DeepSeek's ``rebalance_experts`` (or a copy of it) and look the
function up by name in one module, so replacing that name before the engine starts is
all it takes:

    import omniplacement.integrations as opi
    opi.use_in_vllm(planner="omni")       # before the vLLM engine is created
    opi.use_in_sglang(planner="omni")     # before the SGLang server starts

planner="eplb" keeps DeepSeek's algorithm (bit for bit, but in C++), "omni" plans
with the OmniPlacement planner; any planner spec string works. Each function returns
the engine's original function so that it can be put back.

Where they patch (module paths of the engines' EPLB code; check them against the
version you run, as both projects move this code between releases):
  vLLM    vllm.distributed.eplb.policy.EPLB_POLICIES["default"] (0.13 and later), else
          vllm.distributed.eplb.eplb_state.rebalance_experts (0.9-0.12)
          called as rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
  SGLang  sglang.srt.eplb.eplb_algorithms.deepseek.rebalance_experts
          called with keywords weight, num_replicas, num_groups (may be None), num_nodes,
          num_gpus, enable_hierarchical
Both take the same three outputs (phy2log, log2phy, logcnt) that rebalance_experts
returns here. For SGLang's own algorithm table (--eplb-algorithm omni), its load dumps
and its --init-expert-location file, see omniplacement.sglang.
"""
import functools
import importlib

from . import vllm as _vllm
from ._rebalance import rebalance_experts

__all__ = ["use_in_vllm", "use_in_sglang", "sglang_rebalance_experts", "VLLM_MODULE", "SGLANG_MODULE"]

VLLM_MODULE = "vllm.distributed.eplb.eplb_state"
SGLANG_MODULE = "sglang.srt.eplb.eplb_algorithms.deepseek"


def _replace(module_name, function):
    module = importlib.import_module(module_name)
    if not hasattr(module, "rebalance_experts"):
        raise RuntimeError(f"FAILED_PRECONDITION: {module_name} has no rebalance_experts: this engine version "
                           f"keeps its EPLB algorithm elsewhere")
    original = module.rebalance_experts
    module.rebalance_experts = function
    return original


def use_in_vllm(planner="omni", module_name=VLLM_MODULE):
    """Makes vLLM's EPLB plan with `planner`; returns what it replaced: vLLM's policy class
    registered as "default" (policy registry) or its module-level function (older vLLM)."""
    if module_name == VLLM_MODULE:
        try:
            registry = importlib.import_module(_vllm.VLLM_POLICY_MODULE)
        except ImportError:
            registry = None
        if registry is not None and isinstance(getattr(registry, "EPLB_POLICIES", None), dict):
            previous = registry.EPLB_POLICIES.get("default")
            _vllm.register(name="default", planner=planner)
            return previous
    return _replace(module_name, functools.partial(rebalance_experts, planner=planner))


def sglang_rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, enable_hierarchical=True,
                             planner="omni"):
    """SGLang's deepseek.rebalance_experts signature on top of omniplacement.rebalance_experts.

    num_groups None means no expert groups (1). With planner="eplb", enable_hierarchical
    picks DeepSeek's hierarchical or global policy as SGLang's copy does.
    """
    num_groups = 1 if num_groups is None else num_groups
    if planner == "eplb":
        planner = "eplb(hierarchical)" if enable_hierarchical else "eplb(global)"
    return rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, planner=planner)


def use_in_sglang(planner="omni", module_name=SGLANG_MODULE):
    """Makes SGLang's 'deepseek' EPLB algorithms plan with `planner`; returns SGLang's original function."""
    return _replace(module_name, functools.partial(sglang_rebalance_experts, planner=planner))
