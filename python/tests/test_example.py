"""examples/torch_moe_ep.py runs, matches the dense MoE layers and improves the balance.

C++ twin: none for the example itself; its parts are tested in tests/capture/ (recording),
tests/planner/ (planning) and tests/core/expert_map_test.cc (the dispatch map). The
example runs in this process (runpy), so torch is imported once for both tests.
"""
# omni-needs: planner capture
import json
import os
import re
import runpy

SOURCE_DIR = os.environ.get("OMNI_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(SOURCE_DIR, "examples", "torch_moe_ep.py")


def load_example():
    return runpy.run_path(EXAMPLE, run_name="torch_moe_ep")


def test_torch_moe_ep_example(tmp_path, capsys):
    out_json = tmp_path / "demo.json"
    assert load_example()["main"](["--json", str(out_json)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "OK"
    # Balance before and after re-placement is printed for both workload phases.
    phases = [line for line in lines if line.startswith("phase ")]
    assert len(phases) == 2
    for line in phases:
        m = re.search(r"max/mean ([\d.]+) before re-placement, ([\d.]+) after \(static placement: ([\d.]+)\)", line)
        assert m, line
        before, after, static = (float(g) for g in m.groups())
        assert after < before and after < static, line
    diff = re.search(r"max \|EP - dense\| = ([0-9.e+-]+)", "\n".join(lines))
    assert diff and float(diff.group(1)) < 1e-4
    records = json.loads(out_json.read_text())["per_step"]
    assert {r["policy"] for r in records} == {"dynamic (omni)", "static (contiguous)"}
    assert len(records) == 2 * 16


def test_example_detects_wrong_weights(capsys):
    # The output check must be able to fail: corrupt one slot after every re-placement.
    mod = load_example()
    cls = mod["ExpertParallelMoE"]
    original = cls.install

    def install(self, placement, initial=False):
        original(self, placement, initial)
        if not initial:
            self.ranks[0].w1[0, 0] += 1.0

    cls.install = install
    assert mod["main"](["--steps", "4", "--window", "2"]) == 1
    assert "FAILED" in capsys.readouterr().out
