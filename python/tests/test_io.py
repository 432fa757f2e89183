"""File-format bindings (omniplacement.io): patterns, placement files, loads, dumps, traces, config.

C++ twins: tests/io/ (pattern_test.cc, placement_file_test.cc, load_file_test.cc,
activation_dump_test.cc, trace_test.cc, config_test.cc), on the same shipped data.
"""
# omni-needs: io
import os

import numpy as np
import pytest

import omniplacement as op
import omniplacement.io as oio

SOURCE_DIR = os.environ.get("OMNI_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(SOURCE_DIR, "data")


def test_reads_the_shipped_omni_infer_pattern_with_uneven_layers():
    p = oio.read_pattern(os.path.join(DATA, "patterns",
                                      "DSV3_0427_GSM8K_decode_RedFullLays_+10_58_MoELayers_32_dies_epmaxdeploy_12.npy"))
    assert (p.num_layers, p.num_ranks, p.num_experts) == (58, 32, 256)
    replicas = [p.num_replicas(l) for l in range(58)]
    assert sorted(set(replicas)) == [256, 288] and replicas.count(288) == 10
    # The .npy is numpy's own format: the placement agrees with numpy.load of the same file.
    raw = np.load(os.path.join(DATA, "patterns",
                               "DSV3_0427_GSM8K_decode_RedFullLays_+10_58_MoELayers_32_dies_epmaxdeploy_12.npy"))
    assert raw.shape == (32, 58, 256)
    assert (raw.sum(axis=(0, 2)) == np.array(replicas)).all()


@pytest.mark.parametrize("ext", ["json", "npy", "txt", "bin"])
def test_placement_file_round_trips(tmp_path, ext):
    p = op.Placement([[0, 1, 2, 3], [3, 2, 1, 0]], num_ranks=2, num_experts=4)
    path = str(tmp_path / f"p.{ext}")
    topology = op.Topology.uniform(2, 1) if ext == "json" else None
    oio.write_placement_file(path, p, topology)
    back, topo = oio.read_placement_file(path)
    assert back.layout.phy2log[0].tolist() == [0, 1, 2, 3] and back.num_layers == 2
    assert (topo == topology) if topology else topo is None
    assert oio.detect_file_kind(path) == "placement"


def test_pattern_refuses_shares(tmp_path):
    p = op.Placement([[0, 1, 0, 1]], num_ranks=2, num_experts=2, shares=[[0.5, 0.5, 0.5, 0.5]])
    with pytest.raises(ValueError):
        oio.write_placement_file(str(tmp_path / "p.npy"), p)


@pytest.mark.parametrize("ext", ["npy", "csv"])
def test_load_file_round_trips_counts_and_weights(tmp_path, ext):
    for data in (np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64), np.array([[0.5, 1.25, 3.0]])):
        load = op.LoadMatrix(data)
        path = str(tmp_path / f"load.{ext}")
        oio.write_load_file(path, load)
        assert oio.read_load_file(path) == load


def test_trace_windows_and_selector():
    path = os.path.join(DATA, "traces", "qwen15moe_expert_freq_by_iteration.csv")
    trace = oio.Trace.read_csv(path)
    assert trace.layout == "per-iteration" and (trace.num_layers, trace.num_experts) == (12, 60)
    w = trace.select("dataset=wikitext,iteration=3")
    assert w.shape == (12, 60) and w.is_counts
    assert oio.read_load_file(path, "dataset=wikitext,iteration=3") == w
    series = trace.series(["bookcorpus", "wikitext"])
    assert [s.label for s in series[:2]] == ["bookcorpus#0", "bookcorpus#1"] and len(series) == 40
    with pytest.raises(ValueError):
        trace.select("dataset=nope")


def test_activation_dump_turns_slot_counts_into_expert_loads(tmp_path):
    p = op.Placement([[0, 1, 0, 2]], num_ranks=2, num_experts=3)
    path = str(tmp_path / "dump.txt")
    oio.write_activation_dump(path, [[5, 1, 7, 2]])
    assert oio.parse_activation_dump(open(path).read())[0].tolist() == [5, 1, 7, 2]
    assert oio.read_activation_dump(path, p).counts().tolist() == [[12, 1, 2]]
    assert oio.loads_from_slot_counts(np.array([[5, 1, 7, 2]]), p).counts().tolist() == [[12, 1, 2]]
    assert oio.read_load_file(path, placement_in_force=p).counts().tolist() == [[12, 1, 2]]


def test_config_parses_encodes_and_names_the_bad_line(tmp_path):
    c = oio.parse_config("planner: omni\nenable_dynamic: true\nmax_redundant_per_rank: 1\n")
    assert (c.planner, c.enable_dynamic, c.max_redundant_per_rank) == ("omni", True, 1)
    assert oio.parse_config(oio.encode_config(c)) == c
    assert oio.config_keys()[0] == "pattern_path"
    with pytest.raises(ValueError) as e:
        oio.parse_config("planner: omni\nenable_dynamc: true\n", "my.yaml")
    assert "my.yaml:2" in str(e.value)
    relaxed = oio.parse_config("bogus: 1\n", allow_unknown_keys=True)
    assert len(relaxed.warnings) == 1


def test_missing_file_is_a_value_error_naming_the_path(tmp_path):
    missing = str(tmp_path / "missing.npy")
    with pytest.raises(ValueError) as e:
        oio.read_pattern(missing)
    assert missing in str(e.value) and e.value.status_code == "NOT_FOUND"
