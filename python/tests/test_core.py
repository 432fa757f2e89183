"""Core bindings: Placement, PlacementLayout/validate, LoadMatrix, ExpertMap, Topology, errors.

C++ twins: tests/core/placement_test.cc, load_matrix_test.cc, expert_map_test.cc,
topology_test.cc and status_test.cc (the cases below mirror theirs by name).
"""
import pickle

import numpy as np
import pytest

import omniplacement as op


def two_layers():
    # Twin: expert_map_test.cc two_layers(): 2 ranks, 3 experts, uneven layers.
    return op.Placement([[0, 1, 2, 0], [2, 2, 1, 0, 2, -1]], num_ranks=2, num_experts=3)


# --- Placement (twin: placement_test.cc) -------------------------------------------------

def test_placement_indexes_replicas():
    p = op.Placement(np.array([[0, 1, 2, 0, 3, -1]]), num_ranks=2, num_experts=4)
    assert (p.num_layers, p.num_ranks, p.num_experts) == (1, 2, 4)
    assert p.slots_per_rank(0) == 3 and p.num_slots(0) == 6 and p.num_replicas(0) == 5
    assert list(p.replicas(0, 0)) == [0, 3]
    assert p.replica_count(0, 0) == 2
    assert p.rank_of(0, 4) == 1 and p.local_slot(0, 4) == 1
    assert p.global_slot(0, 1, 2) == 5
    assert p.expert_at(0, 5) == -1
    assert p.share_of(0, 0) == pytest.approx(0.5)


def test_placement_contiguous_spreads_experts_in_order():
    p = op.Placement.contiguous(2, 4, 8, 3)
    assert list(p.phy2log(1)) == [0, 1, -1, 2, 3, -1, 4, 5, -1, 6, 7, -1]
    assert p.is_uniform
    assert "2 layers, 4 ranks, 8 experts" in repr(p)


def test_placement_arrays_are_zero_copy_readonly_views():
    p = op.Placement.contiguous(2, 4, 8, 3)
    a = p.phy2log(0)
    b = p.phy2log(0)
    assert a.dtype == np.int32
    assert not a.flags.writeable
    # Two views of the same layer share the placement's memory: no copy was made.
    assert np.shares_memory(a, b)
    with pytest.raises(ValueError):
        a[0] = 5
    # The view keeps the placement alive after the last Python reference to it goes.
    del p
    assert list(a[:2]) == [0, 1]


def test_placement_layer_wise_uneven_is_first_class():
    p = two_layers()
    assert not p.is_uniform
    assert [p.slots_per_rank(l) for l in range(2)] == [2, 3]
    m = p.phy2log_matrix()
    assert m.shape == (2, 6)
    assert m.tolist() == [[0, 1, 2, 0, -1, -1], [2, 2, 1, 0, 2, -1]]
    assert p.replica_counts().tolist() == [[2, 1, 1], [1, 1, 3]]


def test_placement_checksum_separates_placements_and_pickle_round_trips():
    a = op.Placement.contiguous(2, 4, 8, 3)
    b = op.Placement.contiguous(2, 4, 8, 4)
    assert a.checksum != b.checksum
    assert pickle.loads(pickle.dumps(a)) == a
    c = pickle.loads(pickle.dumps(b))
    assert c == b and c.checksum == b.checksum


def test_placement_shares_split_load_unevenly():
    p = op.Placement([[0, 1, 2, 0]], num_ranks=2, num_experts=3, shares=[[0.75, 1.0, 1.0, 0.25]])
    assert p.has_shares
    assert list(p.shares(0)) == [0.75, 1.0, 1.0, 0.25]
    assert not p.without_shares().has_shares
    assert p.layout.shares[0].tolist() == [0.75, 1.0, 1.0, 0.25]


@pytest.mark.parametrize(
    "phy2log, kwargs, message",
    [
        ([[0, 1, 2]], dict(num_ranks=2, num_experts=3), "not a multiple of num_ranks = 2"),
        ([[0, 1, 2, 7]], dict(num_ranks=2, num_experts=3), "expert 7 out of range"),
        ([[0, 1, 0, 1]], dict(num_ranks=2, num_experts=3), "expert 2 has no replica"),
        ([[0.5, 1, 2, 0]], dict(num_ranks=2, num_experts=3), "expected an integer array"),
        ([[0, 1, 2, 2**40]], dict(num_ranks=2, num_experts=3), "outside"),
        ([[0, 1, 2, 0]], dict(num_ranks=0, num_experts=3), "num_ranks must be in"),
    ],
    ids=["slots-not-multiple-of-ranks", "expert-out-of-range", "missing-expert", "float-ids", "id-overflows-int32",
         "zero-ranks"],
)
def test_placement_rejects_bad_input_with_message(phy2log, kwargs, message):
    with pytest.raises(ValueError) as e:
        op.Placement(phy2log, **kwargs)
    assert message in str(e.value)


