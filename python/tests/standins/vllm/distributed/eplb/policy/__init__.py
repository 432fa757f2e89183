from typing import get_args

from vllm.config.parallel import EPLBPolicyOption

from .abstract import AbstractEplbPolicy
from .default import DefaultEplbPolicy

EPLB_POLICIES = {"default": DefaultEplbPolicy}

assert set(EPLB_POLICIES) == set(get_args(EPLBPolicyOption))

__all__ = ["AbstractEplbPolicy", "DefaultEplbPolicy", "EPLB_POLICIES"]
