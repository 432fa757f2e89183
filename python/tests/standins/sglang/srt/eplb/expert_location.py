"""Expert location metadata and how SGLang builds it (trivial, from a mapping, by EPLB)."""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from sglang.srt.eplb import eplb_algorithms


@dataclass
class ModelConfigForExpertLocation:
    num_layers: int
    num_logical_experts: int
    num_groups: Optional[int] = None


@dataclass
class ExpertLocationMetadata:
    physical_to_logical_map: torch.Tensor  # [layers, physical]
    physical_to_logical_map_cpu: torch.Tensor
    logical_to_all_physical_map: torch.Tensor  # [layers, logical, physical], -1 padded
    logical_to_all_physical_map_num_valid: torch.Tensor  # [layers, logical]

    @staticmethod
    def init_trivial(server_args, model_config):
        num_physical = model_config.num_logical_experts + server_args.ep_num_redundant_experts
        p2l = torch.arange(num_physical).repeat(model_config.num_layers, 1) % model_config.num_logical_experts
        return ExpertLocationMetadata.init_by_mapping(server_args, model_config, physical_to_logical_map=p2l)

    @staticmethod
    def init_by_mapping(server_args, model_config, physical_to_logical_map):
        if not isinstance(physical_to_logical_map, torch.Tensor):
            physical_to_logical_map = torch.tensor(physical_to_logical_map)
        p2l = physical_to_logical_map.to(server_args.device)
        num_physical = model_config.num_logical_experts + server_args.ep_num_redundant_experts
        assert p2l.shape == (model_config.num_layers, num_physical), p2l.shape
        l2p = _logical_to_all_physical(p2l, model_config.num_logical_experts)
        return ExpertLocationMetadata._init_raw(p2l, l2p)

    @staticmethod
    def init_by_eplb(server_args, model_config, logical_count):
        if not isinstance(logical_count, torch.Tensor):
            logical_count = torch.tensor(logical_count)
        if len(logical_count.shape) == 2:
            logical_count = logical_count.unsqueeze(0)
        logical_count = logical_count.to(server_args.device)
        num_physical = model_config.num_logical_experts + server_args.ep_num_redundant_experts
        num_groups, num_nodes = model_config.num_groups, server_args.nnodes
        p2l, l2p, _count = eplb_algorithms.rebalance_experts(
            tokens_per_expert=logical_count, num_physical_experts=num_physical,
            num_local_physical_experts=num_physical // server_args.ep_size, num_groups=num_groups,
            num_nodes=num_nodes,
            algorithm=eplb_algorithms.compute_algorithm(raw_algorithm=server_args.eplb_algorithm,
                                                        num_groups=num_groups, num_nodes=num_nodes))
        return ExpertLocationMetadata._init_raw(p2l.to(server_args.device), l2p.to(server_args.device))

    @staticmethod
    def _init_raw(p2l, l2p):
        l2p = F.pad(l2p, (0, p2l.shape[1] - l2p.shape[-1]), value=-1)
        return ExpertLocationMetadata(physical_to_logical_map=p2l, physical_to_logical_map_cpu=p2l.cpu(),
                                      logical_to_all_physical_map=l2p,
                                      logical_to_all_physical_map_num_valid=torch.count_nonzero(l2p != -1, dim=-1))


def _logical_to_all_physical(p2l, num_logical):
    rows = [[[] for _ in range(num_logical)] for _ in range(p2l.shape[0])]
    for l in range(p2l.shape[0]):
        for p, e in enumerate(p2l[l].tolist()):
            rows[l][e].append(p)
    width = max(len(r) for layer in rows for r in layer)
    return torch.tensor([[r + [-1] * (width - len(r)) for r in layer] for layer in rows], device=p2l.device)


_global_expert_location_metadata: Optional[ExpertLocationMetadata] = None


def get_global_expert_location_metadata():
    return _global_expert_location_metadata


def set_global_expert_location_metadata(value):
    global _global_expert_location_metadata
    _global_expert_location_metadata = value


def compute_initial_expert_location_metadata(server_args, model_config) -> ExpertLocationMetadata:
    """--init-expert-location: "trivial", a .pt or .json file, or inline JSON; a dict whose
    keys are passed on as keyword arguments (physical_to_logical_map, or logical_count)."""
    data = server_args.init_expert_location
    if data == "trivial":
        return ExpertLocationMetadata.init_trivial(server_args, model_config)
    if data.endswith(".pt"):
        data_dict = torch.load(data, weights_only=True)
    elif data.endswith(".json"):
        data_dict = json.loads(Path(data).read_text())
    else:
        data_dict = json.loads(data)
    if "physical_to_logical_map" in data_dict:
        return ExpertLocationMetadata.init_by_mapping(server_args, model_config, **data_dict)
    if "logical_count" in data_dict:
        return ExpertLocationMetadata.init_by_eplb(server_args, model_config, logical_count=data_dict["logical_count"])
    raise NotImplementedError(f"Unknown init_expert_location format ({list(data_dict.keys())=})")
