"""Plots: rank-load heatmap and imbalance over time, rendered to PNG and read back.

C++ twin: none (plots exist only in Python); the numbers drawn come from
rank_load_matrix / placement_balance, whose twin is tests/core/metrics_test.cc, and
from `omniplace simulate --csv`, whose twin is tests/sim (the CLI end-to-end test).
"""
import json
import os
import subprocess

import matplotlib.image
import numpy as np
import pytest

import omniplacement as op
import omniplacement.plot as opp


def skewed_load(num_layers=6, num_experts=16, seed=7):
    rng = np.random.default_rng(seed)
    return (rng.zipf(1.5, size=(num_layers, num_experts)) * 10).clip(max=10**6).astype(np.int64)


def test_heatmap_png_has_the_requested_size(tmp_path):
    load = skewed_load()
    before = op.Placement.contiguous(6, 4, 16, 5)
    # After: the hottest expert of each layer gets a replica in each rank's spare slot.
    rows = []
    for l in range(6):
        row = before.phy2log(l).copy().reshape(4, 5)
        row[:, 4] = int(np.argmax(load[l]))
        rows.append(row.ravel())
    after = op.Placement(np.stack(rows), num_ranks=4, num_experts=16)
    out = tmp_path / "heatmap.png"
    fig = opp.rank_load_heatmap({"before": before, "after": after}, load, out, width_in=8.0, height_in=3.0, dpi=50)
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (150, 400)  # height x width = 3 in x 8 in at 50 dpi
    # The panels show the drawn balance; "after" must be better on this skewed load.
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    b0 = op.placement_balance(before, op.LoadMatrix(load)).mean_max_over_mean
    b1 = op.placement_balance(after, op.LoadMatrix(load)).mean_max_over_mean
    assert b1 < b0
    assert titles == [f"before: mean max/mean {b0:.3f}", f"after: mean max/mean {b1:.3f}"]
    # The image data is rank load / layer mean: every row averages to 1.
    grid = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(grid).mean(axis=1), 1.0, rtol=1e-9)


def test_imbalance_over_time_from_simulator_style_json(tmp_path):
    records = [{"step": s, "policy": pol, "max_over_mean": v}
               for s in range(10) for pol, v in (("static", 1.5 + 0.05 * s), ("dynamic", 1.1))]
    src = tmp_path / "sim.json"
    src.write_text(json.dumps({"per_step": records}))
    out = tmp_path / "imbalance.png"
    fig = opp.imbalance_over_time(src, out, width_in=6.0, height_in=3.0, dpi=60)
    assert matplotlib.image.imread(out).shape[:2] == (180, 360)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) >= {"static", "dynamic"}
    np.testing.assert_allclose(lines["static"].get_ydata(), [1.5 + 0.05 * s for s in range(10)])


@pytest.mark.parametrize(
    "source, expected",
    [
        ([1.2, 1.1, 1.0], {"": [1.2, 1.1, 1.0]}),
        ({"a": [2.0, 1.0], "b": [{"step": 5, "max_over_mean": 3.0}]}, {"a": [2.0, 1.0], "b": [3.0]}),
        ({"policies": {"x": [1.0]}}, {"x": [1.0]}),
        ({"steps": [{"max_over_mean": 1.3}, {"max_over_mean": 1.2}]}, {"": [1.3, 1.2]}),
    ],
    ids=["plain-list", "mapping", "policies-key", "steps-key"],
)
def test_load_series_shapes(source, expected):
    got = opp.load_series(source)
    assert {k: v[1].tolist() for k, v in got.items()} == expected


def test_load_series_rejects_records_without_the_metric():
    with pytest.raises(ValueError, match="has no 'max_over_mean'"):
        opp.load_series([{"step": 0, "imbalance": 0.3}])
    with pytest.raises(ValueError):
        opp.load_series(42)


def test_imbalance_over_time_from_the_simulators_per_step_csv(tmp_path):
    omniplace = os.path.join(os.environ.get("OMNI_BUILD_DIR", "build"), "bin", "omniplace")
    assert os.path.exists(omniplace), "the omniplace CLI is built with the Python module"
    csv_path = tmp_path / "steps.csv"
    subprocess.run([omniplace, "simulate", "--steps", "40", "--interval", "10", "--layers", "4", "--experts", "32",
                    "--ranks", "8", "--ranks-per-host", "4", "--policies", "contiguous", "--no-progress", "--csv",
                    str(csv_path)], check=True, capture_output=True)
    series = opp.load_series(csv_path)
    assert set(series) == {"contiguous", "lower bound"}
    steps, values = series["contiguous"]
    assert steps.tolist() == list(range(40)) and (values >= 1.0).all()
    assert (series["lower bound"][1] <= values + 1e-9).all()
    fig = opp.imbalance_over_time(csv_path, tmp_path / "sim.png", dpi=50)
    assert matplotlib.image.imread(tmp_path / "sim.png").shape[:2] == (175, 350)
    time_series = opp.load_series(csv_path, metric="time_s")["contiguous"][1]
    assert (time_series > 0).all()
    assert fig.axes[0].get_lines()[0].get_label() == "contiguous"
