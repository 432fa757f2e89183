"""Placeholder default policy: keeps the placement in force (not vLLM's algorithm)."""
import torch

from vllm._standin import CONTRACT

from ..eplb_utils import compute_logical_maps
from .abstract import AbstractEplbPolicy


class DefaultEplbPolicy(AbstractEplbPolicy):
    @classmethod
    def rebalance_experts(cls, weight, num_replicas, num_groups, num_nodes, num_ranks, old_global_expert_indices=None):
        num_layers, num_logical = weight.shape
        if old_global_expert_indices is None:
            row = torch.arange(num_replicas, dtype=torch.int64) % num_logical
            phy2log = row.expand(num_layers, -1).clone()
        else:
            phy2log = old_global_expert_indices.clone().to(torch.int64)
        if CONTRACT == "phy2log":
            return phy2log
        log2phy, logcnt = compute_logical_maps(phy2log, num_logical)
        return phy2log, log2phy, logcnt
