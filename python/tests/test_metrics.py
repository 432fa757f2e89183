"""Metrics bindings: rank loads, lower bound, balance, duplicates, dispatch traffic.

C++ twin: tests/core/metrics_test.cc (same hand-computed cases, same property checks).
"""
import numpy as np
import pytest

import omniplacement as op


def small():
    # 1 layer, 2 ranks, 3 experts: [0, 1 | 2, 0]; loads e0 = 10, e1 = 4, e2 = 6.
    return op.Placement([[0, 1, 2, 0]], num_ranks=2, num_experts=3)


def small_load():
    return op.LoadMatrix(np.array([[10, 4, 6]]))


def test_even_split_rank_loads_by_hand():
    loads = op.rank_loads(small(), small_load(), 0)
    assert loads.dtype == np.float64 and loads.tolist() == [9.0, 11.0]
    b = op.layer_balance(small(), small_load(), 0)
    assert (b.mean, b.max, b.max_rank) == (10, 11, 1)
    assert b.max_over_mean == pytest.approx(1.1)
    assert b.imbalance == pytest.approx(0.1)
    assert b.balancedness == pytest.approx(10 / 11)
    assert b.lower_bound == 10
    assert b.excess == pytest.approx(0.1)
    assert "max/mean 1.1" in repr(b)


def test_shares_split_unevenly_and_even_figure_stays_available():
    p = op.Placement([[0, 1, 2, 0]], num_ranks=2, num_experts=3, shares=[[0.75, 1.0, 1.0, 0.25]])
    assert op.rank_loads(p, small_load(), 0, mode="shares").tolist() == [11.5, 8.5]
    assert op.rank_loads(p, small_load(), 0, mode="even").tolist() == [9.0, 11.0]
    assert op.rank_loads(p, 0, [10, 4, 6], [0.5, 1, 1, 0.5]).tolist() == [9.0, 11.0]


def test_water_filling_by_hand():
    w = [8, 4, 2, 2]
    assert op.water_fill_counts(w, 6).tolist() == [3, 1, 1, 1]
    assert op.lower_bound(w, 2, 6) == 8.0
    assert op.lower_bound(w, 4, 6) == 4.0
    assert op.lower_bound(w, 8, 4) == 8.0
    assert op.lower_bound([0, 0], 2, 4) == 0.0


def test_empty_load_is_perfectly_balanced():
    b = op.layer_balance(small(), op.LoadMatrix.zeros(1, 3), 0)
    assert (b.max_over_mean, b.balancedness, b.excess) == (1.0, 1.0, 0.0)


def test_placement_balance_aggregates():
    p = op.Placement([[0, 1], [0, 1]], num_ranks=2, num_experts=2)
    b = op.placement_balance(p, op.LoadMatrix(np.array([[3, 1], [2, 2]])))
    assert b.mean_max_over_mean == pytest.approx(1.25)
    assert b.sum_max == 5
    assert b.balancedness == pytest.approx(0.8)
    assert len(b.layers) == 2 and b.max_over_mean().tolist() == [1.5, 1.0]


def test_duplicates_count_wasted_replicas():
    p = op.Placement([[0, 0, 0, 1, 1, -1]], num_ranks=2, num_experts=2)
    assert op.same_rank_duplicates(p, 0) == 3
    assert op.same_rank_duplicates(p) == 3


def test_traffic_by_hand():
    t = op.dispatch_traffic(small(), small_load(), op.Topology.uniform(2, 1), 0)
    assert t.total == 20 and t.same_rank == 0.75 and t.same_host == 0.0 and t.cross_host == 0.25
    u = op.dispatch_traffic(small(), small_load(), op.Topology.uniform(2, 2))
    assert u.same_host == 0.25 and u.cross_host == 0.0


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError) as e:
        op.rank_loads(small(), op.LoadMatrix(np.array([[1, 2, 3, 4]])), 0)
    assert "1 layers x 3 experts but the load is 1 x 4" in str(e.value)
    with pytest.raises(ValueError) as e:
        op.rank_loads(small(), small_load(), 1)
    assert e.value.status_code == "OUT_OF_RANGE"
    with pytest.raises(ValueError):
        op.rank_loads(small(), 0, [1, np.nan, 2])
    with pytest.raises(ValueError):
        op.rank_loads(small(), 0, [1, 2, 3], [1.0])
    with pytest.raises(ValueError):
        op.dispatch_traffic(small(), small_load(), op.Topology.uniform(4, 2))
    with pytest.raises(ValueError):
        op.water_fill_counts([1, 2, 3], 2)  # fewer slots than experts
    with pytest.raises(ValueError):
        op.lower_bound([1, -2], 2, 4)
    with pytest.raises(ValueError):
        op.layer_balance(small(), small_load(), 0, mode="uneven")
    with pytest.raises(ValueError):
        op.same_rank_duplicates(small(), 3)


def test_huge_counts_do_not_overflow():
    big = 2**53 // 3  # the largest counts a layer may hold
    b = op.layer_balance(small(), op.LoadMatrix(np.array([[big, big, big]])), 0)
    assert np.isfinite(b.max)
    assert b.max_over_mean == pytest.approx(1.0)


def random_placement(rng, num_layers, num_ranks, num_experts, extra):
    """Every expert once, dealt over ranks, then `extra` random replicas per rank."""
    rows = []
    base = -(-num_experts // num_ranks)
    spr = base + extra
    for _ in range(num_layers):
        row = -np.ones((num_ranks, spr), dtype=np.int32)
        order = rng.permutation(num_experts)
        for i, e in enumerate(order):
            r = i % num_ranks
            row[r, i // num_ranks] = e
        for r in range(num_ranks):
            for s in range(base, spr):
                row[r, s] = rng.integers(num_experts)
        rows.append(row.ravel())
    return op.Placement(np.stack(rows), num_ranks=num_ranks, num_experts=num_experts)


def test_property_random_placements_respect_invariants():
    # Same invariants as MetricsProperty.RandomPlacementsRespectInvariants, fixed seed.
    rng = np.random.default_rng(20261126)
    for _ in range(20):
        L, R, E = rng.integers(1, 5), rng.integers(1, 9), rng.integers(1, 40)
        p = random_placement(rng, L, R, E, extra=int(rng.integers(0, 3)))
        load = op.LoadMatrix((rng.lognormal(0, 1, size=(L, E)) * 1000).astype(np.int64))
        per_rank = op.rank_load_matrix(p, load)
        assert per_rank.shape == (L, R)
        np.testing.assert_allclose(per_rank.sum(axis=1), load.values().sum(axis=1), rtol=1e-9)
        b = op.placement_balance(p, load)
        for l, lb in enumerate(b.layers):
            assert lb.max >= lb.lower_bound * (1 - 1e-12)
            assert lb.max == pytest.approx(per_rank[l].max())
        t = op.dispatch_traffic(p, load, op.Topology.single_host(int(R)))
        assert t.cross_host == 0.0
        assert t.same_rank + t.same_host + t.cross_host == pytest.approx(1.0)
