from dataclasses import dataclass


@dataclass
class ServerArgs:
    ep_size: int = 1
    ep_num_redundant_experts: int = 0
    nnodes: int = 1
    eplb_algorithm: str = "auto"
    init_expert_location: str = "trivial"
    device: str = "cpu"
