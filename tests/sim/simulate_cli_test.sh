#!/usr/bin/env bash
# End-to-end check of `omniplace simulate`: a short run, its JSON summary and
# its per-step CSV. Usage: simulate_cli_test.sh <omniplace> <source dir>
set -euo pipefail
omniplace=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A small drifting synthetic workload: 4 layers x 32 experts on 8 ranks (2 hosts); migration as
# a stall so that shift re-plans are never held back by a background migration in flight.
args=(--steps 60 --layers 4 --experts 32 --top-k 4 --tokens 512 --ranks 8 --ranks-per-host 4
      --drift 0.01 --phase-period 20 --interval 10 --migration stall --no-progress)
"$omniplace" simulate "${args[@]}" --shift-check 0 --json --csv "$work/steps.csv" >"$work/summary.json"
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

# Shift detection: the phase shifts at steps 20 and 40 fall on interval boundaries, so the check
# 5 steps into those intervals sees them and the dynamic policies re-plan at once.
"$omniplace" simulate "${args[@]}" --shift-check 5 --shift-threshold 0.05 --json >"$work/shift.json"
/usr/bin/python3 - "$work/summary.json" "$work/shift.json" <<'PY'
import json, sys
plain = {p["name"]: p for p in json.load(open(sys.argv[1]))["policies"]}
shift = {p["name"]: p for p in json.load(open(sys.argv[2]))["policies"]}
for name in ("dynamic-eplb", "dynamic-omni"):
    assert plain[name]["shift_replans"] == 0, plain[name]
    assert shift[name]["shift_replans"] > 0, shift[name]
    assert shift[name]["replans"] == plain[name]["replans"] + shift[name]["shift_replans"], (plain[name], shift[name])
assert shift["oracle"]["shift_replans"] == 0 and shift["oracle"]["mean_step_s"] == plain["oracle"]["mean_step_s"]
PY

# With no flag, shift detection is the runtime's default: a tenth of the interval, its threshold.
"$omniplace" simulate "${args[@]}" --json >"$work/default.json"
/usr/bin/python3 - "$work/default.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["shift_check_steps"] == 1 and d["shift_threshold"] == 0.07, (d["shift_check_steps"], d["shift_threshold"])
PY

# Policy names with commas stay one CSV field (quoted).
"$omniplace" simulate "${args[@]}" --policies 'oracle,dynamic:omni(max_moves_per_rank=1)' \
  --csv "$work/commas.csv" >/dev/null
/usr/bin/python3 - "$work/commas.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
names = {r["policy"] for r in rows}
assert names == {"oracle", "dynamic:omni(max_moves_per_rank=1)", "lower bound"}, names
assert all(float(r["time_s"]) > 0 for r in rows)
PY

# Shipped data: the Qwen1.5-MoE time series (bookcorpus -> wikitext -> wmt19), every policy.
"$omniplace" simulate --trace "$2/data/traces/qwen15moe_expert_freq_by_iteration.csv" \
  --datasets bookcorpus,wikitext,wmt19 --ranks 12 --ranks-per-host 4 --window-steps 5 --interval 25 \
  --expert-mb 17.3 --dispatch-bytes 4096 --combine-bytes 4096 --compute-us-per-token 0.0865 \
  --no-progress --json >"$work/qwen.json"
/usr/bin/python3 - "$work/qwen.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
p = {x["name"]: x for x in s["policies"]}
assert s["steps"] == 300 and s["layers"] == 12 and s["experts"] == 60, s
assert set(p) == {"contiguous", "static-eplb", "static-omni", "dynamic-eplb", "dynamic-omni", "oracle", "lower bound"}
# The workload shifts between datasets: planning on the served interval beats a placement fitted
# once, and any planned placement beats the contiguous one.
assert p["oracle"]["mean_max_over_mean"] < p["static-omni"]["mean_max_over_mean"] < p["contiguous"]["mean_max_over_mean"]
# One re-plan per interval, plus those of shift detection (on by default, as in the runtime).
assert p["dynamic-omni"]["replans"] == 12 + p["dynamic-omni"]["shift_replans"] and p["dynamic-omni"]["moved_bytes"] > 0
assert p["lower bound"]["mean_step_s"] <= min(x["mean_step_s"] for x in s["policies"])
print("qwen:", ", ".join(f'{n} {x["mean_step_s"] * 1e3:.3f} ms' for n, x in p.items()))
PY

