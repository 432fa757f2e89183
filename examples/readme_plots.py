#!/usr/bin/python3
"""Renders the README's plots into docs/img/ (or --out).

  rank_load_heatmap.png  Qwen1.5-MoE (12 MoE layers x 60 experts, top-4), wikitext
                         iteration 0 from data/traces: rank load / layer mean on 12 ranks
                         with 6 slots each (12 redundant slots per layer), for the
                         contiguous placement, DeepSeek's EPLB and the omni planner. The
                         colour scale is centred on 1.0 and set by the EPLB and omni panels
                         (99th percentile of |x - 1|), so the contiguous panel saturates.
  imbalance_over_time.png  max/mean rank load per step of examples/torch_moe_ep.py
                         (dynamic re-placement vs. the static contiguous placement), with
                         the workload shift (half-way through the run) marked.

    PYTHONPATH=build/python /usr/bin/python3 examples/readme_plots.py
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import omniplacement as op
import omniplacement.plot as opp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def qwen_window(dataset, iteration):
    """[12, 60] counts of one (dataset, iteration) of the Qwen1.5-MoE trace."""
    rows = {}
    with open(os.path.join(ROOT, "data", "traces", "qwen15moe_expert_freq_by_iteration.csv"), newline="") as f:
        for rec in csv.reader(f):
            if rec[1] == dataset and rec[2] == str(iteration):
                rows[int(rec[3])] = [int(x) for x in rec[4:]]
    return np.array([rows[l] for l in sorted(rows)], dtype=np.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "img"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    load = op.LoadMatrix(qwen_window("wikitext", 0))
    ranks, slots = 12, 6
    placements = {"contiguous": op.Placement.contiguous(load.num_layers, ranks, load.num_experts, slots)}
    for spec in ("eplb", "omni"):
        placements[spec] = op.Planner(spec).plan(load, num_ranks=ranks, slots_per_rank=slots).placement
    heatmap = os.path.join(args.out, "rank_load_heatmap.png")
    opp.rank_load_heatmap(placements, load, heatmap, height_in=3.4, dpi=90, scale_from=["eplb", "omni"],
                          title="Qwen1.5-MoE, wikitext: rank load / layer mean (12 ranks x 6 slots)")
    for name, p in placements.items():
        print(f"{name:<11} mean max/mean {op.placement_balance(p, load).mean_max_over_mean:.3f}")

    steps, window = 16, 4   # torch_moe_ep.py shifts its workload at steps // 2 and re-places every window
    with tempfile.TemporaryDirectory() as tmp:
        demo = os.path.join(tmp, "demo.json")
        subprocess.run([sys.executable, os.path.join(ROOT, "examples", "torch_moe_ep.py"), "--steps", str(steps),
                        "--window", str(window), "--json", demo], check=True, stdout=subprocess.DEVNULL)
        with open(demo, encoding="utf-8") as f:
            records = json.load(f)
        opp.imbalance_over_time(records, os.path.join(args.out, "imbalance_over_time.png"), dpi=90,
                                shifts=[steps // 2], shift_label=f"workload shift (step {steps // 2})",
                                ylabel="max/mean rank load", legend="right", width_in=8.0,
                                title=f"examples/torch_moe_ep.py: re-placement every {window} steps")
    print(f"wrote {heatmap} and imbalance_over_time.png")


if __name__ == "__main__":
    main()
