"""Plots of placements and balance over time, rendered with matplotlib's Agg backend.

Figures are built as ``matplotlib.figure.Figure`` objects on an Agg canvas, so
importing this module never changes pyplot's global backend or opens a window,
and it works on machines without a display.

    import omniplacement as op, omniplacement.plot as opp
    fig = opp.rank_load_heatmap({"contiguous": p0, "omni": p1}, load, "heatmap.png")
    fig = opp.imbalance_over_time("steps.csv", "imbalance.png")   # omniplace simulate --csv

Both functions return the Figure and, when ``path`` is given, save it as PNG.
"""
import csv
import json
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import _omni
from ._tensors import to_numpy

__all__ = ["rank_load_heatmap", "imbalance_over_time", "load_series"]


def _as_load(load):
    if isinstance(load, _omni.LoadMatrix):
        return load
    return _omni.LoadMatrix(to_numpy(load))


def _figure(width_in, height_in, dpi):
    # Constrained layout keeps titles, labels and colorbars inside the canvas.
    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    if path is not None:
        fig.savefig(os.fspath(path), format="png", dpi=fig.dpi)


def rank_load_heatmap(placements, load, path=None, *, mode="shares", title=None, width_in=None, height_in=4.0,
                      dpi=100):
    """Heatmap of rank load per layer, relative to the layer's mean rank load.

    placements: one Placement, or a dict {label: Placement} drawn side by side on one
        color scale (e.g. before and after a re-placement).
    load: LoadMatrix or array-like [num_layers, num_experts] (tokens per expert).
    mode: 'shares' (the placements' shares when they have them) or 'even'.
    Each cell is rank_load[layer][rank] / mean over ranks, so 1.0 is a perfectly
    balanced rank; each panel's title gives the mean over layers of max/mean.
    Returns the Figure; saves a PNG to `path` when given.
    """
    if isinstance(placements, _omni.Placement):
        placements = {"": placements}
    if not placements:
        raise ValueError("rank_load_heatmap: no placement given")
    load = _as_load(load)
    grids, labels = [], []
    for label, p in placements.items():
        grid = _omni.rank_load_matrix(p, load, mode)
        mean = grid.mean(axis=1, keepdims=True)
        grids.append(np.divide(grid, mean, out=np.ones_like(grid), where=mean > 0))
        balance = _omni.placement_balance(p, load, mode)
        labels.append(f"{label}: " if label else "")
        labels[-1] += f"mean max/mean {balance.mean_max_over_mean:.3f}"
    vmax = max(float(g.max()) for g in grids)
    n = len(grids)
    fig = _figure(width_in or 4.5 * n + 1.0, height_in, dpi)
    axes = fig.subplots(1, n, squeeze=False)[0]
    image = None
    for ax, grid, label in zip(axes, grids, labels):
        image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=vmax)
        ax.set_xlabel("rank")
        ax.set_ylabel("MoE layer")
        ax.set_title(label, fontsize=9)
    fig.colorbar(image, ax=list(axes), label="rank load / layer mean")
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return fig


def load_series(source, metric="max_over_mean"):
    """Per-policy time series of `metric` from demo or simulator output.

    source: a per-step CSV with a header (e.g. ``omniplace simulate --csv``: columns
    step, policy, ..., max_over_mean, ...), a JSON file, or a parsed object in any of
    these shapes:
      {"policies": {name: series}}    or    {name: series}    (several policies)
      {"steps": records} / {"per_step": records} / records  (one policy, or records with a "policy" key)
    where series is a list of numbers (one per step) or of records, a record being a
    dict with `metric` and optionally "step" (default: its index) and "policy".
    Returns {name: (steps, values)} with numpy arrays, in input order.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8", newline="") as f:
            source = [_numeric(row) for row in csv.DictReader(f)] if os.fspath(source).endswith(".csv") \
                else json.load(f)
    if isinstance(source, dict):
        if "policies" in source:
            source = source["policies"]
        else:
            for key in ("steps", "per_step"):
                if key in source:
                    return load_series(source[key], metric)
        return {str(name): _one_series(series, metric, name) for name, series in source.items()}
    if isinstance(source, list):
        grouped = {}
        for item in source:
            name = str(item.get("policy", "")) if isinstance(item, dict) else ""
            grouped.setdefault(name, []).append(item)
        return {name: _one_series(items, metric, name) for name, items in grouped.items()}
    raise ValueError(f"imbalance series: unsupported source of type {type(source).__name__}")


def _numeric(row):
    """A CSV row with numbers where the text is one."""
    out = {}
    for key, value in row.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            out[key] = value
    return out


def _one_series(series, metric, name):
    if not isinstance(series, list) or not series:
        raise ValueError(f"imbalance series '{name}': expected a non-empty list, got {type(series).__name__}")
    steps, values = [], []
    for i, item in enumerate(series):
        if isinstance(item, dict):
            if metric not in item:
                raise ValueError(f"imbalance series '{name}': record {i} has no '{metric}' (keys: {sorted(item)})")
            steps.append(item.get("step", i))
            values.append(item[metric])
        else:
            steps.append(i)
            values.append(item)
    return np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)


def imbalance_over_time(source, path=None, *, metric="max_over_mean", title=None, width_in=7.0, height_in=3.5,
                        dpi=100):
    """Line plot of `metric` (default max/mean rank load) per step, one line per policy.

    source: see load_series(). A dashed line marks 1.0 (perfect balance) when the
    metric is max_over_mean. Returns the Figure; saves a PNG to `path` when given.
    """
    series = load_series(source, metric)
    fig = _figure(width_in, height_in, dpi)
    ax = fig.subplots()
    for name, (steps, values) in series.items():
        ax.plot(steps, values, label=name or None, linewidth=1.2)
    if metric == "max_over_mean":
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(metric.replace("_", " "))
    if any(series):
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    _save(fig, path)
    return fig
