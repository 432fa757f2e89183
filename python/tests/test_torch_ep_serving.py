"""examples/torch_ep_serving.py: N processes serve a torch MoE while placement changes, bit for bit.

C++ twins: tests/runtime/demo_test.cc (the same protocol under `omniplace demo`: 0 wrong outputs
while epochs commit) and tests/runtime/failover_test.cc (faults never hang a rank). Each test runs
the example's run() (its workers are processes of their own) and checks the report --json prints.
"""
# omni-needs: planner runtime io
import json
import os
import sys

import pytest

SOURCE_DIR = os.environ.get("OMNI_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(SOURCE_DIR, "examples", "torch_ep_serving.py")
# Short runs: one trace window per step (bookcorpus then wikitext), a round every 4 steps,
# a vote every step, 4 layers per commit.
# The protocol under test needs rounds that move weights: the fit of each window (omni with
# forecast=false) re-places at every round, where the default omni keeps a placement whose
# moves would not pay for these tiny windows.
SHORT = ["--steps-per-window", "1", "--interval", "4", "--cadence", "1", "--metric-steps", "4",
         "--planner", "omni(forecast=false)"]


def run_example(*args):
    """(exit code, report) of the example with these arguments. The example is imported, not run
    as a script: its processes fork from one forkserver with torch imported, which keeps the CPU
    cost of the four runs small; the report is what --json prints."""
    if os.path.dirname(EXAMPLE) not in sys.path:
        sys.path.insert(0, os.path.dirname(EXAMPLE))  # stays: the worker processes import it from there
    import torch_ep_serving
    report, code = torch_ep_serving.run(torch_ep_serving.parse_args(list(args)))
    json.dumps(report)  # what --json prints must serialise
    return code, report


def test_four_processes_serve_exactly_while_epochs_commit():
    code, r = run_example("--nprocs", "4", "--steps", "32", *SHORT)
    assert code == 0, r["problems"]
    assert r["wrong_outputs"] == 0 and r["outputs_checked"] == 4 * 32 * 12 * 16
    assert r["epochs_committed"] >= 10 and r["epochs"] == [r["epochs_committed"]] * 4
    assert r["rounds_aborted"] == 0 and r["experts_moved"] > 0 and r["bytes_moved"] > 0
    # A batch holds at most 4 layers: at most 4 x 16 slots of 8,576 bytes (1,072 float64) staged by one rank.
    assert 0 < r["max_staging_bytes"] <= 4 * 16 * 8576 and r["bytes_moved"] == 8576 * r["experts_moved"]
    # The schedule is fixed (stage_wait), so the served loads are too: placement must help.
    assert r["dynamic_max_over_mean"] < r["static_max_over_mean"]


def test_a_timed_out_transfer_aborts_the_round_and_serving_goes_on():
    # Also the leader mode: rank 0 plans and broadcasts, before and after the fresh transfer group.
    code, r = run_example("--nprocs", "3", "--steps", "24", *SHORT, "--fault", "timeout", "--fault-rank", "1",
                          "--transfer-timeout-ms", "2000", "--plan-on", "leader")
    assert code == 0, r["problems"]
    assert r["fault_fired"] and r["statuses"] == ["ok"] * 3
    assert r["wrong_outputs"] == 0 and r["outputs_checked"] == 3 * 24 * 12 * 16
    assert r["rounds_aborted"] >= 1
    assert any("aborted at step" in a and ": failed (" in a and "Timed out" in a for a in r["aborts"]), r["aborts"]
    assert r["transfer_groups"] == 2          # a fresh transfer group after the abort
    assert r["rounds_completed"] >= 2         # before and after the fault
    assert len(set(r["epochs"])) == 1


def test_a_killed_peer_stops_the_survivors_cleanly_on_the_old_placement():
    code, r = run_example("--nprocs", "3", "--steps", "24", *SHORT, "--fault", "kill", "--fault-rank", "1")
    assert code == 0, r["problems"]
    assert r["exit_codes"][1] == 17 and r["hung_ranks"] == [] and r["fault_fired"]
    assert r["statuses"] == ["stopped", "stopped"]      # ranks 0 and 2 report the dead peer
    assert all("Connection" in e or "agreement" in e for e in r["errors"]), r["errors"]
    assert r["wrong_outputs"] == 0 and r["outputs_checked"] > 0
    assert r["rounds_aborted"] + r["rounds_closed"] == 1   # the round in flight, nothing committed after it
    assert len(set(r["epochs"])) == 1


def test_the_check_reports_wrong_outputs():
    code, r = run_example("--nprocs", "2", "--steps", "3", "--layers", "2", "--corrupt-step", "1")
    assert code == 1
    assert r["wrong_outputs"] > 0 and any("slot weights" in p for p in r["problems"])


def test_cuda_serves_exactly_as_the_cpu_does():
    """--device cuda: slots, tables and counts on the GPU. Skipped without a CUDA device (run on
    an H200, docs/BENCHMARKS.md). The schedule is fixed (stage_wait), so the loads served must
    equal the CPU run's."""
    import torch
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    args = ("--nprocs", "2", "--steps", "16", *SHORT)
    code, cuda = run_example(*args, "--device", "cuda")
    assert code == 0, cuda["problems"]
    assert cuda["device"] == "cuda"
    assert cuda["wrong_outputs"] == 0 and cuda["outputs_checked"] == 2 * 16 * 12 * 16
    assert cuda["epochs_committed"] >= 1 and cuda["experts_moved"] > 0
    code, cpu = run_example(*args, "--device", "cpu")
    assert code == 0, cpu["problems"]
    assert cuda["dynamic_max_over_mean"] == cpu["dynamic_max_over_mean"]
    assert cuda["experts_moved"] == cpu["experts_moved"]


def test_cuda_without_a_cuda_device_is_refused_with_what_to_do(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    if os.path.dirname(EXAMPLE) not in sys.path:
        sys.path.insert(0, os.path.dirname(EXAMPLE))
    import torch_ep_serving
    with pytest.raises(SystemExit):
        torch_ep_serving.parse_args(["--device", "cuda"])
    err = capsys.readouterr().err
    assert "--device cuda" in err and "sees no CUDA device" in err and "--device cpu" in err
