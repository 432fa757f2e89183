"""omniplacement.sglang: SGLang's algorithm table, its load dumps and its placement file,
checked against a stand-in SGLang (standins/README.md); and the TensorRT-LLM load
balancer YAML (omniplacement.trtllm) against its documented format.

C++ twins of the planners behind the adapters: tests/planner/omni_per_batch_test.cc
(plans on recent windows) and tests/planner/omni_incremental_test.cc.
"""
# omni-needs: planner
import importlib
import json
import os
import sys
import types

import numpy as np
import pytest
import torch
import yaml

import omniplacement as op
import omniplacement.sglang as osg
import omniplacement.trtllm as otr
from test_planner import check_consistent
from test_vllm import STANDINS, _purge, zipf_load


@pytest.fixture
def sglang(monkeypatch):
    monkeypatch.syspath_prepend(STANDINS)
    _purge("sglang")
    yield types.SimpleNamespace(
        algorithms=importlib.import_module("sglang.srt.eplb.eplb_algorithms"),
        location=importlib.import_module("sglang.srt.eplb.expert_location"),
        distribution=importlib.import_module("sglang.srt.eplb.expert_distribution"),
        ServerArgs=importlib.import_module("sglang.srt.server_args").ServerArgs)
    _purge("sglang")


def model(num_layers, num_experts, num_groups=None):
    from sglang.srt.eplb.expert_location import ModelConfigForExpertLocation
    return ModelConfigForExpertLocation(num_layers, num_experts, num_groups)


def steps_of(load, num_steps, seed):
    """[num_steps, L, E] counts that sum to about `load`, varying step to step."""
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.ones(num_steps) * 5, size=load.shape).transpose(2, 0, 1)
    return np.rint(shares * load[None]).astype(np.int64)


def test_per_step_counts_are_summed_and_their_steps_reach_the_planner():
    load = zipf_load(3, 16, seed=11)
    steps = steps_of(load, 6, seed=12)
    summed = osg.rebalance_experts(steps.sum(axis=0), 20, 5, None, 1)
    per_step = osg.rebalance_experts(steps, 20, 5, None, 1)
    check_consistent(*summed)
    check_consistent(*per_step)          # omni forecasts from the steps (below), not from their sum alone
    assert per_step[0].shape == (3, 20) and per_step[0].dtype == np.int64
    # omni forecasts from the steps themselves: the plan is the planner's with the steps as
    # samples, not the one on their sum alone.
    rng = np.random.default_rng(3)
    base = 4000.0 / np.arange(1, 28) ** 1.0
    windows = np.stack([np.rint(base * rng.lognormal(0.0, 0.3, 27)).astype(np.int64)[None, :] for _ in range(4)])
    spec = "omni"
    with_steps = osg.rebalance_experts(windows, 30, 5, None, 1, planner=spec)[0]
    direct = op.Planner(spec).plan(windows.sum(axis=0), num_ranks=6, num_replicas=30, samples=list(windows))
    assert np.array_equal(with_steps, direct.placement.phy2log_matrix())
    assert not np.array_equal(with_steps, op.rebalance_experts(windows.sum(axis=0), 30, 1, 1, 6, planner=spec)[0])
    with pytest.raises(ValueError, match="num_steps, num_layers, num_experts"):
        osg.rebalance_experts(np.ones((2, 2, 2, 8)), 8, 2, None, 1)


def test_register_adds_an_algorithm_to_sglangs_table(sglang):
    restore = osg.register(name="omni", planner="omni")
    alg = sglang.algorithms.compute_algorithm("omni", num_groups=None, num_nodes=1)
    assert alg.name == "omni"
    args = sglang.ServerArgs(ep_size=4, ep_num_redundant_experts=4, eplb_algorithm="omni")
    counts = torch.tensor(steps_of(zipf_load(3, 16, seed=13), 5, seed=14), dtype=torch.int32)
    meta = sglang.location.ExpertLocationMetadata.init_by_eplb(args, model(3, 16), logical_count=counts)
    p2l = meta.physical_to_logical_map
    assert p2l.shape == (3, 20) and p2l.dtype == torch.int64
    assert (meta.logical_to_all_physical_map_num_valid >= 1).all()    # every expert placed
    assert torch.equal(p2l, torch.as_tensor(osg.rebalance_experts(counts, 20, 5, None, 1)[0]))
    # The other algorithms still reach SGLang's own (the stand-in's placeholder: experts by id).
    args.eplb_algorithm = "deepseek"
    own = sglang.location.ExpertLocationMetadata.init_by_eplb(args, model(3, 16), logical_count=counts)
    assert own.physical_to_logical_map[0].tolist() == [e % 16 for e in range(20)]
    restore()
    assert "omni" not in sglang.algorithms.EplbAlgorithm.__members__
    with pytest.raises(KeyError):
        sglang.algorithms.compute_algorithm("omni", num_groups=None, num_nodes=1)


