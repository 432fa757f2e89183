"""The policy interface; its return annotation says which contract generation this is."""
from abc import ABC, abstractmethod

import torch

from vllm._standin import CONTRACT

if CONTRACT == "maps":

    class AbstractEplbPolicy(ABC):
        @classmethod
        @abstractmethod
        def rebalance_experts(cls, weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int,
                              num_ranks: int, old_global_expert_indices: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """weight [layers, logical experts] -> (phy2log [layers, replicas], log2phy
            [layers, logical experts, X] -1 padded, logcnt [layers, logical experts])."""
            raise NotImplementedError

else:

    class AbstractEplbPolicy(ABC):
        @classmethod
        @abstractmethod
        def rebalance_experts(cls, weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int,
                              num_ranks: int, old_global_expert_indices: torch.Tensor | None = None) -> torch.Tensor:
            """weight [layers, logical experts] -> phy2log [layers, replicas]."""
            raise NotImplementedError
