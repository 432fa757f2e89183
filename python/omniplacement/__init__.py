"""OmniPlacement: dynamic expert placement for Mixture-of-Experts inference.

The C++ library's types and functions (from the extension ``omniplacement._omni``)
are re-exported here; this package adds numpy/torch adapters, the DeepSeek EPLB
drop-in :func:`rebalance_experts` (when the planner module is built), plots
(:mod:`omniplacement.plot`, imported on demand because it loads matplotlib) and the
engine adapters, each imported on demand: :mod:`omniplacement.vllm` (a policy in vLLM's
EPLB registry), :mod:`omniplacement.sglang` (an SGLang EPLB algorithm, its load dumps and
its --init-expert-location file), :mod:`omniplacement.trtllm` (TensorRT-LLM's load
balancer YAML) and :mod:`omniplacement.torch` (the runtime for PyTorch engines: placement
changed under serving, weights moved between ranks over torch.distributed).

    import numpy as np, omniplacement as op
    p = op.Placement.contiguous(num_layers=2, num_ranks=4, num_experts=8, slots_per_rank=3)
    load = op.LoadMatrix(np.arange(16).reshape(2, 8))        # int dtype -> exact counts
    print(op.placement_balance(p, load).mean_max_over_mean)

Arrays: any array-like goes in (lists, numpy arrays, torch tensors); results are
numpy arrays, or torch tensors where a function takes and returns arrays and was
given a tensor (rank_loads with expert loads, water_fill_counts, rebalance_experts).

Errors from the library raise ValueError (bad input), TimeoutError (a wait ran
out), NotImplementedError (feature not built) or RuntimeError (anything else),
with the library's message ("INVALID_ARGUMENT: layer 3, ...") and the code name
in ``exc.status_code``.
"""
from . import _omni
from ._omni import *  # noqa: F401,F403  (the bound API)
from ._omni import __version__, bound_modules
from ._tensors import torch_aware as _torch_aware

# Array-in, array-out functions: tensors in give tensors out.
rank_loads = _torch_aware(_omni.rank_loads)
water_fill_counts = _torch_aware(_omni.water_fill_counts)

__all__ = [n for n in dir(_omni) if not n.startswith("_")]

if "planner" in bound_modules:
    from ._rebalance import rebalance_experts, slots_changed  # noqa: F401

    __all__ += ["rebalance_experts", "slots_changed"]
if "io" in bound_modules:
    from . import io  # noqa: F401  (omniplacement.io: file formats)
if "runtime" in bound_modules:
    from ._tensors import first_tensor as _first_tensor, to_numpy as _to_numpy, to_torch as _to_torch

    # Tensors of ids in give tensors of slots out (on the ids' device).
    LocalCluster.dispatch = _torch_aware(_omni.LocalCluster.dispatch)  # noqa: F405
    _dispatch_all = _omni.LocalCluster.dispatch_all

    def _dispatch_all_torch_aware(self, layer, ids_per_rank):
        like = _first_tensor(list(ids_per_rank))
        out = _dispatch_all(self, layer, [_to_numpy(ids) for ids in ids_per_rank])
        return out if like is None else [_to_torch(slots, like) for slots in out]

    _dispatch_all_torch_aware.__doc__ = _dispatch_all.__doc__
    LocalCluster.dispatch_all = _dispatch_all_torch_aware  # noqa: F405
