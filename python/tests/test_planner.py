"""Planner bindings and the DeepSeek EPLB drop-in rebalance_experts.

C++ twins: tests/planner/ (eplb_test.cc: the golden cases of docs/REFERENCES.md section 1;
planner_test.cc: spec strings and the registry). The vLLM/SGLang integration tests at the
end have no C++ twin: neither engine is installed here, so their EPLB modules are stood
in for by modules that hold a rebalance_experts function and call it as each engine does
(positional for vLLM, keywords for SGLang). The golden outputs below were produced
by running DeepSeek's reference implementation (docs/REFERENCES.md); Python must reproduce them
exactly, in the reference's shapes and dtypes.
"""
# omni-needs: planner
import sys
import types

import numpy as np
import pytest
import torch

import omniplacement as op
import omniplacement.integrations as opi

# (weight, (num_replicas, num_groups, num_nodes, num_gpus), phy2log, logcnt), from docs/REFERENCES.md section 1.
GOLDEN = [
    ([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86], [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]],
     (16, 4, 2, 8),
     [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1], [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]],
     [[1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1], [1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1]]),
    ([[10, 20, 30, 40]], (4, 1, 1, 1), [[3, 2, 1, 0]], [[1, 1, 1, 1]]),
    ([[1000, 1, 1, 1, 1, 1, 1, 1]], (12, 2, 2, 4), [[0, 0, 3, 0, 1, 2, 6, 4, 4, 7, 5, 5]], [[3, 1, 1, 1, 2, 2, 1, 1]]),
    ([[100, 50, 200, 75, 150, 25, 300, 80]], (12, 4, 2, 4), [[6, 6, 7, 0, 6, 1, 2, 3, 4, 2, 4, 5]],
     [[1, 1, 2, 1, 2, 1, 3, 1]]),
    ([[10, 20, 30, 40, 50, 60]], (8, 3, 2, 4), [[3, 0, 2, 4, 5, 4, 5, 1]], [[1, 1, 1, 1, 2, 2]]),
    ([[200, 150, 100, 50, 25, 12], [12, 25, 50, 100, 150, 200]], (10, 3, 1, 2),
     [[1, 0, 0, 2, 5, 1, 0, 2, 3, 4], [4, 5, 5, 3, 0, 4, 5, 2, 3, 1]], [[3, 2, 2, 1, 1, 1], [1, 1, 1, 2, 2, 3]]),
]
GOLDEN_IDS = ["two-layers-hierarchical", "one-gpu", "one-hot-expert", "hierarchical-4-groups", "global-fallback",
              "one-node-two-gpus"]

FIRST_CASE_LOG2PHY = [
    [[12, -1], [15, 13], [11, -1], [6, -1], [7, 5], [0, 2], [1, -1], [3, -1], [4, -1], [9, -1], [8, 10], [14, -1]],
    [[13, -1], [15, 11], [8, -1], [14, -1], [9, -1], [10, 12], [2, 4], [0, -1], [6, 3], [7, -1], [1, -1], [5, -1]],
]


def check_consistent(phy2log, log2phy, logcnt):
    """log2phy and logcnt describe phy2log: every listed slot holds its expert, all slots listed once."""
    phy2log, log2phy, logcnt = (np.asarray(a) for a in (phy2log, log2phy, logcnt))
    for l in range(phy2log.shape[0]):
        seen = []
        for e in range(logcnt.shape[1]):
            slots = log2phy[l, e, :logcnt[l, e]]
            assert (phy2log[l, slots] == e).all()
            assert (log2phy[l, e, logcnt[l, e]:] == -1).all()
            seen.extend(slots.tolist())
        assert sorted(seen) == list(range(phy2log.shape[1]))


@pytest.mark.parametrize("weight, args, phy2log, logcnt", GOLDEN, ids=GOLDEN_IDS)
def test_eplb_golden_cases_torch(weight, args, phy2log, logcnt):
    w = torch.tensor(weight, dtype=torch.float32)
    p, l2p, cnt = op.rebalance_experts(w, *args)
    for t in (p, l2p, cnt):
        assert isinstance(t, torch.Tensor) and t.dtype == torch.int64 and t.device.type == "cpu"
    assert p.tolist() == phy2log
    assert cnt.tolist() == logcnt
    assert tuple(l2p.shape) == (len(weight), len(weight[0]), max(max(row) for row in logcnt))
    check_consistent(p.numpy(), l2p.numpy(), cnt.numpy())


@pytest.mark.parametrize("weight, args, phy2log, logcnt", GOLDEN, ids=GOLDEN_IDS)
def test_eplb_golden_cases_numpy_and_int_weights(weight, args, phy2log, logcnt):
    p, l2p, cnt = op.rebalance_experts(np.array(weight, dtype=np.int64), *args)
    assert isinstance(p, np.ndarray) and p.dtype == np.int64 and l2p.dtype == np.int64
    assert p.tolist() == phy2log and cnt.tolist() == logcnt