def test_placement_bad_indices_raise_instead_of_aborting():
    p = op.Placement.contiguous(2, 4, 8, 3)
    for call in (lambda: p.phy2log(2), lambda: p.phy2log(-1), lambda: p.replicas(0, 8),
                 lambda: p.expert_at(0, 12), lambda: p.global_slot(0, 4, 0), lambda: p.global_slot(0, 0, 3),
                 lambda: p.rank_of(1, -1), lambda: p.slots_per_rank(9), lambda: p.share_of(0, 99)):
        with pytest.raises(ValueError) as e:
            call()
        assert e.value.status_code == "OUT_OF_RANGE"
        assert "out of [0, " in str(e.value)


# --- validate (twin: placement_test.cc ValidateTest) --------------------------------------

def test_validate_reports_every_violation_not_just_the_first():
    layout = op.PlacementLayout(num_ranks=2, num_experts=3, slots_per_rank=[2], phy2log=[[0, 0, 1, 5]])
    rules = op.ValidationRules(forbid_same_rank_duplicates=True)
    kinds = [v.kind for v in op.validate(layout, rules)]
    assert kinds == ["same-rank-duplicate", "expert-out-of-range", "expert-missing"]
    v = op.validate(layout, rules)[0]
    assert (v.layer, v.rank, v.slot, v.expert) == (0, 0, 1, 0)
    assert "rank 0, slot 1" in v.message


def test_validate_missing_expert_allowed_when_rule_off():
    layout = op.PlacementLayout(num_ranks=2, num_experts=3, slots_per_rank=[1], phy2log=[[0, 1]])
    assert [v.kind for v in op.validate(layout)] == ["expert-missing"]
    assert op.validate(layout, op.ValidationRules(require_every_expert=False)) == []
    p = op.Placement.from_layout(layout, op.ValidationRules(require_every_expert=False))
    assert p.replica_count(0, 2) == 0


def test_validate_stops_at_the_limit():
    layout = op.PlacementLayout(num_ranks=1, num_experts=1, slots_per_rank=[100], phy2log=[[9] * 100])
    out = op.validate(layout, max_violations=5)
    assert len(out) <= 6
    assert "more" in out[-1].message


def test_layout_round_trips_through_placement():
    p = two_layers()
    layout = p.layout
    assert layout.num_layers == 2 and layout.slots_per_rank.tolist() == [2, 3]
    assert op.Placement.from_layout(layout) == p


# --- LoadMatrix (twin: load_matrix_test.cc) ---------------------------------------------

def test_load_counts_are_exact_and_visible_as_doubles():
    m = op.LoadMatrix(np.array([[5, 0, 3, 1], [2, 2, 2, 2]], dtype=np.int64))
    assert m.kind == "counts" and m.is_counts and m.shape == (2, 4)
    assert m.at(0, 2) == 3.0
    assert m.counts()[1, 0] == 2
    assert m.values().dtype == np.float64
    assert np.asarray(m).tolist() == [[5, 0, 3, 1], [2, 2, 2, 2]]
    assert m.layer_total(0) == 9


def test_load_add_keeps_counts_exact_up_to_the_layer_limit():
    # C++ twin: LoadMatrixTest.AddKeepsCountsExactUpToTheLayerLimit (a layer's total is at most 2^53).
    half = 2**52
    m = op.LoadMatrix(np.array([[half, 1]]))
    m.add(op.LoadMatrix(np.array([[half - 4, 2]])))
    assert m.counts().tolist() == [[2**53 - 4, 3]]
    with pytest.raises(ValueError) as e:
        m.add(op.LoadMatrix(np.array([[2, 0]])))
    assert e.value.status_code == "OUT_OF_RANGE" and "kMaxLayerLoad" in str(e.value)
    assert m.counts().tolist() == [[2**53 - 4, 3]]
    with pytest.raises(ValueError):
        op.LoadMatrix(np.array([[1.7e308, 1.7e308]]))


def test_load_mixing_kinds_gives_weights_scale_and_slice():
    m = op.LoadMatrix(np.array([[1, 2], [3, 4]]))
    m.add(op.LoadMatrix(np.array([[0.5, 0.5], [0.5, 0.5]])))
    assert m.kind == "weights" and m.counts() is None
    m.scale(2.0)
    assert m.values().tolist() == [[3.0, 5.0], [7.0, 9.0]]
    assert m.layers(1, 1).values().tolist() == [[7.0, 9.0]]
    assert op.LoadMatrix.zeros(3, 4, kind="weights").kind == "weights"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: op.LoadMatrix(np.array([[1, -2]])), "negative count"),
        (lambda: op.LoadMatrix(np.array([[1.0, np.nan]])), "finite"),
        (lambda: op.LoadMatrix(np.array([1, 2])), "expected a 2-D array"),
        (lambda: op.LoadMatrix.zeros(0, 4), ""),
        (lambda: op.LoadMatrix.zeros(2, 2, kind="bogus"), "'counts' or 'weights'"),
        (lambda: op.LoadMatrix(np.array([[1, 2]])).layers(1, 1), "not within"),
        (lambda: op.LoadMatrix(np.array([[1, 2]])).at(0, 2), "expert 2 out of [0, 2)"),
        (lambda: op.LoadMatrix(np.array([["a", "b"]])), "real numeric"),
    ],
    ids=["negative", "nan", "one-dimensional", "zero-layers", "bad-kind", "bad-slice", "bad-index", "strings"],
)
def test_load_rejects_bad_input(make, message):
    with pytest.raises(ValueError) as e:
        make()
    assert message in str(e.value)


