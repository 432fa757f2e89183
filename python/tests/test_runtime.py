# omni-needs: runtime io
"""LocalCluster and ManagerOptions from Python (python/src/bind_runtime.cc).

C++ twins: tests/runtime/placement_manager_test.cc (PlacementManagerProtocol:
routing only to slots holding the expected weights, all ranks at one epoch) and
tests/runtime/manager_dumps_test.cc (PlacementManagerDumps, ManagerConfig).
"""
import numpy as np
import pytest

import omniplacement as op
import omniplacement.io as oio

RANKS, LAYERS, EXPERTS, SLOTS, SLOT_BYTES, TOKENS = 4, 2, 8, 3, 32, 48


def weight_code(layer, expert):
    """The byte every weight of (layer, expert) is made of: distinct per pair."""
    return 1 + layer * EXPERTS + expert


def make_cluster(**options):
    placement = op.Placement.contiguous(num_layers=LAYERS, num_ranks=RANKS, num_experts=EXPERTS,
                                        slots_per_rank=SLOTS)
    opts = op.ManagerOptions(planner_spec="eplb", replan_interval_steps=4, commit_cadence_steps=1,
                             stage_wait_ms=5000, **options)
    cluster = op.LocalCluster(placement, SLOT_BYTES, options=opts,
                              topology=op.Topology.uniform(num_ranks=RANKS, ranks_per_host=2))
    for r in range(RANKS):
        for layer in range(LAYERS):
            for s in range(SLOTS):
                e = placement.expert_at(layer, r * SLOTS + s)
                if e >= 0:
                    cluster.write_slot(r, layer, s, np.full(SLOT_BYTES, weight_code(layer, e), np.uint8))
    return cluster