def test_eplb_first_case_log2phy_in_replica_rank_order():
    weight, args, _, _ = GOLDEN[0]
    _, l2p, _ = op.rebalance_experts(torch.tensor(weight, dtype=torch.float32), *args)
    assert l2p.tolist() == FIRST_CASE_LOG2PHY


def test_eplb_log2phy_by_slot_order_is_sorted():
    weight, args, phy2log, logcnt = GOLDEN[0]
    p, l2p, cnt = op.rebalance_experts(torch.tensor(weight, dtype=torch.float32), *args, replica_order="slot")
    expected = [[sorted(x for x in row if x >= 0) + [-1] * row.count(-1) for row in layer] for layer in
                FIRST_CASE_LOG2PHY]
    assert l2p.tolist() == expected
    check_consistent(p.numpy(), l2p.numpy(), cnt.numpy())


def test_eplb_rejects_what_the_reference_rejects():
    with pytest.raises(ValueError) as e:
        op.rebalance_experts(torch.tensor([[10.0, 20.0, 30.0, 40.0]]), 7, 2, 2, 4)  # 7 % 4 != 0
    assert e.value.status_code == "INVALID_ARGUMENT"
    with pytest.raises(ValueError):
        op.rebalance_experts(torch.tensor([10.0, 20.0]), 4, 1, 1, 1)  # 1-D weight
    with pytest.raises(ValueError):
        op.rebalance_experts(torch.tensor([[10.0, 20.0]]), 4, 1, 1, 1, replica_order="random")


def test_omni_planner_in_eplb_shapes_is_no_worse_and_has_no_duplicates():
    rng = np.random.default_rng(3)
    weight = torch.from_numpy(rng.lognormal(0, 1.5, size=(6, 32)).astype(np.float32))
    args = (48, 4, 2, 8)  # 48 slots on 8 GPUs in 2 nodes, 4 expert groups
    out = {}
    for planner in ("eplb", "omni"):
        p, l2p, cnt = op.rebalance_experts(weight, *args, planner=planner)
        assert p.shape == (6, 48) and cnt.shape == (6, 32) and l2p.shape[:2] == (6, 32)
        assert (p >= 0).all(), "the EPLB format has no empty slot"
        assert p.dtype == torch.int64
        check_consistent(p.numpy(), l2p.numpy(), cnt.numpy())
        placement = op.Placement(p.numpy(), num_ranks=8, num_experts=32)
        out[planner] = (op.placement_balance(placement, op.LoadMatrix(weight.double().numpy())), placement)
    assert out["omni"][0].sum_max <= out["eplb"][0].sum_max * (1 + 1e-9)
    assert op.same_rank_duplicates(out["omni"][1]) == 0


def test_planner_by_spec_string():
    assert {"contiguous", "eplb", "omni"} <= set(op.planner_names())
    planner = op.Planner("omni")
    assert planner.name == "omni" and planner.spec == "omni" and "omni" in repr(planner)
    assert op.canonical_spec(" eplb ( hierarchical ) ") == "eplb(hierarchical)"
    load = op.LoadMatrix(np.array([[50, 10, 10, 10, 5, 5, 5, 5]] * 2))
    result = planner.plan(load, num_ranks=4, slots_per_rank=3)
    p = result.placement
    assert (p.num_layers, p.num_ranks, p.num_experts, p.slots_per_rank(0)) == (2, 4, 8, 3)
    assert len(result.replica_rank) == 2 and result.stats.seconds >= 0
    # The hot expert gets replicas; the plan beats the contiguous placement.
    assert p.replica_count(0, 0) >= 2
    contiguous = op.Planner("contiguous").plan(load, num_ranks=4, num_replicas=12).placement
    assert op.placement_balance(p, load).sum_max < op.placement_balance(contiguous, load).sum_max
    # Creation-order expert map of the plan.
    emap = result.expert_map()
    assert emap.logcnt().sum(axis=1).tolist() == [p.num_replicas(0), p.num_replicas(1)]


def test_omni_forecasts_from_recent_windows_under_the_dispatch_given():
    # C++ twin: tests/planner/omni_interval_test.cc.
    rng = np.random.default_rng(3)
    base = 4000.0 / np.arange(1, 28) ** 1.0
    windows = [np.rint(base * rng.lognormal(0.0, 0.3, 27)).astype(np.int64)[None, :] for _ in range(4)]
    planner = op.Planner("omni")
    result = planner.plan(windows[-1], num_ranks=6, slots_per_rank=5, samples=windows, dispatch="per-batch")
    p = result.placement
    assert all(p.replica_count(0, e) >= 1 for e in range(27))
    # The samples are used: a plan on them differs from one on the last window alone.
    alone = planner.plan(windows[-1], num_ranks=6, slots_per_rank=5).placement
    assert p.checksum != alone.checksum
    with pytest.raises(ValueError, match="window 1 of 2"):
        planner.plan(windows[-1], num_ranks=6, slots_per_rank=5, samples=[windows[0], np.ones((1, 26), np.int64)])
    with pytest.raises(ValueError, match="dispatch"):
        planner.plan(windows[-1], num_ranks=6, slots_per_rank=5, dispatch="random")


