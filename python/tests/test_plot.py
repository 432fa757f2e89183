"""Plots: rank-load heatmap and imbalance over time, rendered to PNG and read back.

C++ twin: none (plots exist only in Python); the numbers drawn come from
rank_load_matrix / placement_balance, whose twin is tests/core/metrics_test.cc, and
from `omniplace simulate --csv`, whose twin is tests/sim (the CLI end-to-end test).
"""
import csv
import json
import os
import subprocess
import sys

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


def _heatmap_pair():
    """(placements, load): 'flat' balances the load exactly, 'hot' piles it on the first ranks."""
    load = np.full((4, 4), 10, dtype=np.int64)
    flat = op.Placement.contiguous(4, 4, 4, 3)   # one expert per rank: every cell 1.0
    e = -1
    hot = op.Placement(np.array([
        [0, 1, 2, 3, e, e, e, e, e, e, e, e],    # rank loads 30, 10, 0, 0 -> 3.0, 1.0, 0.0, 0.0
        [0, e, e, 1, e, e, 2, e, e, 3, e, e],    # 1.0 everywhere
        [0, 1, e, e, e, e, 2, e, e, 3, e, e],    # 2.0, 0.0, 1.0, 1.0
        [0, e, e, 1, e, e, 2, e, e, 3, e, e],
    ]), num_ranks=4, num_experts=4)
    return {"flat": flat, "hot": hot}, load


def _cells(placements, load, names):
    out = []
    for name in names:
        grid = op.rank_load_matrix(placements[name], op.LoadMatrix(load), "shares")
        out.append((grid / grid.mean(axis=1, keepdims=True)).ravel())
    return np.concatenate(out)


def test_heatmap_scale_is_centred_on_one_and_set_by_a_percentile(tmp_path):
    placements, load = _heatmap_pair()
    fig = opp.rank_load_heatmap(placements, load, tmp_path / "h.png", percentile=90)
    image = fig.axes[0].images[0]
    norm = image.norm
    expected = float(np.percentile(np.abs(_cells(placements, load, ["flat", "hot"]) - 1.0), 90))
    assert norm.vcenter == 1.0
    assert norm.vmax == pytest.approx(1.0 + expected)
    assert norm.vmin == pytest.approx(max(0.0, 1.0 - expected))
    assert image.get_cmap().name == "RdBu_r"  # diverging: white at the centre
    # Both panels share the norm, and the colour bar says where its limits come from.
    assert fig.axes[1].images[0].norm is norm
    label = fig.axes[-1].get_xlabel()
    assert "90th percentile of |x - 1|" in label and f"{expected:.3g}" in label
    # The 4.0 cell lies beyond the limit: clipped, and the colour bar has an arrow for it.
    assert "clipped" in label
    assert fig.axes[-1].get_label() == "<colorbar>"


def test_heatmap_scale_from_some_panels_or_an_explicit_limit(tmp_path):
    placements, load = _heatmap_pair()
    # Scaled by the balanced panel alone (all cells 1.0): the floor of 1e-3 keeps a readable scale.
    fig = opp.rank_load_heatmap(placements, load, scale_from=["flat"])
    assert fig.axes[0].images[0].norm.vmax == pytest.approx(1.001)
    assert "over flat" in fig.axes[-1].get_xlabel()
    fig = opp.rank_load_heatmap(placements, load, limit=0.5)
    norm = fig.axes[0].images[0].norm
    assert (norm.vmin, norm.vcenter, norm.vmax) == (0.5, 1.0, 1.5)
    assert "set by the caller" in fig.axes[-1].get_xlabel()
    # Nothing beyond the limit: no clipping mentioned.
    fig = opp.rank_load_heatmap(placements, load, limit=3.5)
    assert "clipped" not in fig.axes[-1].get_xlabel()
    with pytest.raises(ValueError, match="scale_from"):
        opp.rank_load_heatmap(placements, load, scale_from=["nope"])
    with pytest.raises(ValueError, match="percentile"):
        opp.rank_load_heatmap(placements, load, percentile=0)
    with pytest.raises(ValueError, match="limit"):
        opp.rank_load_heatmap(placements, load, limit=-1)


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


