#!/bin/bash
# Reproduces the planner figures of issue 16 in one run (docs/BENCHMARKS.md,
# "Re-planning for the next interval"): every workload re-planned after every
# window from the placement in force and measured on the next window, under
# static shares and under the runtime's per-batch split.
#   bench/plan_eval/run.sh [BUILD_DIR] [OUT_DIR]
# Writes OUT_DIR/*.txt (tables) and OUT_DIR/*.jsonl (one JSON object per row).
# About 10 minutes of CPU on one core (the held-out set is most of it).
set -euo pipefail
build=${1:-build}
out=${2:-/tmp/plan_eval}
mkdir -p "$out"
eval_bin="$build/bin/omniplace_plan_eval"
P='scratch:eplb;inc:omni(forecast=false);inc:omni(forecast=false,max_moves_per_rank=1);inc:omni;oracle:eplb;oracle:omni'
# The workloads tuned on: the demo's, the Qwen replay of `plan --current`, DeepSeek-V3 size.
"$eval_bin" eval --workloads qwen,demo,dsv3 --policies "$P" --json "$out/tuned.jsonl" | tee "$out/tuned.txt"
# The demo with the serving figures its runtime hands the planner (1,088-byte toy experts).
"$eval_bin" eval --workloads demo --policies 'scratch:eplb;inc:omni' --expert-bytes 1088 \
  --json "$out/demo_runtime.jsonl" | tee "$out/demo_runtime.txt"
# The Qwen replay when each plan serves five windows.
"$eval_bin" eval --workloads qwen --policies 'scratch:eplb;inc:omni' --interval-windows 5 \
  --json "$out/qwen_5.jsonl" | tee "$out/qwen_5.txt"
# Held out (not tuned on): 3 shapes x Zipf/lognormal x drift/bursts/phase.
"$eval_bin" eval --workloads held-out --policies 'scratch:eplb;inc:omni(forecast=false);inc:omni' \
  --json "$out/held_out.jsonl" | tee "$out/held_out.txt"
# Every held-out row where omni realises worse than eplb from scratch.
/usr/bin/python3 - "$out/held_out.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
eplb = {(r["workload"], r["dispatch"]): r for r in rows if r["policy"] == "scratch:eplb"}
print("held-out workloads where inc:omni realises above scratch:eplb (max/mean of the next window), and the")
print("time both spend (busiest rank's compute over the next windows + their migrations as a stall, diff()'s model):")
for r in rows:
    if r["policy"] != "inc:omni":
        continue
    e = eplb[(r["workload"], r["dispatch"])]
    mark = "LOSES" if r["realised"] > e["realised"] else "wins "
    t, te = r["compute_s"] + r["migration_s"], e["compute_s"] + e["migration_s"]
    print(f'  {mark} {r["workload"]:32s} {r["dispatch"]:9s} omni {r["realised"]:.4f} eplb {e["realised"]:.4f} '
          f'({r["realised"] - e["realised"]:+.4f}), moves {r["moves"]} = {100 * r["moves"] / max(1, e["moves"]):.1f}% of eplb, '
          f'time {t:.3f} s (migration {r["migration_s"]:.3f}) against {te:.3f} s (migration {e["migration_s"]:.3f}): '
          f'{100 * (t / te - 1):+.1f}%, cpu {r["cpu_ms_mean"]:.1f} ms mean {r["cpu_ms_max"]:.1f} max')
PY
