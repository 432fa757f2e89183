"""How vLLM drives the policy (stand-in for EplbState: add_model, step, rearrange).

The policy is looked up in EPLB_POLICIES when the model is added, by the configured
name. rearrange() maps the recorded physical load window to logical experts through
the map in force, sums it over the window, and calls the policy on the CPU with the
old map; the result must be on the CPU. The maps are then committed in place.
"""
import torch

from vllm._standin import CONTRACT

from .eplb_utils import compute_logical_maps
from .policy import EPLB_POLICIES


class EplbState:
    def __init__(self, eplb_config, num_layers, num_logical_experts, num_ranks, num_nodes=1, num_groups=1,
                 device="cpu"):
        self.num_logical = num_logical_experts
        self.num_physical = num_logical_experts + eplb_config.num_redundant_experts
        self.num_ranks, self.num_nodes, self.num_groups = num_ranks, num_nodes, num_groups
        self.policy = EPLB_POLICIES[eplb_config.policy]
        row = list(range(num_logical_experts)) + [i % num_logical_experts
                                                 for i in range(eplb_config.num_redundant_experts)]
        self.physical_to_logical_map = torch.tensor([row] * num_layers, dtype=torch.int64, device=device)
        self.max_slots = eplb_config.num_redundant_experts + 1
        log2phy, logcnt = compute_logical_maps(self.physical_to_logical_map.cpu(), num_logical_experts)
        self.logical_to_physical_map = torch.nn.functional.pad(log2phy, (0, self.max_slots - log2phy.shape[-1]),
                                                               value=-1).to(device)
        self.logical_replica_count = logcnt.to(device)
        self.expert_load_window = torch.zeros(eplb_config.window_size, num_layers, self.num_physical,
                                              dtype=torch.int32, device=device)
        self.window_step = 0
        self.moved_slots = 0

    def record(self, physical_load_pass):
        """One forward pass: tokens per physical expert, [num_layers, num_physical]."""
        self.expert_load_window[self.window_step].copy_(physical_load_pass)
        self.window_step = (self.window_step + 1) % self.expert_load_window.shape[0]

    def rearrange(self):
        window = self.expert_load_window
        logical = torch.zeros(window.shape[0], window.shape[1], self.num_logical, dtype=window.dtype,
                              device=window.device)
        logical.scatter_add_(-1, self.physical_to_logical_map.unsqueeze(0).expand_as(window), window)
        global_expert_load_window = logical.sum(dim=0)
        result = self.policy.rebalance_experts(global_expert_load_window.cpu(), self.num_physical, self.num_groups,
                                               self.num_nodes, self.num_ranks, self.physical_to_logical_map.cpu())
        if CONTRACT == "phy2log":
            new_phy2log = result
            assert new_phy2log.device == torch.device("cpu")
            log2phy, logcnt = compute_logical_maps(new_phy2log, self.num_logical)
        else:
            new_phy2log, log2phy, logcnt = result
            assert log2phy.shape[-1] <= self.max_slots
        assert new_phy2log.shape == self.physical_to_logical_map.shape and new_phy2log.dtype == torch.int64
        assert int(new_phy2log.min()) >= 0 and int(new_phy2log.max()) < self.num_logical
        self.moved_slots = int((new_phy2log.to(self.physical_to_logical_map.device)
                                != self.physical_to_logical_map).sum())
        self.physical_to_logical_map.copy_(new_phy2log)
        self.logical_to_physical_map.copy_(torch.nn.functional.pad(log2phy, (0, self.max_slots - log2phy.shape[-1]),
                                                                   value=-1))
        self.logical_replica_count.copy_(logcnt)
        return new_phy2log
