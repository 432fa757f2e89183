#!/usr/bin/python3
"""Time omniplacement.rebalance_experts from Python at DeepSeek-V3 scale.

    PYTHONPATH=build/python /usr/bin/python3 bench/bench_python.py [--repeats 5]

Input: weight [58, 256] drawn lognormal(0, 1) x 1000 (seed 2026), 64 GPUs, 320 slots,
as the C++ benchmark BM_Plan/<planner>/lognormal_58x256_64r_320s (same distribution and
shape; numpy's generator, so not the same numbers). One thread. Prints the median and
the minimum wall time of `--repeats` calls for each planner and input type, and the
conditions it ran under.
"""
import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

import omniplacement as op


def time_calls(fn, repeats):
    fn()  # warm-up (first-call imports, allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--layers", type=int, default=58)
    ap.add_argument("--experts", type=int, default=256)
    ap.add_argument("--gpus", type=int, default=64)
    ap.add_argument("--replicas", type=int, default=320)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(2026)
    weight_np = rng.lognormal(0.0, 1.0, size=(args.layers, args.experts)) * 1000.0
    weight_t = torch.from_numpy(weight_np).float()
    print(f"rebalance_experts: {args.layers} x {args.experts}, {args.gpus} GPUs, {args.replicas} slots, "
          f"num_groups=1, num_nodes=1 (global); {args.repeats} repeats after a warm-up")
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"omniplacement {op.__version__}, {os.cpu_count()} CPUs")
    print(f"{'planner':<10} {'input':<14} {'median ms':>10} {'min ms':>8}")
    for planner in ("eplb", "omni"):
        for name, weight in (("torch float32", weight_t), ("numpy float64", weight_np)):
            med, best = time_calls(
                lambda: op.rebalance_experts(weight, args.replicas, 1, 1, args.gpus, planner=planner), args.repeats)
            print(f"{planner:<10} {name:<14} {med * 1e3:>10.1f} {best * 1e3:>8.1f}")
    # The same plan without the drop-in's conversions: what the bindings themselves cost.
    load = op.LoadMatrix(weight_np)
    med, best = time_calls(lambda: op.eplb_rebalance(load, args.replicas, 1, 1, args.gpus), args.repeats)
    print(f"{'eplb':<10} {'eplb_rebalance':<14} {med * 1e3:>10.1f} {best * 1e3:>8.1f}")
    # Pure C++: the planner's own wall time of plan() (PlanStats.seconds, measured inside the library).
    for planner in ("eplb", "omni"):
        p = op.Planner(planner)
        secs = sorted(p.plan(load, num_ranks=args.gpus, num_replicas=args.replicas).stats.seconds
                      for _ in range(args.repeats))
        print(f"{planner:<10} {'C++ plan()':<14} {secs[len(secs) // 2] * 1e3:>10.1f} {secs[0] * 1e3:>8.1f}")


if __name__ == "__main__":
    main()