# --- ExpertMap (twin: expert_map_test.cc) -----------------------------------------------

def test_expert_map_by_slot_order():
    m = op.ExpertMap(two_layers())
    assert (m.max_replicas, m.max_slots) == (3, 6)
    assert m.layer(1).logcnt.tolist() == [1, 1, 3]
    assert m.layer(1).replicas_of(2).tolist() == [0, 1, 4]
    assert m.phy2log().tolist() == [[0, 1, 2, 0, -1, -1], [2, 2, 1, 0, 2, -1]]
    assert m.logcnt().tolist() == [[2, 1, 1], [1, 1, 3]]
    log2phy = m.log2phy()
    assert log2phy.shape == (2, 3, 3) and log2phy.dtype == np.int32
    assert log2phy[0].ravel().tolist() == [0, 3, -1, 1, -1, -1, 2, -1, -1]


def test_expert_map_by_creation_order():
    m = op.ExpertMap(two_layers(), order="creation", replica_rank=[[1, 0, 0, 0], [2, 0, 0, 0, 1, -1]])
    assert m.layer(0).replicas_of(0).tolist() == [3, 0]
    assert m.layer(1).replicas_of(2).tolist() == [1, 4, 0]


def test_expert_map_rejects_bad_replica_ranks():
    with pytest.raises(ValueError):
        op.ExpertMap(two_layers(), order="creation")
    with pytest.raises(ValueError) as e:
        op.ExpertMap(two_layers(), order="creation", replica_rank=[[0, 0, 0, 0], [2, 0, 0, 0, 1, -1]])
    assert "layer 0, global slot 3 (expert 0)" in str(e.value)
    with pytest.raises(ValueError):
        op.ExpertMap(two_layers(), order="sideways")


def test_expert_map_layer_view_outlives_the_map():
    layer = op.ExpertMap(two_layers()).layer(1)
    view = layer.log2phy
    del layer
    assert view.shape == (3, 3) and view[2].tolist() == [0, 1, 4]


# --- Topology (twin: topology_test.cc) --------------------------------------------------

def test_topology_uniform_hosts():
    t = op.Topology.uniform(32, 8)
    assert (t.num_ranks, t.num_hosts, t.is_uniform) == (32, 4, True)
    assert t.host_of(9) == 1
    assert t.link(3, 9) == "cross-host" and t.link(3, 4) == "same-host" and t.link(3, 3) == "same-rank"
    assert t.ranks_of_host(1).tolist() == list(range(8, 16))
    assert repr(t) == "<Topology 32 ranks on 4 hosts (8 per host)>"


def test_topology_explicit_uneven_host_map_and_transfer_time():
    t = op.Topology.from_host_map([0, 1, 0, 1, 1], op.LinkBandwidths(cross_host_bytes_per_s=1e9, latency_s=0.0))
    assert t.num_hosts == 2 and not t.is_uniform
    assert t.host_of_rank.tolist() == [0, 1, 0, 1, 1]
    assert t.transfer_seconds(0, 1, 1e9) == pytest.approx(1.0)
    assert t.bandwidths.cross_host_bytes_per_s == 1e9


def test_topology_rejects_bad_input():
    with pytest.raises(ValueError):
        op.Topology.uniform(10, 4)
    with pytest.raises(ValueError):
        op.Topology.from_host_map([0, 2])
    t = op.Topology.uniform(4, 2)
    with pytest.raises(ValueError):
        t.host_of(4)
    with pytest.raises(ValueError):
        t.link(0, -1)


# --- errors (twin: status_test.cc) ------------------------------------------------------

@pytest.mark.parametrize(
    "code, exc",
    [
        ("INVALID_ARGUMENT", ValueError), ("NOT_FOUND", ValueError), ("OUT_OF_RANGE", ValueError),
        ("DATA_LOSS", ValueError), ("DEADLINE_EXCEEDED", TimeoutError), ("UNIMPLEMENTED", NotImplementedError),
        ("FAILED_PRECONDITION", RuntimeError), ("UNAVAILABLE", RuntimeError), ("ABORTED", RuntimeError),
        ("RESOURCE_EXHAUSTED", RuntimeError), ("INTERNAL", RuntimeError),
    ],
)
def test_every_status_code_maps_to_a_python_exception(code, exc):
    assert op.status_exception_type(code) is exc


def test_error_carries_library_message_and_code():
    with pytest.raises(ValueError) as e:
        op.Topology.uniform(10, 4)
    assert str(e.value).startswith("INVALID_ARGUMENT: ")
    assert e.value.status_code == "INVALID_ARGUMENT"
    with pytest.raises(ValueError):
        op.status_exception_type("NO_SUCH_CODE")
