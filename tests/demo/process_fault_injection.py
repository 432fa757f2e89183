#!/usr/bin/env python3
"""The multi-process fault-injection suite (label mpi): every scenario of
process_fault_injection_main.cc, with a few seeds each, each one a fresh
`mpirun --enable-recovery -np 4` job over UcxTransport. A process really dies
(SIGKILL) or stops (SIGSTOP) at the scenario's protocol moment; the survivors
must declare exactly the victims failed, serve every output right (checked
bit for bit against the reference), hold no corrupted weights at the end,
restore every lost expert, and every process must end on its own.

usage: process_fault_injection.py BINARY [--seeds N] [--timeout S] [--scenarios a,b,...]
Prints one line per job and a summary with the counts; exit 1 on any failure.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

SCENARIOS = ["idle", "sender", "receiver", "after_commit", "stall", "restore"]


def mpirun():
    flags = ["mpirun", "--enable-recovery", "--oversubscribe"]
    if os.getuid() == 0:
        flags.append("--allow-run-as-root")
    return flags + ["-np", "4"]


def run_job(binary, scenario, seed, timeout):
    """Returns (problems, facts)."""
    with tempfile.TemporaryDirectory(prefix="omni_pfi_") as out:
        cmd = mpirun() + [binary, "--scenario", scenario, "--seed", str(seed), "--out", out]
        start = time.monotonic()
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return [f"HANG: no end within {timeout} s"], {"hang": True, "stdout": (e.stdout or b"")[-2000:]}
        secs = time.monotonic() - start
        problems = []
        facts = {"seconds": secs}
        for name in sorted(os.listdir(out)):
            if name.startswith("crash_"):
                problems.append(f"rank {name[6:]} crashed: " + open(os.path.join(out, name)).read()[:1500])
        m = re.search(r"^RESULT (.*)$", run.stdout, re.M)
        if not m:
            facts["moments"] = {n[7:]: open(os.path.join(out, n)).read().strip()
                                for n in sorted(os.listdir(out)) if n.startswith("moment_")}
            problems.append(f"no survivors' summary (exit {run.returncode}): {run.stdout[-800:]!r} {run.stderr[-800:]!r}")
            return problems, facts
        r = json.loads(m.group(1))
        facts.update(r)
        victims = r["victims"]
        if sorted(r["declared_failed"]) != sorted(victims):
            problems.append(f"declared failed {r['declared_failed']}, victims {victims}")
        if r["wrong_outputs"] != 0:
            problems.append(f"{r['wrong_outputs']} wrong outputs")
        if r["weights_corrupted"] != 0:
            problems.append(f"{r['weights_corrupted']} slots with corrupted weights")
        if r["experts_lost"] > 0 and r["restore_ms"] < 0:
            problems.append(f"{r['experts_lost']} lost experts not all restored")
        for fail in re.findall(r"^rank \d+: FAIL.*$", run.stdout, re.M):
            problems.append(fail)
        # The intended moment was hit (killed victims leave a marker; a stalled one says it was fenced).
        moments = {}
        for v in victims:
            path = os.path.join(out, f"moment_{v}")
            if scenario == "stall":
                if not re.search(rf"^rank {v}: FENCED .*fenced", run.stdout, re.M):
                    problems.append(f"stalled rank {v} did not report it was fenced")
                else:
                    moments[v] = "stalled, fenced"
            elif not os.path.exists(path):
                problems.append(f"victim {v} never reached its moment ({scenario})")
            else:
                moments[v] = open(path).read().strip()
        facts["moments"] = moments
        done = len(re.findall(r"^rank \d+: DONE$", run.stdout, re.M))
        if done != 4 - len(victims):
            problems.append(f"{done} survivors finished, expected {4 - len(victims)}")
        return problems, facts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = ap.parse_args()
    totals = {"jobs": 0, "failed": 0, "hangs": 0, "wrong_outputs": 0, "corrupted": 0, "outputs": 0, "victims": 0,
              "moments_hit": 0}
    start = time.monotonic()
    for scenario in args.scenarios.split(","):
        for seed in range(1, args.seeds + 1):
            problems, facts = run_job(args.binary, scenario, seed, args.timeout)
            totals["jobs"] += 1
            totals["hangs"] += 1 if facts.get("hang") else 0
            totals["wrong_outputs"] += facts.get("wrong_outputs", 0)
            totals["corrupted"] += facts.get("weights_corrupted", 0)
            totals["outputs"] += facts.get("outputs_checked", 0)
            totals["victims"] += len(facts.get("victims", []))
            totals["moments_hit"] += len(facts.get("moments", {}))
            verdict = "ok" if not problems else "FAILED: " + "; ".join(problems)
            totals["failed"] += 1 if problems else 0
            print(f"{scenario:13s} seed {seed}: {verdict} ({facts.get('seconds', 0):.1f} s; moments "
                  f"{facts.get('moments', {})}; {facts.get('outputs_checked', 0)} outputs, "
                  f"{facts.get('weights_checked', 0)} slots checked)", flush=True)
    print(f"SUMMARY: {totals['jobs']} jobs ({len(args.scenarios.split(','))} scenarios x {args.seeds} seeds), "
          f"{totals['victims']} processes killed or stopped, {totals['moments_hit']} at their intended moment; "
          f"{totals['wrong_outputs']} wrong outputs of {totals['outputs']}, {totals['corrupted']} corrupted weights, "
          f"{totals['hangs']} hangs, {totals['failed']} failed jobs; {time.monotonic() - start:.0f} s")
    return 0 if totals["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
