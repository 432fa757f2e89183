from .parallel import EPLBConfig, EPLBPolicyOption  # noqa: F401
