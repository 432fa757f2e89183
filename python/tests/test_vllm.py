"""omniplacement.vllm: vLLM's EPLB policy contract, checked against a stand-in vLLM.

vLLM cannot be installed here; standins/vllm reproduces its policy registry and how
EplbState calls a policy (standins/README.md), in both contract generations (the policy
returns the three maps, vLLM 0.14-0.18, or phy2log alone, 0.23+). C++ twins of what the
policy runs: tests/planner/eplb_test.cc (the DeepSeek golden cases, also in
test_planner.py) and tests/planner/omni_incremental_test.cc (incremental planning).
"""
# omni-needs: planner
import importlib
import os
import sys
import types

import numpy as np
import pytest
import torch

import omniplacement as op
import omniplacement.integrations as opi
import omniplacement.vllm as ov
from test_planner import FIRST_CASE_LOG2PHY, GOLDEN, GOLDEN_IDS, check_consistent

STANDINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standins")


def _purge(prefix):
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


@pytest.fixture(params=["phy2log", "maps"])
def vllm(request, monkeypatch):
    """The stand-in vLLM in one contract generation; its modules are dropped afterwards."""
    monkeypatch.setenv("VLLM_STANDIN_CONTRACT", request.param)
    monkeypatch.syspath_prepend(STANDINS)
    _purge("vllm")
    yield types.SimpleNamespace(contract=request.param,
                                policy=importlib.import_module("vllm.distributed.eplb.policy"),
                                state=importlib.import_module("vllm.distributed.eplb.eplb_state"),
                                config=importlib.import_module("vllm.config.parallel"))
    _purge("vllm")


def zipf_load(num_layers, num_experts, seed, scale=10000.0):
    rng = np.random.default_rng(seed)
    base = scale / np.arange(1, num_experts + 1) ** 1.1
    return np.stack([np.rint(rng.permutation(base) * rng.lognormal(0, 0.2, num_experts))
                     for _ in range(num_layers)]).astype(np.int64)


def rank_max_over_mean(phy2log, load, num_ranks):
    phy2log, load = np.asarray(phy2log), np.asarray(load, dtype=np.float64)
    out = []
    for l in range(phy2log.shape[0]):
        cnt = np.bincount(phy2log[l], minlength=load.shape[1])
        per_slot = load[l][phy2log[l]] / cnt[phy2log[l]]
        ranks = per_slot.reshape(num_ranks, -1).sum(axis=1)
        out.append(ranks.max() / ranks.mean())
    return float(np.mean(out))


def test_policy_returns_vllms_shapes_dtypes_and_padding():
    weight = torch.tensor(zipf_load(3, 16, seed=1), dtype=torch.int32)  # vLLM's window sums are int32
    phy2log, log2phy, logcnt = ov.OmniEplbPolicy.rebalance_experts(weight, 20, 1, 1, 4)
    assert phy2log.shape == (3, 20) and log2phy.shape == (3, 16, 20 - 16 + 1) and logcnt.shape == (3, 16)
    for t in (phy2log, log2phy, logcnt):
        assert t.dtype == torch.int64 and t.device == weight.device
    check_consistent(phy2log, log2phy, logcnt)        # padding is -1 beyond logcnt, every slot listed once
    assert (logcnt >= 1).all() and (logcnt.sum(dim=1) == 20).all()
    # No expert twice on one rank (omni never wastes a replica).
    for l in range(3):
        for r in range(4):
            on_rank = phy2log[l, r * 5:(r + 1) * 5]
            assert len(set(on_rank.tolist())) == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_policy_returns_on_the_weights_device():
    weight = torch.tensor(zipf_load(2, 16, seed=2), device="cuda")
    for t in ov.OmniEplbPolicy.rebalance_experts(weight, 20, 1, 1, 4):
        assert t.device == weight.device and t.dtype == torch.int64


@pytest.mark.parametrize("weight, args, phy2log, logcnt", GOLDEN, ids=GOLDEN_IDS)
def test_eplb_planner_reproduces_the_deepseek_reference(weight, args, phy2log, logcnt):
    policy = ov.policy_class("eplb")
    out = policy.rebalance_experts(torch.tensor(weight, dtype=torch.float32), *args)
    assert out[0].tolist() == phy2log and out[2].tolist() == logcnt
    assert out[1].shape[-1] == args[0] - len(weight[0]) + 1   # vLLM's width: redundant experts + 1
    if args == GOLDEN[0][1]:
        assert out[1][..., :2].tolist() == FIRST_CASE_LOG2PHY and (out[1][..., 2:] == -1).all()
    assert policy.returns == "maps" and ov.policy_class("eplb", returns="phy2log").rebalance_experts(
        torch.tensor(weight), *args).tolist() == phy2log


