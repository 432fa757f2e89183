"""omniplacement.torch: routing tables, the vote, staging and commits, and faults between processes.

C++ twins: tests/runtime/commit_protocol_test.cc (the vote table), tests/runtime/placement_manager_test.cc
(rounds, commits in place, the staging limit, aborted rounds keeping the placement),
tests/runtime/failover_test.cc (a dead peer never hangs a rank), tests/core/expert_map_test.cc (the
tables), tests/planner/migration_plan_test.cc (diff, whose transfers the manager runs).

The in-process tests run a one-rank gloo group (transfers are local copies; the 'eplb' planner
reorders slots even on one rank, so rounds move experts). The fault tests run
torch_runtime_worker.py: 3 processes with no collectives of their own, so the manager's vote
meets the fault first.
"""
# omni-needs: planner runtime
import os
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist

import omniplacement as op
from omniplacement.torch import Options, PlacementManager, RoutingTables, layer_batches

HERE = os.path.dirname(os.path.abspath(__file__))
Phase = op.StagePhase


# ------------------------------------------------------------------------------ tables
def uneven_placement():
    # Layer 0: 2 ranks x 3 slots (expert 0 twice); layer 1: 2 ranks x 2 slots.
    return op.Placement([[0, 1, 2, 3, 0, -1], [3, 2, 1, 0]], num_ranks=2, num_experts=4)


def test_tables_match_the_expert_map_and_dispatch_to_holders():
    p = uneven_placement()
    em = op.ExpertMap(p, "slot")
    t = RoutingTables(p, rank=1, device="cpu")
    assert t.max_replicas == 3  # 6 slots - 4 experts + 1
    assert t.slots_per_rank.tolist() == [3, 2]
    assert t.phy2log.tolist() == [[0, 1, 2, 3, 0, -1], [3, 2, 1, 0, -1, -1]]
    assert t.logcnt.tolist() == em.logcnt().tolist()
    assert t.log2phy[:, :, :em.max_replicas].tolist() == em.log2phy().tolist()
    assert t.local_phy2log.tolist() == [[3, 0, -1], [1, 0, -1]]
    ids = torch.tensor([[0, 1], [0, 2], [0, -1], [0, 7], [3, 0]])
    slots = t.dispatch(0, ids)
    assert slots.dtype == torch.int64 and slots.shape == ids.shape
    ok = (ids >= 0) & (ids < 4)
    assert torch.equal(t.phy2log[0][slots[ok]], ids[ok])  # every slot holds the expert asked for
    assert slots[~ok].tolist() == [-1, -1]                 # padding and bad ids
    # Expert 0 has replicas at slots 0 and 4: consecutive tokens alternate, rank 1 starts at the second.
    assert slots[:4, 0].tolist() == [4, 0, 4, 0]
    with pytest.raises(ValueError, match="token dimension"):
        t.dispatch(0, torch.tensor(1))


def test_table_updates_are_in_place():
    p = uneven_placement()
    t = RoutingTables(p, rank=0, device="cpu")
    ptrs = [getattr(t, n).data_ptr() for n in ("phy2log", "log2phy", "logcnt", "local_phy2log")]
    q = op.Placement([[1, 1, 2, 3, 0, 1], [0, 1, 2, 3]], num_ranks=2, num_experts=4)
    for l in range(2):
        t.update_layer(t.layer_rows(q, l))
    assert ptrs == [getattr(t, n).data_ptr() for n in ("phy2log", "log2phy", "logcnt", "local_phy2log")]
    fresh = RoutingTables(q, rank=0, device="cpu", max_replicas=t.max_replicas)
    for n in ("phy2log", "log2phy", "logcnt", "local_phy2log"):
        assert torch.equal(getattr(t, n), getattr(fresh, n)), n
    assert t.log2phy[0, 1].tolist() == [0, 1, 5]
    narrow = RoutingTables(p, rank=0, device="cpu", max_replicas=2)
    with pytest.raises(ValueError, match="layer 0: expert 1 has 3 replicas, more than max_replicas 2"):
        narrow.layer_rows(q, 0)


