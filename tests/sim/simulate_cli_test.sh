#!/usr/bin/env bash
# End-to-end check of `omniplace simulate`: a short run, its JSON summary and
# its per-step CSV. Usage: simulate_cli_test.sh <omniplace> <source dir>
set -euo pipefail
omniplace=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A small drifting synthetic workload: 4 layers x 32 experts on 8 ranks (2 hosts).
args=(--steps 60 --layers 4 --experts 32 --top-k 4 --tokens 512 --ranks 8 --ranks-per-host 4
      --drift 0.01 --phase-period 20 --interval 10 --no-progress)
"$omniplace" simulate "${args[@]}" --json --csv "$work/steps.csv" >"$work/summary.json"
"$omniplace" simulate "${args[@]}" >"$work/table.txt"
grep -q "^contiguous" "$work/table.txt"
grep -q "^lower bound" "$work/table.txt"

/usr/bin/python3 - "$work/summary.json" "$work/steps.csv" <<'PY'
import csv, json, sys
summary = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2])))
names = [p["name"] for p in summary["policies"]]
assert names[-1] == "lower bound", names
assert summary["steps"] == 60, summary["steps"]
assert len(rows) == 60 * len(names), len(rows)
bound = summary["policies"][-1]
for p in summary["policies"][:-1]:
    assert p["mean_step_s"] >= bound["mean_step_s"], (p, bound)
    assert p["mean_max_over_mean"] >= bound["mean_max_over_mean"] - 1e-9, (p, bound)
    mine = [float(r["time_s"]) for r in rows if r["policy"] == p["name"]]
    assert len(mine) == 60
    assert abs(sum(mine) / 60 - p["mean_step_s"]) <= 1e-6 * p["mean_step_s"], (sum(mine) / 60, p)
print("simulate CLI: ok,", ", ".join(f'{p["name"]} {p["mean_step_s"] * 1e3:.3f} ms' for p in summary["policies"]))
PY

# Bad input is an error with exit code 1 and a message naming the option's value.
if "$omniplace" simulate --steps 10 --skew pareto --no-progress 2>"$work/err.txt"; then
  echo "expected failure on --skew pareto"; exit 1
fi
grep -q "pareto" "$work/err.txt"
