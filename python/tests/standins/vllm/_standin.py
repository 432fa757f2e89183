"""Which generation of vLLM's policy contract the stand-in reproduces.

"phy2log" (default): vLLM 0.23+, the policy returns phy2log alone.
"maps": vLLM 0.14-0.18, the policy returns (phy2log, log2phy, logcnt).
"""
import os

CONTRACT = os.environ.get("VLLM_STANDIN_CONTRACT", "phy2log")
assert CONTRACT in ("phy2log", "maps"), CONTRACT