# ------------------------------------------------------------------------------ batches and the vote
def test_diff_moves_only_changed_slots_from_holders():
    cur = op.Placement([[0, 1, -1, 2, 3, -1]], num_ranks=2, num_experts=4)
    nxt = op.Placement([[0, 1, 3, 2, 3, 0]], num_ranks=2, num_experts=4)
    plan = op.diff(cur, nxt, op.Topology.uniform(2, 1), expert_bytes=[64], max_per_round=0)
    assert plan.num_rounds == 1 and plan.num_transfers == 2 and plan.total_bytes == 128
    assert plan.num_unchanged_slots == 4
    # round, layer, expert, src_rank, src_slot, dst_rank, dst_slot, replaced, link (2: cross host), bytes
    assert plan.transfers.tolist() == [[0, 0, 3, 1, 1, 0, 2, -1, 2, 64], [0, 0, 0, 0, 0, 1, 2, -1, 2, 64]]
    assert op.verify_migration(cur, plan, nxt) is None
    with pytest.raises(ValueError):
        op.verify_migration(cur, plan, cur)


def test_layer_batches_respect_the_staging_limit_and_layer_count():
    cols = op.MigrationPlan.transfer_columns
    assert cols[1] == "layer" and cols[5] == "dst_rank" and cols[9] == "bytes"

    def t(layer, dst, nbytes):
        row = np.zeros(10, dtype=np.int64)
        row[1], row[5], row[9] = layer, dst, nbytes
        return row

    # Needs per layer (largest over ranks): 0 -> 200, 1 -> 100, 2 -> 300, 3 -> 100.
    rows = np.stack([t(0, 0, 100), t(0, 0, 100), t(0, 1, 100), t(1, 1, 100), t(2, 1, 300), t(3, 0, 100)])
    assert layer_batches([0, 1, 2, 3], rows, 2, 300) == [[0, 1], [2], [3]]
    assert layer_batches([0, 1, 2, 3], rows, 2, 1000) == [[0, 1, 2, 3]]
    assert layer_batches([0, 1, 2, 3], rows, 2, 1000, layers_per_commit=3) == [[0, 1, 2], [3]]
    with pytest.raises(RuntimeError, match="layer 2 needs 300 bytes of staging on rank 1, over the staging limit of "
                                           "299 bytes"):
        layer_batches([0, 1, 2, 3], rows, 2, 299)


def reduce_max(*votes):
    return np.max(np.stack(votes), axis=0)


@pytest.mark.parametrize("active,waited,votes,expect", [
    (False, 0, [(4, 0, Phase.idle, 0, 0), (4, 0, Phase.idle, 0, 0)], ("start-round", "none", False)),
    (False, 0, [(4, 0, Phase.idle, 0, 0), (4, 0, Phase.working, 0, 0)], ("wait", "none", False)),
    (True, 0, [(5, 1, Phase.ready, 1, 7), (5, 1, Phase.ready, 1, 7)], ("commit", "none", True)),
    (True, 3, [(5, 1, Phase.ready, 0, 7), (5, 1, Phase.working, 0, 0)], ("wait", "none", False)),
    (True, 100, [(5, 1, Phase.ready, 0, 7), (5, 1, Phase.working, 0, 0)], ("abort", "timeout", False)),
    (True, 0, [(5, 1, Phase.ready, 0, 7), (5, 1, Phase.failed, 0, 7)], ("abort", "failed", False)),
    (True, 0, [(5, 1, Phase.ready, 0, 7), (5, 1, Phase.ready, 0, 8)], ("abort", "mismatch", False)),
    (True, 0, [(5, 1, Phase.no_change, 1, 7), (5, 1, Phase.no_change, 1, 7)], ("finish", "none", False)),
], ids=["all_idle_starts", "busy_planner_waits", "all_ready_commits_last", "one_working_waits",
        "timeout_aborts", "a_failed_rank_aborts", "different_plans_abort", "no_change_finishes"])
def test_vote_decisions(active, waited, votes, expect):
    words = [op.encode_vote(r, b, ph, bool(last), plan, 3) for r, b, ph, last, plan in votes]
    assert words[0].shape == (op.VOTE_WORDS,)
    got = op.decide_votes(reduce_max(*words), active=active, round=5, batch=1, waited_steps=waited,
                          timeout_steps=100, placement_checksum=3)
    assert got == expect


def test_vote_sees_a_diverged_placement():
    a = op.encode_vote(-1, 0, Phase.idle, False, 0, 3)
    b = op.encode_vote(-1, 0, Phase.idle, False, 0, 4)
    got = op.decide_votes(reduce_max(a, b), active=False, round=-1, batch=0, waited_steps=0, timeout_steps=10,
                          placement_checksum=3)
    assert got == ("wait", "placement-diverged", False)
    with pytest.raises(ValueError, match="checksums >= 0"):
        op.encode_vote(0, 0, Phase.idle, False, -1, 0)


# ------------------------------------------------------------------------------ one rank in this process
@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "store"
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


