#!/usr/bin/env python3
"""Plots of an `omniplace simulate --csv` file: max/mean rank load and step time over time, one line per policy.

Usage: plot_simulation.py STEPS_CSV OUT_PREFIX [--every N] [--title TEXT] [--shift-every P | --shifts S,S,...]
Writes OUT_PREFIX_imbalance.png and OUT_PREFIX_step_time.png through omniplacement.plot
(the build tree's package: PYTHONPATH=build/python). --every N keeps every N-th step
(long runs), averaging the N steps it stands for so that stalls stay visible in the mean.
--shift-every P marks the workload's phase shifts at steps P, 2P, ... (`omniplace simulate
--plot` passes its --phase-period); --shifts marks the steps listed.
Each policy has its own colour, dash pattern and marker; the legend sits under the plot.
"""
import argparse
import csv
import sys

import omniplacement.plot as opp


def read_records(path, every):
    by_policy = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_policy.setdefault(row["policy"], []).append(row)
    records = []
    for name, rows in by_policy.items():
        for start in range(0, len(rows), every):
            chunk = rows[start:start + every]
            records.append({
                "policy": name,
                "step": int(chunk[0]["step"]),
                "max_over_mean": sum(float(r["max_over_mean"]) for r in chunk) / len(chunk),
                "step_time_ms": 1e3 * sum(float(r["time_s"]) for r in chunk) / len(chunk),
            })
    return records


def shift_steps(args, last_step):
    """The steps to mark: every --shift-every steps up to last_step, or the --shifts list."""
    if args.shift_every:
        return list(range(args.shift_every, last_step + 1, args.shift_every))
    if args.shifts:
        return [int(s) for s in args.shifts.split(",") if s.strip()]
    return []


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("steps_csv")
    ap.add_argument("out_prefix")
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--title", default=None)
    marks = ap.add_mutually_exclusive_group()
    marks.add_argument("--shift-every", type=int, default=0, help="mark a phase shift every P steps")
    marks.add_argument("--shifts", default="", help="comma-separated steps to mark as shifts")
    args = ap.parse_args(argv)
    if args.every < 1:
        ap.error("--every must be >= 1")
    if args.shift_every < 0:
        ap.error("--shift-every must be >= 0")
    records = read_records(args.steps_csv, args.every)
    if not records:
        ap.error(f"{args.steps_csv}: no rows")
    shifts = shift_steps(args, max(r["step"] for r in records))
    n_policies = len({r["policy"] for r in records})
    # Room under the axes for a two-column legend of long policy specs.
    height = 3.6 + 0.22 * ((n_policies + 1 + 1) // 2)
    common = dict(title=args.title, shifts=shifts, shift_label="phase shift", width_in=9.0, height_in=height)
    opp.imbalance_over_time(records, args.out_prefix + "_imbalance.png", ylabel="max/mean rank load", **common)
    opp.imbalance_over_time(records, args.out_prefix + "_step_time.png", metric="step_time_ms",
                            ylabel="MoE step time (ms)", **common)
    print(args.out_prefix + "_imbalance.png")
    print(args.out_prefix + "_step_time.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