def test_registered_algorithm_plans_from_the_placement_in_force(sglang):
    L, E, ranks = 4, 16, 4
    args = sglang.ServerArgs(ep_size=ranks, ep_num_redundant_experts=4, eplb_algorithm="omni")
    first = zipf_load(L, E, seed=15)
    drifted = np.rint(first * np.random.default_rng(16).lognormal(0, 0.15, first.shape)).astype(np.int64)
    moves = {}
    for incremental in (True, False):
        restore = osg.register(name="omni", planner="omni", incremental=incremental)
        sglang.location.set_global_expert_location_metadata(
            sglang.location.ExpertLocationMetadata.init_by_eplb(args, model(L, E), logical_count=first))
        before = sglang.location.get_global_expert_location_metadata().physical_to_logical_map_cpu
        after = sglang.location.ExpertLocationMetadata.init_by_eplb(args, model(L, E), logical_count=drifted)
        moves[incremental] = int((after.physical_to_logical_map != before).sum())
        restore()
        sglang.location.set_global_expert_location_metadata(None)
    assert moves[True] < moves[False]


def test_register_can_take_over_an_existing_algorithm(sglang):
    osg.register(name="deepseek", planner="eplb")
    assert "omni" not in sglang.algorithms.EplbAlgorithm.__members__
    counts = torch.tensor([[[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86]]])
    out = sglang.algorithms.rebalance_experts(counts, 16, 2, 4, 2, sglang.algorithms.EplbAlgorithm.deepseek)
    assert out[0].tolist() == op.rebalance_experts(counts[0], 16, 4, 2, 8, planner="eplb")[0].tolist()


def test_register_reports_an_sglang_without_the_table(monkeypatch):
    monkeypatch.setitem(sys.modules, "old_sglang_eplb", types.ModuleType("old_sglang_eplb"))
    with pytest.raises(RuntimeError, match="no EplbAlgorithm"):
        osg.register(module_name="old_sglang_eplb")


def recorded_passes(num_layers, p2l, num_passes, tokens, top_k, seed):
    rng = np.random.default_rng(seed)
    num_physical = p2l.shape[1]
    ids = rng.integers(0, num_physical, size=(num_passes, num_layers, tokens, top_k))
    ids[rng.random(ids.shape) < 0.05] = -1      # padding
    return ids


def expected_logical(ids, p2l, num_experts):
    out = np.zeros((ids.shape[0], ids.shape[1], num_experts), dtype=np.int64)
    for s in range(ids.shape[0]):
        for l in range(ids.shape[1]):
            phys = ids[s, l][ids[s, l] >= 0]
            out[s, l] = np.bincount(p2l[l][phys], minlength=num_experts)
    return out


@pytest.mark.parametrize("mode", ["stat", "per_pass", "per_token"])
def test_reads_sglangs_expert_distribution_dumps(sglang, tmp_path, mode):
    L, E, P = 3, 8, 10
    p2l = np.array([np.r_[np.arange(E), [l, l + 1]] for l in range(L)])
    recorders = [sglang.distribution.Recorder(mode, torch.tensor(p2l), E, rank=r) for r in range(2)]
    ids = [recorded_passes(L, p2l, 4, 6, 2, seed=20 + r) for r in range(2)]
    for rec, rank_ids in zip(recorders, ids):
        for fid in range(4):
            rec.on_forward_pass(100 + fid, torch.tensor(rank_ids[fid]))
    if mode == "stat":
        paths = [recorders[0].dump(tmp_path, others=recorders[1:])]
    else:
        paths = [rec.dump(tmp_path / f"rank{rec.rank}") for rec in recorders]
    counts = osg.read_expert_distribution([str(p) for p in paths])
    want = expected_logical(ids[0], p2l, E) + expected_logical(ids[1], p2l, E)
    assert counts.shape == (4, L, E) and counts.dtype == np.int64
    assert np.array_equal(counts, want)


def test_dump_errors_name_the_file(tmp_path):
    path = tmp_path / "not_a_dump.pt"
    torch.save({"something": 1}, str(path))
    with pytest.raises(ValueError, match="not_a_dump.pt"):
        osg.read_expert_distribution(str(path))