L, E, S = 3, 6, 8


def expert_rows(l, e):
    return torch.full((4,), 100.0 * l + e), torch.full((2, 3), -100.0 * l - e, dtype=torch.float64)


def slot_weights(p):
    w = [(torch.zeros(S, 4), torch.zeros(S, 2, 3, dtype=torch.float64)) for _ in range(L)]
    for l in range(L):
        for s in range(S):
            e = p.expert_at(l, s)
            if e >= 0:
                for t, v in zip(w[l], expert_rows(l, e)):
                    t[s] = v
    return w


def serve(pm, steps):
    decisions = []
    for step in range(steps):
        for l in range(L):
            hot = (step // 4 + l) % E
            ids = torch.tensor([[hot, (hot + 1) % E]] * 6 + [[(hot + 2) % E, -1]])
            pm.record(l, ids)
            slots = pm.dispatch(l, ids)
            ok = ids >= 0
            assert torch.equal(pm.tables.phy2log[l][slots[ok]], ids[ok])
        decisions.append(pm.step_boundary(step))
    return decisions


def assert_weights_follow(pm, w):
    p = pm.placement
    for l in range(L):
        for s in range(S):
            e = p.expert_at(l, s)
            if e >= 0:
                for t, v in zip(w[l], expert_rows(l, e)):
                    assert torch.equal(t[s], v), (l, s, e)


SLOT_BYTES = 4 * 4 + 6 * 8


def test_commits_write_in_place_within_the_staging_limit(one_rank):
    p = op.Placement.contiguous(L, 1, E, S)
    w = slot_weights(p)
    ptrs = [t.data_ptr() for ws in w for t in ws]
    limit = S * SLOT_BYTES  # one layer at a time at most
    opts = Options(planner_spec="eplb", replan_interval_steps=4, commit_cadence_steps=1, stage_wait_ms=10000,
                   staging_bytes_per_rank=limit)
    with PlacementManager(p, w, options=opts) as pm:
        table_ptrs = [getattr(pm.tables, n).data_ptr() for n in ("phy2log", "log2phy", "logcnt", "local_phy2log")]
        decisions = serve(pm, 24)
        s = pm.stats()
        assert s["rounds_started"] >= 2 and s["rounds_aborted"] == 0, s
        assert pm.epoch == s["batches_committed"] == decisions.count("commit") >= 3, (decisions, s)
        assert s["rounds_completed"] >= 1
        assert 0 < s["max_staging_bytes"] <= limit and s["staging_bytes"] == 0, s
        assert s["experts_moved"] > 0 and s["bytes_moved"] == s["experts_moved"] * SLOT_BYTES
        assert pm.placement != p
        assert ptrs == [t.data_ptr() for ws in w for t in ws]
        assert table_ptrs == [getattr(pm.tables, n).data_ptr() for n in ("phy2log", "log2phy", "logcnt",
                                                                         "local_phy2log")]
        fresh = RoutingTables(pm.placement, 0, "cpu", pm.tables.max_replicas)
        for n in ("phy2log", "log2phy", "logcnt", "local_phy2log"):
            assert torch.equal(getattr(fresh, n), getattr(pm.tables, n)), n
        assert_weights_follow(pm, w)


def test_a_layer_over_the_staging_limit_aborts_and_keeps_the_placement(one_rank):
    p = op.Placement.contiguous(L, 1, E, S)
    w = slot_weights(p)
    opts = Options(planner_spec="eplb", replan_interval_steps=4, commit_cadence_steps=1, stage_wait_ms=10000,
                   staging_bytes_per_rank=SLOT_BYTES)
    with PlacementManager(p, w, options=opts) as pm:
        before = pm.tables.phy2log.clone()
        decisions = serve(pm, 10)
        s = pm.stats()
        assert "abort" in decisions and "commit" not in decisions, decisions
        assert s["rounds_aborted"] >= 1 and pm.epoch == 0
        assert "RESOURCE_EXHAUSTED" in s["last_abort"] and "over the staging limit" in s["last_abort"], s
        assert pm.placement == p and torch.equal(pm.tables.phy2log, before)
        assert_weights_follow(pm, w)


def test_record_counts_on_the_device_and_skips_padding(one_rank):
    p = op.Placement.contiguous(L, 1, E, S)
    with PlacementManager(p, slot_weights(p), options=Options(dynamic=False)) as pm:
        pm.record(1, torch.tensor([[0, 5], [5, -1], [9, 2]], dtype=torch.int32))  # 9 >= E: padding too
        pm.record(1, torch.tensor([5]))
        assert pm.counts.dtype == torch.int64 and pm.counts.shape == (L, E)
        assert pm.counts[1].tolist() == [1, 0, 1, 0, 0, 3] and int(pm.counts[0].sum()) == 0
        assert [pm.step_boundary(s) for s in range(2000, 2010)] == [None] * 10  # dynamic off: no vote
        assert pm.stats()["agreement_collectives"] == 0


def test_bad_arguments_are_refused(one_rank):
    p = op.Placement.contiguous(L, 1, E, S)
    with pytest.raises(ValueError, match="weights has 2 layers, the placement 3"):
        PlacementManager(p, slot_weights(p)[:2])
    w = slot_weights(p)
    w[1] = (w[1][0][:5], w[1][1])
    with pytest.raises(ValueError, match=r"layer 1, weight tensor 0: shape \(5, 4\), expected \[slots_per_rank = 8"):
        PlacementManager(p, w)
    w = slot_weights(p)
    w[0] = (w[0][0].t().contiguous().t(), w[0][1])
    with pytest.raises(ValueError, match="must be contiguous"):
        PlacementManager(p, w)
    with pytest.raises(ValueError, match="commit_cadence_steps must be >= 1"):
        PlacementManager(p, slot_weights(p), options=Options(commit_cadence_steps=0))
    with pytest.raises(ValueError, match="collective_timeout_ms must be > stage_wait_ms"):
        Options(stage_wait_ms=5000, collective_timeout_ms=5000).check()
    with pytest.raises(ValueError):
        PlacementManager(p, slot_weights(p), options=Options(planner_spec="no-such-planner"))


# ------------------------------------------------------------------------------ faults between processes
def run_worker(scenario, *extra):
    # Imported (not run as a script), so that its processes fork from one forkserver that has
    # torch imported already: the CPU cost of each scenario stays small.
    if HERE not in sys.path:
        sys.path.insert(0, HERE)  # stays: the worker processes import it from there
    import torch_runtime_worker
    return torch_runtime_worker.run_scenario(
        torch_runtime_worker.parse_args(["--scenario", scenario, "--timeout-ms", "3000", *extra]))


def test_a_failed_transfer_aborts_the_round_on_every_rank_at_the_same_step():
    res = run_worker("planner-fail")
    assert res["hung"] == [] and res["exit_codes"] == [0, 0, 0]
    ranks = [res["ranks"][str(r)] for r in range(3)]
    for r in ranks:
        assert r["status"] == "ok", r["error"]
        assert r["weights_consistent"] and r["tables_consistent"]
    decisions = [r["decisions"] for r in ranks]
    assert decisions[0] == decisions[1] == decisions[2]  # the same decision at the same step everywhere
    assert "abort" in decisions[0]
    assert decisions[0][decisions[0].index("abort") + 1:].count("commit") >= 1  # later rounds commit
    assert len({r["placement_checksum"] for r in ranks}) == 1 and len({r["epoch"] for r in ranks}) == 1
    assert "test hook: receive refused" in ranks[1]["stats"]["aborts"][0]
    assert ranks[1]["stats"]["aborts"][0].startswith("round 1 batch 0 aborted at step")
    assert all(r["stats"]["transfer_groups"] == 2 for r in ranks)  # a fresh group after the abort


def test_a_killed_peer_aborts_the_round_and_the_survivors_keep_the_old_placement():
    res = run_worker("kill")
    assert res["hung"] == [] and res["exit_codes"] == [0, 17, 0]
    survivors = [res["ranks"][str(r)] for r in (0, 2)]
    for r in survivors:
        assert r["status"] == "ok", r["error"]
        step = r["agreement_error_step"]
        assert step is not None and "agreement collective failed" in r["error"]
        assert r["epoch"] == r["epoch_at_error"]            # no commit after the failure
        assert r["decisions"][step + 1:] == [None] * (len(r["decisions"]) - step - 1)  # kept stepping, no vote
        assert len(r["decisions"]) == 30                     # every step served (dispatch checked each)
        assert r["stats"]["rounds_aborted"] == 1 and r["stats"]["staging_bytes"] == 0
        assert r["weights_consistent"] and r["tables_consistent"]
        assert r["close_seconds"] < 10
    assert survivors[0]["epoch"] == survivors[1]["epoch"]
    assert survivors[0]["placement_checksum"] == survivors[1]["placement_checksum"]
    assert survivors[0]["agreement_error_step"] == survivors[1]["agreement_error_step"]


# ------------------------------------------------------------------------------ shift detection between processes
def shift_run(shift_step, shift_check, steps):
    res = run_worker("shift", "--shift-step", str(shift_step), "--shift-check", str(shift_check),
                     "--steps", str(steps))
    assert res["hung"] == [] and res["exit_codes"] == [0, 0, 0]
    ranks = [res["ranks"][str(r)] for r in range(3)]
    for r in ranks:
        assert r["status"] == "ok", r["error"]
        assert r["weights_consistent"] and r["tables_consistent"]
        assert r["stats"]["rounds_aborted"] == 0, r["stats"]["aborts"]
    decisions = [r["decisions"] for r in ranks]
    assert decisions[0] == decisions[1] == decisions[2]  # the same decision at the same step everywhere
    assert len({r["placement_checksum"] for r in ranks}) == 1
    return decisions[0], [r["stats"] for r in ranks]


def test_a_shift_mid_interval_starts_a_round_within_one_check_on_every_rank():
    # Interval 40 (rounds start at steps 40, 80, ...), a check every 4 steps; the first round
    # at step 40 plans on the steady load, then every token moves to another expert at step 62.
    decisions, stats = shift_run(62, 4, 76)
    starts = [i for i, d in enumerate(decisions) if d == "shift-round"]
    assert len(starts) == 1, decisions
    assert 62 <= starts[0] < 62 + 4, starts  # the first check whose steps include the shift
    assert decisions.count("start-round") == 1 and decisions.index("start-round") == 40, decisions
    assert "commit" in decisions[starts[0]:], decisions  # the shift round moved experts
    for s in stats:
        assert s["shift_rounds"] == 1 and s["shift_checks"] >= 10, s
        assert s["rounds_started"] == 2 and s["rounds_completed"] == 2, s


def test_a_steady_load_starts_no_shift_round_and_zero_turns_checks_off():
    decisions, stats = shift_run(-1, 4, 76)
    assert "shift-round" not in decisions and decisions.index("start-round") == 40, decisions
    for s in stats:
        assert s["shift_checks"] >= 10 and s["shift_rounds"] == 0, s
        assert abs(s["last_shift_now"] - s["last_shift_promised"]) < 1e-9, s  # priced alike: the same mix
    decisions, stats = shift_run(62, 0, 76)
    assert "shift-round" not in decisions and decisions.count("start-round") == 1, decisions
    for s in stats:
        assert s["shift_checks"] == 0 and s["shift_rounds"] == 0, s


def test_shift_options_are_checked_and_resolved():
    assert Options(replan_interval_steps=1000).resolved_shift_check_steps() == 100
    assert Options(replan_interval_steps=6).resolved_shift_check_steps() == 1
    assert Options(replan_interval_steps=1).resolved_shift_check_steps() == 0
    assert Options(shift_check_steps=7).resolved_shift_check_steps() == 7
    assert Options(shift_check_steps=7, dynamic=False).resolved_shift_check_steps() == 0
    assert Options(shift_check_steps=0).resolved_shift_check_steps() == 0
    with pytest.raises(ValueError, match="shift_check_steps must be >= 0"):
        Options(shift_check_steps=-2).check()
    with pytest.raises(ValueError, match="shift_threshold must be finite and >= 0"):
        Options(shift_threshold=float("nan")).check()
    with pytest.raises(ValueError, match="shift_threshold must be finite and >= 0"):
        Options(shift_threshold=-0.1).check()


def test_options_from_config_read_the_shift_keys():
    import omniplacement.io as oio
    text = ("enable_dynamic: true\nreplan_interval_steps: 50\nwindow_steps: 50\n"
            "shift_check_steps: 3\nshift_threshold: 0.2\n")
    o = Options.from_config(oio.parse_config(text), plan_on="leader")
    assert (o.replan_interval_steps, o.shift_check_steps, o.shift_threshold, o.plan_on) == (50, 3, 0.2, "leader")
    assert o.resolved_shift_check_steps() == 3
    d = Options.from_config(oio.parse_config("enable_dynamic: true\nreplan_interval_steps: 50\nwindow_steps: 50\n"))
    assert (d.shift_check_steps, d.shift_threshold) == (-1, 0.07) and d.resolved_shift_check_steps() == 5
    assert Options.from_config(oio.parse_config("shift_check_steps: 3\n")).resolved_shift_check_steps() == 0  # off
    with pytest.raises(ValueError, match="shift"):
        Options.from_config(oio.parse_config("shift_threshold: -1\n"))
