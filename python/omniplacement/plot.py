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
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from . import _omni
from ._tensors import to_numpy

__all__ = ["rank_load_heatmap", "imbalance_over_time", "load_series", "series_style"]


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


# Distinct line styles for the series of imbalance_over_time: colour, dash
# pattern and marker all change from one series to the next, so that lines stay
# apart in greyscale and where they overlap. Colours: Okabe-Ito (colour-blind safe).
_SERIES_STYLES = [
    ("#0072B2", "-", "o"),
    ("#D55E00", "--", "s"),
    ("#009E73", "-.", "^"),
    ("#CC79A7", ":", "D"),
    ("#E69F00", "-", "v"),
    ("#56B4E9", "--", "P"),
    ("#000000", "-.", "X"),
    ("#999999", ":", "*"),
]


def series_style(index):
    """(color, linestyle, marker) of the index-th series of imbalance_over_time.

    The first 8 are all distinct in every one of the three; later ones repeat the
    colours with the dash patterns shifted, so no two of the first 32 are equal.
    """
    color, _, marker = _SERIES_STYLES[index % len(_SERIES_STYLES)]
    linestyle = _SERIES_STYLES[(index + index // len(_SERIES_STYLES)) % len(_SERIES_STYLES)][1]
    return color, linestyle, marker


def rank_load_heatmap(placements, load, path=None, *, mode="shares", title=None, limit=None, percentile=99.0,
                      scale_from=None, width_in=None, height_in=4.0, dpi=100):
    """Heatmap of rank load per layer, relative to the layer's mean rank load.

    placements: one Placement, or a dict {label: Placement} drawn side by side on one
        colour scale (e.g. before and after a re-placement).
    load: LoadMatrix or array-like [num_layers, num_experts] (tokens per expert).
    mode: 'shares' (the placements' shares when they have them) or 'even'.
    Each cell is rank_load[layer][rank] / mean over ranks, so 1.0 is a perfectly
    balanced rank; each panel's title gives the mean over layers of max/mean.

    The colour scale diverges around 1.0 (white): red above the mean, blue below,
    from max(0, 1 - limit) to 1 + limit. Unless `limit` is given it is the `percentile`-th
    percentile of |cell - 1| over the panels named in `scale_from` (default: every
    panel), so that one outlying cell does not flatten the rest; cells beyond the
    limit take the end colours (the colour bar then has arrows) and the colour
    bar's label states the limit and where it came from. Pass scale_from to set
    the scale by the balanced placements when a baseline would dwarf them.
    Returns the Figure; saves a PNG to `path` when given.
    """
    if isinstance(placements, _omni.Placement):
        placements = {"": placements}
    if not placements:
        raise ValueError("rank_load_heatmap: no placement given")
    if not 0 < percentile <= 100:
        raise ValueError(f"rank_load_heatmap: percentile must be in (0, 100], got {percentile}")
    if limit is not None and not limit > 0:
        raise ValueError(f"rank_load_heatmap: limit must be > 0, got {limit}")
    load = _as_load(load)
    grids, labels = {}, []
    for label, p in placements.items():
        grid = _omni.rank_load_matrix(p, load, mode)
        mean = grid.mean(axis=1, keepdims=True)
        grids[label] = np.divide(grid, mean, out=np.ones_like(grid), where=mean > 0)
        balance = _omni.placement_balance(p, load, mode)
        labels.append(f"{label}: " if label else "")
        labels[-1] += f"mean max/mean {balance.mean_max_over_mean:.3f}"
    if limit is None:
        names = list(grids) if scale_from is None else list(scale_from)
        unknown = [n for n in names if n not in grids]
        if unknown or not names:
            raise ValueError(f"rank_load_heatmap: scale_from names {unknown or names}, the panels are {list(grids)}")
        deviation = np.abs(np.concatenate([grids[n].ravel() for n in names]) - 1.0)
        # A perfectly balanced set of panels still gets a readable (tiny) scale.
        limit = max(float(np.percentile(deviation, percentile)), 1e-3)
        source = f"{percentile:g}th percentile of |x - 1|"
        if scale_from is not None:
            source += " over " + ", ".join(names)
    else:
        limit = float(limit)
        source = "set by the caller"
    # A rank cannot carry less than nothing: below 1.0 the scale stops at 0.
    vmin = max(0.0, 1.0 - limit)
    clipped_high = any(float(g.max()) > 1.0 + limit for g in grids.values())
    clipped_low = any(float(g.min()) < vmin for g in grids.values())
    extend = {(False, False): "neither", (True, False): "max", (False, True): "min", (True, True): "both"}[
        (clipped_high, clipped_low)]
    norm = TwoSlopeNorm(vcenter=1.0, vmin=vmin, vmax=1.0 + limit)
    n = len(grids)
    fig = _figure(width_in or 4.5 * n + 1.5, height_in, dpi)
    axes = fig.subplots(1, n, squeeze=False)[0]
    image = None
    for ax, grid, label in zip(axes, grids.values(), labels):
        image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="RdBu_r", norm=norm)
        ax.set_xlabel("rank")
        ax.set_ylabel("MoE layer")
        ax.set_title(label, fontsize=9)
    # Under the panels, so that the label explaining the scale has the figure's width.
    bar = fig.colorbar(image, ax=list(axes), extend=extend, orientation="horizontal", location="bottom",
                       shrink=0.6, aspect=50, pad=0.02)
    bar.set_label(f"rank load / layer mean (1.0 = balanced, white); scale 1 \u00b1 {limit:.3g}: {source}"
                  + ("; cells beyond it clipped to the end colours" if extend != "neither" else ""), fontsize=8)
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


def imbalance_over_time(source, path=None, *, metric="max_over_mean", title=None, shifts=None, shift_label=None,
                        legend="below", markers=12, ylabel=None, width_in=7.0, height_in=3.5, dpi=100):
    """Line plot of `metric` (default max/mean rank load) per step, one line per policy.

    source: see load_series(). Each series has its own colour, dash pattern and
    marker (series_style(); `markers` markers per line, 0 for none), so lines can be
    told apart where they overlap and in greyscale. A dashed grey line marks 1.0
    (perfect balance) when the metric is max_over_mean.
    shifts: steps at which the workload changes (e.g. the simulator's phase shifts);
        each gets a vertical dotted line, one legend entry `shift_label` (default
        "workload shift") for all of them.
    legend: 'below' (under the axes, never over a line), 'right' (beside the axes),
        or any matplotlib legend location to draw it inside the axes.
    Returns the Figure; saves a PNG to `path` when given.
    """
    series = load_series(source, metric)
    fig = _figure(width_in, height_in, dpi)
    ax = fig.subplots()
    for i, (name, (steps, values)) in enumerate(series.items()):
        color, linestyle, marker = series_style(i)
        every = max(1, len(steps) // markers) if markers else None
        ax.plot(steps, values, label=name or None, color=color, linestyle=linestyle, linewidth=1.3,
                marker=marker if markers else None, markevery=every, markersize=4)
    for j, step in enumerate(shifts or []):
        ax.axvline(step, color="0.35", linestyle=(0, (1, 2)), linewidth=1.0, zorder=0,
                   label=(shift_label or "workload shift") if j == 0 else None)
    if metric == "max_over_mean":
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel or metric.replace("_", " "))
    handles, names = ax.get_legend_handles_labels()
    if handles:
        if legend == "below":
            # As many columns as fit the figure's width: about 0.06 in per character at
            # 8 pt, plus the line sample and the gap between columns.
            column_in = 0.06 * max(len(n) for n in names) + 0.8
            ncol = int(max(1, min(4, len(handles), (width_in - 0.3) // column_in)))
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False)
        elif legend == "right":
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        else:
            ax.legend(fontsize=8, loc=legend)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    _save(fig, path)
    return fig
