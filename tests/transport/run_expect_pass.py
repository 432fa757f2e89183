#!/usr/bin/env python3
"""Runs a multi-process test and wants one "rank R: PASS" line from each rank
named in --ranks and no "FAIL" line: a process that dies silently, or hangs
until ctest's timeout, fails the test even when mpirun exits 0 (as it does
under --enable-recovery when a process is killed).

usage: run_expect_pass.py --ranks 0,1,2 -- command...
"""
import re
import subprocess
import sys


def main():
    ranks = {int(r) for r in sys.argv[sys.argv.index("--ranks") + 1].split(",")}
    cmd = sys.argv[sys.argv.index("--") + 1:]
    run = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(run.stdout)
    sys.stderr.write(run.stderr)
    passed = {int(m.group(1)) for m in re.finditer(r"^rank (\d+): PASS", run.stdout, re.M)}
    failed = re.findall(r"^rank -?\d+: FAIL.*$", run.stdout, re.M)
    if failed or passed != ranks or run.returncode != 0:
        print(f"RESULT: FAILED (exit {run.returncode}; PASS from {sorted(passed)}, wanted {sorted(ranks)}; "
              f"{len(failed)} FAIL line(s))")
        return 1
    print(f"RESULT: every rank of {sorted(ranks)} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