def test_old_placement_is_planned_incrementally_and_keeps_slots():
    L, E, R, ranks = 4, 16, 20, 4
    first = zipf_load(L, E, seed=3)
    phy2log, _, _ = ov.OmniEplbPolicy.rebalance_experts(torch.tensor(first), R, 1, 1, ranks)
    drifted = np.rint(first * np.random.default_rng(4).lognormal(0, 0.15, first.shape)).astype(np.int64)
    for planner in ("omni", "omni(max_moves_per_rank=1)", "eplb"):
        policy = ov.policy_class(planner)
        scratch = policy.rebalance_experts(torch.tensor(drifted), R, 1, 1, ranks)[0]
        incremental, log2phy, logcnt = policy.rebalance_experts(torch.tensor(drifted), R, 1, 1, ranks, phy2log)
        check_consistent(incremental, log2phy, logcnt)
        moved, moved_scratch = op.slots_changed(phy2log, incremental), op.slots_changed(
            phy2log, scratch)
        assert moved < moved_scratch, planner
        # The same experts on every rank as from scratch for eplb (only slots reordered).
        if planner == "eplb":
            for l in range(L):
                for r in range(ranks):
                    assert sorted(incremental[l, r * 5:(r + 1) * 5].tolist()) == sorted(
                        scratch[l, r * 5:(r + 1) * 5].tolist())
        assert rank_max_over_mean(incremental, drifted, ranks) < rank_max_over_mean(
            np.tile(np.arange(R) % E, (L, 1)), drifted, ranks)
    budgeted = ov.policy_class("omni(max_moves_per_rank=1)").rebalance_experts(torch.tensor(drifted), R, 1, 1,
                                                                               ranks, phy2log)[0]
    changed_per_rank = (budgeted != phy2log).reshape(L, ranks, 5).sum(dim=2)
    assert int(changed_per_rank.max()) <= 1


def test_an_old_map_of_another_width_is_ignored():
    # vLLM after an elastic scale-down: num_replicas changed, the old map has the old width.
    w = torch.tensor(zipf_load(2, 16, seed=5))
    old = torch.arange(24).remainder(16).expand(2, -1)
    assert torch.equal(ov.OmniEplbPolicy.rebalance_experts(w, 20, 1, 1, 4, old)[0],
                       ov.OmniEplbPolicy.rebalance_experts(w, 20, 1, 1, 4)[0])


def test_register_puts_the_policy_into_vllms_registry(vllm):
    default = vllm.policy.EPLB_POLICIES["default"]
    restore = ov.register(planner="omni")
    cls = vllm.policy.EPLB_POLICIES["default"]
    assert issubclass(cls, vllm.policy.AbstractEplbPolicy) and cls.planner == "omni"
    assert cls.returns == vllm.contract            # read from the installed AbstractEplbPolicy
    with pytest.raises(ValueError):
        vllm.config.EPLBConfig(policy="omni")      # why register() takes the name "default"
    # vLLM's flow: the model is added (the policy looked up by name), loads recorded, rearranged.
    L, E, redundant, ranks = 3, 16, 4, 4
    state = vllm.state.EplbState(vllm.config.EPLBConfig(window_size=4, num_redundant_experts=redundant), L, E, ranks)
    assert state.policy is cls
    load = zipf_load(L, E, seed=6)
    initial = state.physical_to_logical_map.clone()
    for step in range(4):   # physical loads of the initial map: expert e's tokens split over its replicas
        cnt = torch.stack([torch.bincount(row, minlength=E) for row in initial])
        state.record(torch.tensor(load)[torch.arange(L)[:, None], initial] // cnt.gather(1, initial) // 4)
    new = state.rearrange()
    check_consistent(new, state.logical_to_physical_map, state.logical_replica_count)
    assert state.logical_to_physical_map.shape[-1] == redundant + 1
    assert rank_max_over_mean(new, load, ranks) < rank_max_over_mean(initial, load, ranks)
    restore()
    assert vllm.policy.EPLB_POLICIES["default"] is default


def test_registered_policy_moves_few_experts_on_the_next_rearrangement(vllm):
    ov.register(planner="omni(max_moves_per_rank=1)")
    L, E, ranks = 4, 16, 4
    state = vllm.state.EplbState(vllm.config.EPLBConfig(window_size=1, num_redundant_experts=4), L, E, ranks)

    def rearrange_on(load):
        phy = state.physical_to_logical_map
        cnt = torch.stack([torch.bincount(row, minlength=E) for row in phy])
        state.record(torch.tensor(load)[torch.arange(L)[:, None], phy] // cnt.gather(1, phy))
        return state.rearrange()

    rearrange_on(zipf_load(L, E, seed=7))
    second = zipf_load(L, E, seed=7) + zipf_load(L, E, seed=8) // 10
    before = state.physical_to_logical_map.clone()
    after = rearrange_on(second)
    assert 0 < state.moved_slots <= L * ranks      # at most one slot per rank and layer
    assert state.moved_slots == int((after != before).sum())


def test_plugin_registers_from_the_environment(vllm, monkeypatch):
    default = vllm.policy.EPLB_POLICIES["default"]
    monkeypatch.delenv(ov.PLANNER_ENV, raising=False)
    ov.plugin()
    assert vllm.policy.EPLB_POLICIES["default"] is default
    monkeypatch.setenv(ov.PLANNER_ENV, "omni(max_moves_per_rank=2)")
    ov.plugin()
    assert vllm.policy.EPLB_POLICIES["default"].planner == "omni(max_moves_per_rank=2)"
    monkeypatch.setenv(ov.PLANNER_ENV, "no_such_planner")
    with pytest.raises(ValueError, match="no_such_planner"):
        ov.plugin()


def test_use_in_vllm_registers_on_the_policy_layout(vllm):
    default = vllm.policy.EPLB_POLICIES["default"]
    assert opi.use_in_vllm(planner="eplb") is default
    assert vllm.policy.EPLB_POLICIES["default"].planner == "eplb"


def test_register_reports_a_vllm_without_the_registry(monkeypatch):
    for name in ("old_vllm", "old_vllm.eplb"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    with pytest.raises(RuntimeError, match="predates the policy registry"):
        ov.register(module_name="old_vllm.eplb")
    with pytest.raises(ValueError, match="returns"):
        ov.policy_class("omni", returns="everything")