def test_series_styles_are_distinct():
    styles = [opp.series_style(i) for i in range(32)]
    assert len(set(styles)) == 32
    first = styles[:8]
    assert len({c for c, _, _ in first}) == 8 and len({m for _, _, m in first}) == 8
    assert len({ls for _, ls, _ in first}) == 4  # solid, dashed, dash-dot, dotted


def test_imbalance_lines_differ_in_colour_style_and_marker(tmp_path):
    series = {f"policy {i}": [1.0 + 0.01 * i] * 50 for i in range(8)}
    fig = opp.imbalance_over_time(series, tmp_path / "lines.png")
    lines = [l for l in fig.axes[0].get_lines() if l.get_label().startswith("policy")]
    assert len(lines) == 8
    keys = [(l.get_color(), l.get_linestyle(), l.get_marker()) for l in lines]
    assert len({k[0] for k in keys}) == 8 and len({k[2] for k in keys}) == 8
    assert all(l.get_markevery() for l in lines)  # a few markers, not one per step


@pytest.mark.parametrize("legend", ["below", "right"])
def test_imbalance_legend_does_not_cover_the_lines(tmp_path, legend):
    series = {f"dynamic:omni(max_moves_per_rank={i},escalate_gain=0.1)": [1.0 + 0.1 * i] * 20 for i in range(7)}
    fig = opp.imbalance_over_time(series, tmp_path / "legend.png", legend=legend, shifts=[10])
    fig.canvas.draw()
    ax = fig.axes[0]
    box = ax.get_legend().get_window_extent()
    plot_area = ax.get_window_extent()
    assert not box.overlaps(plot_area), (legend, box, plot_area)
    # ... and inside the figure (constrained layout made room for it).
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width + 1 and box.y1 <= fig.bbox.height + 1


def test_imbalance_marks_the_shifts(tmp_path):
    series = {"static": [1.5] * 12, "dynamic": [1.1] * 12}
    fig = opp.imbalance_over_time(series, tmp_path / "s.png", shifts=[4, 8], shift_label="phase shift")
    ax = fig.axes[0]
    vertical = [l for l in ax.get_lines() if len(set(l.get_xdata())) == 1 and l.get_xdata()[0] in (4, 8)]
    assert sorted(l.get_xdata()[0] for l in vertical) == [4, 8]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels.count("phase shift") == 1 and "static" in labels and "dynamic" in labels


def test_plot_simulation_script_marks_phase_shifts(tmp_path):
    script = os.path.join(os.environ.get("OMNI_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
                          "scripts", "plot_simulation.py")
    csv_path = tmp_path / "steps.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["step", "policy", "max_over_mean", "time_s"])
        for step in range(40):
            for policy, v in (("static", 1.5), ("dynamic", 1.1)):
                w.writerow([step, policy, v + (0.3 if step % 15 == 0 else 0.0), 0.01 * v])
    out = subprocess.run([sys.executable, script, str(csv_path), str(tmp_path / "sim"), "--every", "2",
                          "--shift-every", "15"], check=True, capture_output=True, text=True)
    assert out.stdout.split() == [str(tmp_path / "sim_imbalance.png"), str(tmp_path / "sim_step_time.png")]
    for name in ("sim_imbalance.png", "sim_step_time.png"):
        assert matplotlib.image.imread(tmp_path / name).shape[0] > 0
    sys.path.insert(0, os.path.dirname(script))
    try:
        import plot_simulation
    finally:
        sys.path.pop(0)
    args = type("Args", (), {"shift_every": 15, "shifts": ""})()
    assert plot_simulation.shift_steps(args, 39) == [15, 30]
    args = type("Args", (), {"shift_every": 0, "shifts": "3, 9"})()
    assert plot_simulation.shift_steps(args, 39) == [3, 9]
    records = plot_simulation.read_records(csv_path, 2)
    assert [r["step"] for r in records if r["policy"] == "static"][:3] == [0, 2, 4]
    assert records[0]["max_over_mean"] == pytest.approx((1.8 + 1.5) / 2)  # steps 0 and 1 averaged


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