def skewed_ids(rng, step):
    # The hot expert changes every 6 steps, so re-plans move weights.
    hot = (step // 6) % EXPERTS
    ids = rng.integers(0, EXPERTS, size=(TOKENS // 2, 2), dtype=np.int64)
    ids[rng.random(ids.shape) < 0.6] = hot
    return ids


def check_routing(cluster, layer, ids_per_rank, slots_per_rank):
    """Every dispatched slot holds, on its owning rank, the weights of the expert asked for."""
    for ids, slots in zip(ids_per_rank, slots_per_rank):
        assert slots.shape == ids.shape and slots.dtype == np.int32
        for e, g in zip(ids.ravel(), slots.ravel()):
            if e < 0:  # padding is not dispatched
                assert g == -1
                continue
            owner, local = divmod(int(g), SLOTS)
            assert cluster.read_slot(owner, layer, local)[0] == weight_code(layer, int(e))


def test_weights_move_and_every_rank_commits_the_same_epoch():
    """Twin: PlacementManagerProtocol.RandomizedNeverRoutesToIncompleteSlots."""
    rng = np.random.default_rng(7)
    with make_cluster() as cluster:
        assert cluster.num_ranks == RANKS and cluster.num_layers == LAYERS and cluster.num_experts == EXPERTS
        for step in range(40):
            for layer in range(LAYERS):
                ids = [skewed_ids(rng, step) for _ in range(RANKS)]
                for r in range(RANKS):
                    cluster.record(r, layer, ids[r])
                slots = [cluster.dispatch(r, layer, ids[r]) for r in range(RANKS)]
                check_routing(cluster, layer, ids, slots)
            cluster.step_boundary(step)
            epochs = {cluster.epoch(r) for r in range(RANKS)}
            assert len(epochs) == 1, f"ranks disagree on the epoch at step {step}: {epochs}"
        stats = [cluster.stats(r) for r in range(RANKS)]
        assert stats[0]["epoch"] >= 2 and stats[0]["experts_moved"] > 0
        assert len({s["placement_checksum"] for s in stats}) == 1
        assert stats[0]["steps"] == 40 and stats[0]["rounds_aborted"] == 0
        assert cluster.placement(0).checksum == stats[0]["placement_checksum"]
        assert "epoch" in repr(cluster)
    assert cluster.closed and "closed" in repr(cluster)
    with pytest.raises(RuntimeError, match="closed"):
        cluster.step_boundary(41)


def test_per_batch_mode_dispatches_all_ranks_at_once():
    """Twin: PlacementManagerProtocol (the per-batch scenarios)."""
    rng = np.random.default_rng(3)
    with make_cluster(dispatch_mode="per-batch") as cluster:
        with pytest.raises(RuntimeError, match="dispatch_all"):
            cluster.dispatch(0, 0, np.zeros(4, np.int32))
        with pytest.raises(ValueError, match="one per rank"):
            cluster.dispatch_all(0, [np.zeros(4, np.int32)])
        for step in range(12):
            for layer in range(LAYERS):
                ids = [skewed_ids(rng, step).astype(np.int32) for _ in range(RANKS)]
                for r in range(RANKS):
                    cluster.record(r, layer, ids[r])
                check_routing(cluster, layer, ids, cluster.dispatch_all(layer, ids))
            cluster.step_boundary(step)
        assert cluster.stats()["epoch"] >= 1


def test_dumps_sum_to_what_every_rank_recorded(tmp_path):
    """Twin: PlacementManagerDumps.AggregatedWindowsSumToWhatEveryRankRecorded."""
    rng = np.random.default_rng(11)
    recorded = []  # per step: [LAYERS, EXPERTS] counts over all ranks
    dump_dir = str(tmp_path / "dumps")
    # A queue that holds every window of the run: no drop however the writer thread is scheduled.
    with make_cluster(enable_dump=True, dump_dir=dump_dir, dump_queue_capacity=16) as cluster:
        for step in range(19):  # rounds at 4, 8, 12, 16; with stage_wait the last aggregates by step 17
            counts = np.zeros((LAYERS, EXPERTS), np.int64)
            for layer in range(LAYERS):
                for r in range(RANKS):
                    ids = skewed_ids(rng, step)
                    cluster.record(r, layer, ids)
                    counts[layer] += np.bincount(ids.ravel(), minlength=EXPERTS)
            recorded.append(counts)
            cluster.step_boundary(step)
        cluster.flush_dumps()
        stats = cluster.stats()
        assert stats["dumps_written"] == stats["rounds_started"] >= 3 and stats["dumps_dropped"] == 0
    windows = oio.read_dump_dir(dump_dir)
    assert len(windows) == stats["rounds_started"]
    prev_end = -1
    for w in windows:
        assert w["rank"] == -1 and w["id_space"] == "expert"
        want = sum(recorded[prev_end + 1: w["step_end"] + 1])
        np.testing.assert_array_equal(w["load"].counts(), want)
        prev_end = w["step_end"]
    np.testing.assert_array_equal(oio.read_dump_dir_load(dump_dir).counts(), sum(recorded[: prev_end + 1]))


def test_options_from_config_and_errors():
    """Twin: ManagerConfig.EveryManagerKeyFillsItsOption and ManagerConfigErrors."""
    cfg = oio.parse_config("enable_dynamic: true\nplanner: \"omni\"\nreplan_interval_steps: 50\n"
                           "window_steps: 50\nmax_moves_per_rank: 2\nstaging_bytes_per_rank: 4096\n"
                           "shift_check_steps: 7\nshift_threshold: 0.25\n")
    o = op.ManagerOptions.from_config(cfg)
    assert (o.dynamic, o.planner_spec, o.replan_interval_steps, o.max_moves_per_rank, o.staging_bytes_per_rank) == (
        True, "omni", 50, 2, 4096)
    assert (o.shift_check_steps, o.shift_threshold) == (7, 0.25)
    assert op.ManagerOptions().shift_check_steps == -1  # a tenth of the interval, as omniplace simulate
    assert "planner_spec='omni'" in repr(o)
    with pytest.raises(ValueError, match="'window_steps'"):
        op.ManagerOptions.from_config(oio.parse_config("replan_interval_steps: 50\nwindow_steps: 10\n"))
    with pytest.raises(ValueError, match="unknown field 'planer'"):
        op.ManagerOptions(planer="omni")
    with pytest.raises(ValueError, match="dispatch_mode"):
        op.ManagerOptions(dispatch_mode="random")
    placement = op.Placement.contiguous(num_layers=1, num_ranks=2, num_experts=4, slots_per_rank=2)
    with pytest.raises(ValueError, match="nonesuch"):
        op.LocalCluster(placement, 16, options=op.ManagerOptions(planner_spec="nonesuch"))
    with pytest.raises(ValueError, match="slot_bytes"):
        op.LocalCluster(placement, [16, 16])
    with op.LocalCluster(placement, 16) as c:
        with pytest.raises(ValueError, match="rank"):
            c.stats(5)
        with pytest.raises(ValueError):
            c.write_slot(0, 0, 0, np.zeros(17, np.uint8))  # one byte too many
        c.write_slot(1, 0, 1, b"\x07" * 16)
        assert c.read_slot(1, 0, 1).tolist() == [7] * 16


def test_torch_ids_give_torch_slots():
    """Twin: Dispatch tables (tests/dispatch/dispatch_table_test.cc) through the cluster, tensors in and out."""
    torch = pytest.importorskip("torch")
    with make_cluster() as cluster:
        ids = torch.tensor([[0, 1], [2, -1]], dtype=torch.int64)
        slots = cluster.dispatch(1, 0, ids)
        assert isinstance(slots, torch.Tensor) and slots.dtype == torch.int32 and tuple(slots.shape) == (2, 2)
        assert slots[1, 1].item() == -1
        np.testing.assert_array_equal(slots.numpy(), cluster.dispatch(1, 0, ids.numpy()))
        all_slots = cluster.dispatch_all(0, [ids] * RANKS)
        assert all(isinstance(s, torch.Tensor) for s in all_slots)
        check_routing(cluster, 0, [ids.numpy()] * RANKS, [s.numpy() for s in all_slots])
