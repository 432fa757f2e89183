"""EPLB configuration: the policy is named from a fixed set of names."""
from dataclasses import dataclass
from typing import Literal, get_args

EPLBPolicyOption = Literal["default"]


@dataclass
class EPLBConfig:
    window_size: int = 1000
    step_interval: int = 3000
    num_redundant_experts: int = 0
    policy: EPLBPolicyOption = "default"

    def __post_init__(self):
        if self.policy not in get_args(EPLBPolicyOption):
            raise ValueError(f"policy must be one of {get_args(EPLBPolicyOption)}, got {self.policy!r}")