@pytest.mark.parametrize("suffix", [".pt", ".json"])
def test_init_expert_location_file_round_trips_through_sglang(sglang, tmp_path, suffix):
    phy2log = osg.rebalance_experts(zipf_load(3, 16, seed=30), 20, 5, None, 1)[0]
    path = str(tmp_path / f"placement{suffix}")
    osg.write_init_expert_location(path, phy2log)
    assert np.array_equal(osg.read_init_expert_location(path), phy2log)
    args = sglang.ServerArgs(ep_size=4, ep_num_redundant_experts=4, init_expert_location=path)
    meta = sglang.location.compute_initial_expert_location_metadata(args, model(3, 16))
    assert meta.physical_to_logical_map.tolist() == phy2log.tolist()
    if suffix == ".json":
        assert list(json.load(open(path, encoding="utf-8"))) == ["physical_to_logical_map"]
    bad = phy2log.copy()
    bad[1, 3] = -1
    with pytest.raises(ValueError, match="empty"):
        osg.write_init_expert_location(path, bad)
    with pytest.raises(ValueError, match=".pt or .json"):
        osg.write_init_expert_location(str(tmp_path / "placement.yaml"), phy2log)


def test_plan_from_dumps_end_to_end(sglang, tmp_path):
    L, E = 2, 8
    p2l = np.tile(np.arange(E + 4) % E, (L, 1))
    rec = sglang.distribution.Recorder("stat", torch.tensor(p2l), E)
    for fid, pass_ids in enumerate(recorded_passes(L, p2l, 3, 32, 2, seed=40)):
        rec.on_forward_pass(fid, torch.tensor(pass_ids))
    dump = rec.dump(tmp_path)
    out = tmp_path / "init.pt"
    phy2log = osg.plan_from_dumps([str(dump)], str(out), num_physical_experts=12, ep_size=4)
    args = sglang.ServerArgs(ep_size=4, ep_num_redundant_experts=4, init_expert_location=str(out))
    meta = sglang.location.compute_initial_expert_location_metadata(args, model(L, E))
    assert meta.physical_to_logical_map.tolist() == phy2log.tolist()
    assert (meta.logical_to_all_physical_map_num_valid >= 1).all()


# --- omniplacement.trtllm -------------------------------------------------------------------

def test_trtllm_load_balancer_yaml_has_the_documented_form(tmp_path):
    L, E, slots, ep = 3, 16, 24, 4
    phy2log, _, _ = op.rebalance_experts(zipf_load(L, E, seed=50), slots, 1, 1, ep, planner="omni")
    path = tmp_path / "moe_load_balancer.yaml"
    otr.write_load_balancer_config(path, phy2log, first_layer=3)
    data = yaml.safe_load(path.read_text())
    assert set(data) == {"num_slots", "layer_updates_per_iter", "initial_global_assignments"}
    assert data["num_slots"] == slots and data["layer_updates_per_iter"] == 0
    assert sorted(data["initial_global_assignments"]) == [3, 4, 5]
    for l, layer in enumerate((3, 4, 5)):
        row = data["initial_global_assignments"][layer]
        assert row == phy2log[l].tolist() and len(row) == slots
        assert set(row) == set(range(E))                          # every expert has a slot
        for r in range(ep):                                        # successive num_slots / ep_size = a rank
            assert len(set(row[r * slots // ep:(r + 1) * slots // ep])) == slots // ep
    back = otr.read_load_balancer_config(path)
    assert back["layer_ids"] == [3, 4, 5] and np.array_equal(back["phy2log"], phy2log)
    otr.write_load_balancer_config(path, torch.as_tensor(phy2log), layer_updates_per_iter=2, layer_ids=[7, 1, 4])
    back = otr.read_load_balancer_config(path)
    assert back["layer_updates_per_iter"] == 2 and back["layer_ids"] == [1, 4, 7]
    assert np.array_equal(back["phy2log"], phy2log[[1, 2, 0]])


def test_trtllm_writer_refuses_what_the_balancer_cannot_take(tmp_path):
    empty = op.Planner("contiguous").plan(np.ones((1, 8)), num_ranks=4, slots_per_rank=3).placement
    with pytest.raises(ValueError, match="layer 0, slot 2 is empty"):
        otr.write_load_balancer_config(tmp_path / "x.yaml", empty)
    with pytest.raises(ValueError, match="layer_ids"):
        otr.write_load_balancer_config(tmp_path / "x.yaml", np.zeros((2, 4), np.int64), layer_ids=[1, 1])
    (tmp_path / "y.yaml").write_text("num_slots: 4\ninitial_global_assignments:\n  0: [0, 1, 2]\n")
    with pytest.raises(ValueError, match="layer 0 assigns 3 slots"):
        otr.read_load_balancer_config(tmp_path / "y.yaml")