# Per-batch dispatch on the same Qwen run: every policy (the oracle included) splits each step's loads
# over its replicas with the runtime's split; the all-gather is charged per layer. The default JSON
# has no dispatch key (default outputs unchanged).
"$omniplace" simulate --trace "$2/data/traces/qwen15moe_expert_freq_by_iteration.csv" \
  --datasets bookcorpus,wikitext,wmt19 --ranks 12 --ranks-per-host 4 --window-steps 5 --interval 25 \
  --expert-mb 17.3 --dispatch-bytes 4096 --combine-bytes 4096 --compute-us-per-token 0.0865 \
  --dispatch per-batch --allgather-us 5 --no-progress --json >"$work/qwen_pb.json"
/usr/bin/python3 - "$work/qwen.json" "$work/qwen_pb.json" <<'PY'
import json, sys
shares, batch = (json.load(open(f)) for f in sys.argv[1:3])
assert "dispatch" not in shares["cost"], shares["cost"]
assert batch["cost"]["dispatch"] == "per-batch" and abs(batch["cost"]["batch_allgather_s"] - 5e-6) < 1e-15
s = {x["name"]: x for x in shares["policies"]}
b = {x["name"]: x for x in batch["policies"]}
# eplb's placements are the same under both (it does not know the dispatch), so are the weights
# moved; the split and its token flows differ, so the cross-host traffic does too
# (docs/simulator.md). omni plans for the dispatch in force, so its placements differ.
for n in ("static-eplb",):
    assert b[n]["moved_bytes"] == s[n]["moved_bytes"], n
for n in ("static-eplb", "dynamic-omni", "oracle"):
    assert b[n]["cross_host_bytes"] > 0 and b[n]["cross_host_bytes"] != s[n]["cross_host_bytes"], n
# Stale shares: the per-batch split gives the policies that plan on past windows a better balance.
for n in ("static-eplb", "dynamic-omni"):
    assert b[n]["mean_max_over_mean"] < s[n]["mean_max_over_mean"], (n, b[n], s[n])
assert b["lower bound"]["mean_step_s"] <= min(x["mean_step_s"] for x in batch["policies"])
print("qwen per-batch:", ", ".join(f'{n} {x["mean_step_s"] * 1e3:.3f} ms' for n, x in b.items()))
PY
if "$omniplace" simulate --steps 10 --dispatch lplb --no-progress 2>"$work/err_dispatch.txt"; then
  echo "expected failure on --dispatch lplb"; exit 1
fi
grep -q "lplb" "$work/err_dispatch.txt"

# gen-trace: the same seed gives the same files; the directory replays.
"$omniplace" gen-trace --out "$work/g1" --windows 3 --window-steps 4 --layers 2 --experts 16 --top-k 2 --tokens 64 --seed 5 >/dev/null
"$omniplace" gen-trace --out "$work/g2" --windows 3 --window-steps 4 --layers 2 --experts 16 --top-k 2 --tokens 64 --seed 5 >/dev/null
"$omniplace" gen-trace --out "$work/g3" --windows 3 --window-steps 4 --layers 2 --experts 16 --top-k 2 --tokens 64 --seed 6 >/dev/null
cmp "$work/g1/window_000002.npy" "$work/g2/window_000002.npy"
if cmp -s "$work/g1/window_000002.npy" "$work/g3/window_000002.npy"; then echo "seeds 5 and 6 gave the same trace"; exit 1; fi
"$omniplace" simulate --trace "$work/g1" --window-steps 4 --ranks 4 --ranks-per-host 2 --interval 4 --no-progress \
  >"$work/g1.txt"
grep -q "^12 steps, 2 layers x 16 experts, 4 ranks" "$work/g1.txt"

# Bad input is an error with exit code 1 and a message naming the option's value.
if "$omniplace" simulate --steps 10 --skew pareto --no-progress 2>"$work/err.txt"; then
  echo "expected failure on --skew pareto"; exit 1
fi
grep -q "pareto" "$work/err.txt"
