"""omniplace_plan_eval's JSON rows: where the moves' bytes go (bench/plan_eval/README.md).

Runs the harness on the Qwen replay with 1 GB experts and checks each row's link-class
counts and receive times against what they must be by construction:
  - diff()'s transfers within and across hosts are at most the slots changed;
  - the mean receive time x ranks is the transfers' summed link time (latency + bytes /
    bandwidth, the default bandwidths of core/topology.h), plus at most one same-rank copy
    (an expert moved between slots of a rank) per other changed slot;
  - mean <= busiest receiver <= the migration's time (each round lasts at least as long
    as any rank's receiving in it);
and that eplb from scratch and inc:omni both move something here (the check is not empty).
Usage: plan_eval_json_test.py PLAN_EVAL_BINARY
"""
import json
import subprocess
import sys
import tempfile

RANKS = 12  # the qwen workload: 12 ranks x 6 slots, 3 hosts of 4
BYTES = 1.0e9
LATENCY, SAME_RANK, SAME_HOST, CROSS_HOST = 10.0e-6, 1.0e12, 300.0e9, 50.0e9


def main():
    binary = sys.argv[1]
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as out:
        subprocess.run([binary, "eval", "--workloads", "qwen", "--policies", "scratch:eplb;inc:omni",
                        "--expert-bytes", str(int(BYTES)), "--json", out.name],
                       check=True, stdout=subprocess.DEVNULL)
        rows = [json.loads(line) for line in open(out.name)]
    assert len(rows) == 4, rows
    for r in rows:
        name = f'{r["policy"]} {r["dispatch"]}'
        assert r["error"] == "", (name, r["error"])
        same, cross = r["transfers_same_host"], r["transfers_cross_host"]
        assert same >= 0 and cross >= 0 and same + cross > 0, (name, same, cross)
        assert same + cross <= r["moves"], (name, same, cross, r["moves"])
        linked = same * (LATENCY + BYTES / SAME_HOST) + cross * (LATENCY + BYTES / CROSS_HOST)
        total = r["receive_mean_s"] * RANKS
        same_rank_most = (r["moves"] - same - cross) * (LATENCY + BYTES / SAME_RANK)
        assert linked - 1e-5 <= total <= linked + same_rank_most + 1e-5, (name, total, linked, same_rank_most)
        assert r["receive_mean_s"] <= r["receive_busiest_s"] + 1e-9, name
        assert r["receive_busiest_s"] <= r["migration_s"] + 1e-6, (name, r["receive_busiest_s"], r["migration_s"])
    print("plan_eval JSON link-class figures: ok")


if __name__ == "__main__":
    main()
