"""Planner time through the vLLM policy (omniplacement.vllm) at DeepSeek-V3 size, against
a plain PyTorch re-implementation of the reference EPLB algorithm (eplb_reference.py) on
the same input. CPU time (time.process_time: every thread of the process), one torch
thread, repeated; prints the conditions and min / median per configuration.

    PYTHONPATH=build/python /usr/bin/python3 python/benchmarks/vllm_policy_bench.py [--repeats 5]

Input: 58 MoE layers x 256 experts, 64 ranks, 320 slots (5 per rank); per layer a
Zipf(1.1) load over a random permutation of the experts with lognormal(0, 0.3) noise,
seed 1; a second window (drifted by lognormal(0, 0.2)) for the incremental case, with
the policy's own plan of the first window as vLLM's old map.
"""
import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

import omniplacement as op
import omniplacement.vllm as ov

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eplb_reference  # noqa: E402

L, E, RANKS, SLOTS = 58, 256, 64, 320


def loads(seed):
    rng = np.random.default_rng(seed)
    base = 1e5 / np.arange(1, E + 1) ** 1.1
    first = np.stack([rng.permutation(base) * rng.lognormal(0, 0.3, E) for _ in range(L)])
    second = first * rng.lognormal(0, 0.2, first.shape)
    return torch.tensor(np.rint(first), dtype=torch.int64), torch.tensor(np.rint(second), dtype=torch.int64)


def balance_of(phy2log, load):
    placement = op.Placement(phy2log.numpy(), num_ranks=RANKS, num_experts=E)
    return op.placement_balance(placement, op.LoadMatrix(load.numpy())).mean_max_over_mean


def cpu_seconds(fn, repeats):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return out, times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    first, second = loads(1)
    print(f"# {L} layers x {E} experts, {RANKS} ranks, {SLOTS} slots; CPU seconds per call "
          f"(process_time, torch threads 1), {args.repeats} repeats; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, omniplacement {op.__version__}")
    omni, eplb = ov.policy_class("omni"), ov.policy_class("eplb")
    old = omni.rebalance_experts(first, SLOTS, 8, 8, RANKS)[0]
    cases = [
        # (label, num_groups, num_nodes, function)
        ("reference EPLB, PyTorch re-implementation", None, None, eplb_reference.rebalance_experts),
        ("vLLM policy, planner=eplb (C++)", None, None, eplb.rebalance_experts),
        ("vLLM policy, planner=omni", None, None, omni.rebalance_experts),
    ]
    results = {}
    for groups, nodes, policy in ((8, 8, "hierarchical: 8 groups, 8 nodes"), (1, 1, "global: 1 group, 1 node")):
        print(f"\n## {policy}")
        for label, _, _, fn in cases:
            out, times = cpu_seconds(lambda: fn(second, SLOTS, groups, nodes, RANKS), args.repeats)
            results[(policy, label)] = out[0]
            print(f"{label:62s} min {min(times):8.4f} s   median {statistics.median(times):8.4f} s")
        scratch = op.slots_changed(old, results[(policy, "vLLM policy, planner=omni")])
        for spec in ("omni", "omni(max_moves_per_rank=1)"):
            fn = ov.policy_class(spec).rebalance_experts
            out, times = cpu_seconds(lambda: fn(second, SLOTS, groups, nodes, RANKS, old), args.repeats)
            label = f"vLLM policy, planner={spec}, with the old map"
            print(f"{label:62s} min {min(times):8.4f} s   median {statistics.median(times):8.4f} s   "
                  f"({op.slots_changed(old, out[0])} of {L * SLOTS} slots changed; from scratch "
                  f"{scratch}; mean max/mean {balance_of(out[0], second):.4f})")
        same = torch.equal(results[(policy, cases[0][0])], results[(policy, cases[1][0])])
        print(f"planner=eplb output identical to the PyTorch reference: {same}")
        for label, _, _, _ in cases:
            print(f"  {label:60s} mean max/mean rank load {balance_of(results[(policy, label)], second):.4f}")


if __name__ == "__main__":
    main()