def test_rebalance_experts_with_current_plans_incrementally_with_omni():
    # C++ twin: tests/planner/omni_interval_test.cc (DefaultSpecIsTheIntervalPlanner).
    rng = np.random.default_rng(5)
    weight = np.rint(4000.0 / np.arange(1, 33) ** 1.0 * rng.lognormal(0.0, 0.2, (2, 32))).astype(np.int64)
    first, _, _ = op.rebalance_experts(weight, 40, 1, 1, 8)             # no current: eplb, the drop-in
    eplb_again, _, _ = op.rebalance_experts(weight, 40, 1, 1, 8, planner="eplb")
    assert np.array_equal(first, eplb_again)
    # With the placement in force and the same load, omni moves nothing that does not pay.
    again, _, _ = op.rebalance_experts(weight, 40, 1, 1, 8, current=first)
    assert op.slots_changed(first, again) < op.slots_changed(first, op.rebalance_experts(weight[::-1], 40, 1, 1, 8)[0])
    omni, _, _ = op.rebalance_experts(weight, 40, 1, 1, 8, current=first, planner="omni")
    assert np.array_equal(again, omni)


def test_planner_errors_carry_the_library_message():
    with pytest.raises(ValueError) as e:
        op.Planner("no_such_planner")
    assert e.value.status_code == "NOT_FOUND" and "eplb" in str(e.value)
    with pytest.raises(ValueError) as e:
        op.Planner("omni(bogus=1)")
    assert e.value.status_code == "INVALID_ARGUMENT"
    with pytest.raises(ValueError):
        op.Planner("omni").plan(op.LoadMatrix(np.ones((1, 8), dtype=np.int64)), num_ranks=4, slots_per_rank=1)
    with pytest.raises(ValueError):
        op.Planner("omni").plan(np.ones((1, 8)), num_ranks=4, slots_per_rank=2, coactivation=np.ones((1, 8)))


# --- omniplacement.integrations -----------------------------------------------------------

WEIGHT = torch.tensor([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                       [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]], dtype=torch.float32)
GOLDEN_PHY2LOG = [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1], [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]]


@pytest.fixture
def fake_module(monkeypatch):
    def install(name):
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        module = sys.modules[name]
        module.rebalance_experts = lambda *a, **k: "engine's own"
        return module
    return install


def test_use_in_vllm_replaces_the_function_vllm_calls(fake_module):
    module = fake_module(opi.VLLM_MODULE)
    original = opi.use_in_vllm(planner="eplb")
    assert original() == "engine's own"
    phy2log, log2phy, logcnt = module.rebalance_experts(WEIGHT, 16, 4, 2, 8)  # as vLLM calls it
    assert phy2log.tolist() == GOLDEN_PHY2LOG and phy2log.dtype == torch.int64
    opi.use_in_vllm(planner="omni")
    phy2log, log2phy, logcnt = module.rebalance_experts(WEIGHT, 16, 4, 2, 8)
    assert (phy2log >= 0).all() and logcnt.sum(dim=1).tolist() == [16, 16]


def test_use_in_sglang_takes_sglangs_keywords(fake_module):
    module = fake_module(opi.SGLANG_MODULE)
    opi.use_in_sglang(planner="eplb")
    out = module.rebalance_experts(weight=WEIGHT, num_replicas=16, num_groups=4, num_nodes=2, num_gpus=8,
                                   enable_hierarchical=True)
    assert out[0].tolist() == GOLDEN_PHY2LOG
    # enable_hierarchical=False is DeepSeek's global policy, as SGLang's copy does it.
    flat = module.rebalance_experts(weight=WEIGHT, num_replicas=16, num_groups=None, num_nodes=2, num_gpus=8,
                                    enable_hierarchical=False)
    assert flat[0].tolist() == op.rebalance_experts(WEIGHT, 16, 1, 1, 8)[0].tolist()
    opi.use_in_sglang(planner="omni")
    out = module.rebalance_experts(weight=WEIGHT, num_replicas=16, num_groups=4, num_nodes=2, num_gpus=8,
                                   enable_hierarchical=True)
    assert out[0].shape == (2, 16)


def test_missing_engine_module_is_reported(fake_module):
    with pytest.raises(ModuleNotFoundError):
        opi.use_in_vllm(module_name="no_such_engine.eplb")
    module = fake_module("engine_without_eplb.eplb")
    del module.rebalance_experts
    with pytest.raises(RuntimeError, match="has no rebalance_experts"):
        opi.use_in_vllm(module_name="engine_without_eplb.eplb")


def test_eplb_policy_specs_force_the_policy():
    w = np.array([[10, 20, 30, 40, 50, 60]], dtype=np.float32)
    auto = op.rebalance_experts(w, 8, 3, 2, 4, planner="eplb")[0]              # 3 % 2 != 0: global
    forced = op.rebalance_experts(w, 8, 3, 2, 4, planner="eplb(global)")[0]
    assert auto.tolist() == forced.tolist() == [[3, 0, 2, 4, 5, 4, 5, 1]]
    with pytest.raises(ValueError):
        op.rebalance_experts(w, 8, 3, 2, 4, planner="eplb(hierarchical)")
