#!/usr/bin/python3
"""Per-step cost of driving omniplacement.LocalCluster from Python.

    PYTHONPATH=build/python /usr/bin/python3 bench/bench_python_runtime.py [--steps 200]

The demo's shape: 12 ranks x 6 slots, 12 MoE layers x 60 experts (Qwen1.5-MoE), 64 tokens x top-4
per rank, layer and step, 1,088-byte slots, shares dispatch, planner eplb. Per step the script
records and dispatches every rank's ids of every layer from Python (12 x 12 calls of each) and calls
step_boundary once (every rank's step_boundary on its engine thread). Two runs: re-plan every 10
steps (weights move and epochs commit while serving), and no re-plan (interval beyond the run).
Prints the median and mean wall time per step of each part; the ids are drawn before timing.
"""
import argparse
import os
import statistics
import time

import numpy as np

import omniplacement as op

RANKS, SLOTS, LAYERS, EXPERTS, TOKENS, TOP_K, SLOT_BYTES = 12, 6, 12, 60, 64, 4, 1088


def run(steps, interval):
    placement = op.Placement.contiguous(num_layers=LAYERS, num_ranks=RANKS, num_experts=EXPERTS,
                                        slots_per_rank=SLOTS)
    opts = op.ManagerOptions(planner_spec="eplb", replan_interval_steps=interval, commit_cadence_steps=1)
    rng = np.random.default_rng(1)
    # Skewed routing whose hot experts change every 20 steps.
    ids = []
    for step in range(steps):
        pop = np.random.default_rng(step // 20).lognormal(0, 1.5, EXPERTS)
        ids.append(rng.choice(EXPERTS, size=(RANKS, LAYERS, TOKENS, TOP_K), p=pop / pop.sum()).astype(np.int32))
    serve, boundary = [], []
    with op.LocalCluster(placement, SLOT_BYTES, options=opts,
                         topology=op.Topology.uniform(num_ranks=RANKS, ranks_per_host=4)) as cluster:
        for step in range(steps):
            t0 = time.perf_counter()
            for layer in range(LAYERS):
                for r in range(RANKS):
                    cluster.record(r, layer, ids[step][r, layer])
                    cluster.dispatch(r, layer, ids[step][r, layer])
            t1 = time.perf_counter()
            cluster.step_boundary(step)
            t2 = time.perf_counter()
            serve.append(t1 - t0)
            boundary.append(t2 - t1)
        stats = cluster.stats()
    return serve, boundary, stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    print(f"LocalCluster: {RANKS} ranks x {SLOTS} slots, {LAYERS} layers x {EXPERTS} experts, {TOKENS} tokens x "
          f"top-{TOP_K} per rank, layer and step; {args.steps} steps; {os.cpu_count()} CPUs")
    print(f"{'re-plan':<16} {'part':<34} {'median us':>10} {'mean us':>10}")
    for label, interval in (("every 10 steps", 10), ("never", 10 ** 9)):
        serve, boundary, stats = run(args.steps, interval)
        per_call = [s / (LAYERS * RANKS) for s in serve]
        rows = (("record + dispatch, per call pair", per_call),
                ("  all ranks and layers, per step", serve),
                ("step_boundary (all ranks), per step", boundary))
        for part, xs in rows:
            print(f"{label:<16} {part:<34} {statistics.median(xs) * 1e6:>10.1f} {statistics.mean(xs) * 1e6:>10.1f}")
        print(f"{'':<16} rounds {stats['rounds_started']} ({stats['rounds_no_change']} unchanged), epochs {stats['epoch']}, "
              f"experts moved {stats['experts_moved']}, "
              f"aborted {stats['rounds_aborted']}")


if __name__ == "__main__":
    main()
