#!/usr/bin/env python3
"""Runs the demo across processes with a crashed or stalled rank (through
scripts/demo_mpi.sh) and checks its survivors' summary: the rank made to fail
is the one declared failed, 0 wrong outputs, every lost expert restored and
full redundancy reached; with a stall, the stalled rank reports it was fenced.
The run must end on its own (the ctest timeout is the hang check).

usage: check_demo_failover.py OMNIPLACE RANK_ROLE(fail|stall) RANK -- demo args...
"""
import json
import os
import subprocess
import sys


def main():
    omniplace, role, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
    demo_args = sys.argv[sys.argv.index("--") + 1:]
    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "demo_mpi.sh")
    env = dict(os.environ, OMNIPLACE=omniplace)
    run = subprocess.run(["bash", script, "4", *demo_args, "--json"], env=env, capture_output=True, text=True)
    sys.stderr.write(run.stderr)
    problems = []
    if run.returncode != 0:
        problems.append(f"exit code {run.returncode}")
    try:
        summary = json.loads(run.stdout)
    except json.JSONDecodeError as e:
        print(f"FAIL: no JSON summary on stdout ({e}): {run.stdout[:500]!r}")
        return 1
    f = summary.get("failure") or {}
    if f.get("declared_failed") != [rank]:
        problems.append(f"declared failed {f.get('declared_failed')}, expected [{rank}]")
    if summary.get("wrong_outputs") != 0:
        problems.append(f"{summary.get('wrong_outputs')} wrong outputs")
    if f.get("experts_lost", 0) <= 0 or f.get("restore_ms", -1) < 0:
        problems.append(f"lost experts {f.get('experts_lost')} not all restored (restore_ms {f.get('restore_ms')})")
    if f.get("full_redundancy_ms", -1) < 0:
        problems.append("full redundancy not reached")
    if role == "stall" and f"rank {rank}: stopped for" not in run.stderr or role == "stall" and "fenced" not in run.stderr:
        problems.append(f"rank {rank} did not report that it was fenced")
    if problems:
        print("FAIL: " + "; ".join(problems))
        return 1
    print(f"PASS: rank {rank} ({role}) declared failed after {f['detection_ms']:.1f} ms, failover {f['failover_ms']:.2f} ms, "
          f"{f['experts_restored']} experts restored in {f['restore_ms']:.1f} ms, full redundancy at "
          f"{f['full_redundancy_ms']:.1f} ms, 0 wrong outputs of {summary['outputs_checked']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
