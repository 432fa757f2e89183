#!/usr/bin/env python3
"""Plots of an `omniplace simulate --csv` file: max/mean rank load and step time over time, one line per policy.

Usage: plot_simulation.py STEPS_CSV OUT_PREFIX [--every N] [--title TEXT]
Writes OUT_PREFIX_imbalance.png and OUT_PREFIX_step_time.png through omniplacement.plot
(the build tree's package: PYTHONPATH=build/python). --every N keeps every N-th step
(long runs), averaging the N steps it stands for so that stalls stay visible in the mean.
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


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("steps_csv")
    ap.add_argument("out_prefix")
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)
    if args.every < 1:
        ap.error("--every must be >= 1")
    records = read_records(args.steps_csv, args.every)
    if not records:
        ap.error(f"{args.steps_csv}: no rows")
    opp.imbalance_over_time(records, args.out_prefix + "_imbalance.png", title=args.title)
    opp.imbalance_over_time(records, args.out_prefix + "_step_time.png", metric="step_time_ms", title=args.title)
    print(args.out_prefix + "_imbalance.png")
    print(args.out_prefix + "_step_time.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
