"""Figures of metrics over training: loss curves MoE vs dense (1) and router entropy per layer (5).

Each series is drawn as the mean of its runs with a band of one standard deviation across them (seeds);
with smoothing on, the smoothed mean is drawn over the raw mean, which stays faint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from expertrack.figures.data import (
    Curve,
    FigureResult,
    MissingDataError,
    aggregate,
    describe_missing,
    ema,
    missing_report,
    read_series,
    run_record,
    run_scalars,
    tokens_per_step,
)
from expertrack.figures.selection import RunLike, Selection, Series
from expertrack.figures.style import FULL_WIDTH, new_figure, paper_style

LOSS_PANELS = {"train/loss": "Training loss", "eval/loss": "Validation loss"}
ENTROPY_LAYERS_KEY = "moe/router_entropy_norm_layers"
ENTROPY_KEY = "moe/router_entropy_norm"
DENSE_CURVE_POINTS = 50  # curves with fewer points are drawn whole, never clipped at the start
MARKED_CURVE_POINTS = 20  # curves with at most this many points show a marker at each
MAX_PLOT_POINTS = 2000  # per line: enough for a full-width figure at 300 dpi, small enough for vector output

# A run's series of (steps, values) for one panel, or None when the run lacks it.
Reader = Callable[[RunLike], "tuple[np.ndarray, np.ndarray] | None"]


def _x_of(run: RunLike, steps: np.ndarray, x: str) -> np.ndarray:
    if x == "step":
        return steps.astype(float)
    per_step = tokens_per_step(run)
    if per_step is None:
        raise MissingDataError(
            f"run {run.name} has no tokens_per_step (nor batch_size and block_size) in its config, "
            "so its x-axis cannot be tokens; use steps"
        )
    return steps * per_step  # tokens consumed after `step` optimizer steps


def collect_curves(
    selection: Selection, panel: str, read: Reader, x: str, smooth: float, rows: list[dict], sources: list[dict]
) -> list[Curve]:
    """One Curve per series that has data for ``panel``; appends CSV rows and provenance records."""
    curves = []
    for series in selection.series:
        raw, smoothed = [], []
        for run in series.runs:
            data = read(run)
            if data is None or len(data[0]) == 0:
                continue
            steps, values = data
            xs = _x_of(run, steps, x)
            raw.append((xs, values))
            smoothed.append((xs, ema(values, smooth) if smooth else values))
            points = {"steps": [int(steps[0]), int(steps[-1])], "points": len(steps)}
            sources.append({**run_record(run, series), "panel": panel, **points})
        if raw:
            curves.append(_curve(series, raw, smoothed, smooth, panel, rows))
    return curves


def _curve(series: Series, raw: list, smoothed: list, smooth: float, panel: str, rows: list[dict]) -> Curve:
    grid, mean, std = aggregate(smoothed)
    raw_mean = aggregate(raw)[1] if smooth else None  # same x grid: smoothing keeps every point
    table = {"panel": panel, "series": series.label, "x": grid, "mean": mean, "std": std, "n_runs": len(raw)}
    if raw_mean is not None:
        table["raw_mean"] = raw_mean
    rows.extend(pd.DataFrame(table).to_dict("records"))
    return Curve(series.label, grid, mean, std, len(raw), series.color, series.linestyle, raw_mean)


def _decimate(curve: Curve) -> tuple[np.ndarray, ...]:
    """Thin a long line to MAX_PLOT_POINTS, keeping each bucket's extremes so spikes stay visible."""
    arrays = (curve.x, curve.mean, curve.std, curve.raw_mean if curve.raw_mean is not None else curve.mean)
    if len(curve.x) <= MAX_PLOT_POINTS:
        return arrays
    from expertrack.store.downsample import minmax_indices

    index = minmax_indices(arrays[3], MAX_PLOT_POINTS // 4)
    return tuple(a[index] for a in arrays)


def draw_curves(ax: Axes, curves: Sequence[Curve]) -> None:
    """Mean lines, a ±1 s.d. band where a series has several runs, and the faint raw mean if smoothed."""
    for curve in curves:
        x, mean, std, raw = _decimate(curve)
        if curve.raw_mean is not None:
            ax.plot(x, raw, color=curve.color, alpha=0.25, linewidth=0.6, linestyle="-")
        if curve.n > 1:
            ax.fill_between(x, mean - std, mean + std, color=curve.color, alpha=0.2, linewidth=0)
        label = curve.label if curve.n == 1 else f"{curve.label} ({curve.n} seeds)"
        marker = "o" if len(x) <= MARKED_CURVE_POINTS else None  # a few evals: mark the measured points
        ax.plot(x, mean, color=curve.color, linestyle=curve.linestyle, label=label, marker=marker, markersize=2.5)


def _loss_ylim(ax: Axes, curves: Sequence[Curve]) -> None:
    """Skip the first 5% of dense curves when scaling y, so the initial drop does not flatten the rest.

    Sparse curves (validation every few hundred steps) keep every point: each one is a measurement.
    """
    values = []
    for c in curves:
        late = c.x >= c.x[0] + 0.05 * (c.x[-1] - c.x[0]) if len(c.x) >= DENSE_CURVE_POINTS else slice(None)
        values.append(c.mean[late] + c.std[late])
        values.append(c.mean[late] - c.std[late])
    low, high = float(np.nanmin(np.concatenate(values))), float(np.nanmax(np.concatenate(values)))
    pad = 0.05 * (high - low or 1.0)
    ax.set_ylim(low - pad, high + pad)


def plot_panels(
    panels: dict[str, list[Curve]], xlabel: str, ylabel: str, ncols: int = 2, ylim: tuple | None = None
) -> Figure:
    """Small multiples of curves, one titled axes per panel, sharing x and one legend above them."""
    nrows = math.ceil(len(panels) / ncols)
    ncols = min(ncols, len(panels))
    with paper_style():
        fig = new_figure(FULL_WIDTH if ncols > 1 else FULL_WIDTH / 2, 0.4 + 1.9 * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=ylim is not None).ravel()
        for ax, (title, curves) in zip(axes, panels.items()):
            draw_curves(ax, curves)
            ax.set_title(title)
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
            if ylim is not None:
                ax.set_ylim(*ylim)
            else:
                _loss_ylim(ax, curves)
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        for ax in axes[(nrows - 1) * ncols :]:
            ax.set_xlabel(xlabel)
        for ax in axes[::ncols]:
            ax.set_ylabel(ylabel)
        _shared_legend(fig, list(axes))
    return fig


def _shared_legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend above the panels, so it never covers data; entries from every panel, once each."""
    entries: dict[str, Artist] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="outside upper center", ncols=min(len(entries), 4))


def _xlabel(x: str) -> str:
    if x not in ("step", "tokens"):
        raise ValueError(f"x must be 'step' or 'tokens', not {x!r}")
    return "Training step" if x == "step" else "Training tokens"


def loss_curves(selection: Selection, x: str = "step", smooth: float = 0.0) -> FigureResult:
    """Figure 1: training and validation loss over training, one line (and seed band) per series.

    ``x`` is "step" or "tokens"; ``smooth`` is an EMA weight in [0, 1) for the training loss (validation
    points are already averages over many tokens and are left as they are).
    """
    xlabel = _xlabel(x)
    rows: list[dict] = []
    sources: list[dict] = []
    panels: dict[str, list[Curve]] = {}
    diverged: list[str] = []
    for key, title in LOSS_PANELS.items():

        def read(run: RunLike, key: str = key) -> tuple[np.ndarray, np.ndarray] | None:
            if key not in run.metric_keys():
                return None
            steps, values, end = read_series(run, key)
            if end is not None:
                diverged.append(f"{run.name} {key} ({end})")
            return steps, values

        curves = collect_curves(selection, key, read, x, smooth if key == "train/loss" else 0.0, rows, sources)
        if curves:
            panels[title] = curves
    missing = missing_report(selection.series, list(LOSS_PANELS))
    if not panels:
        raise MissingDataError(describe_missing("loss_curves", missing, len(selection.runs())))
    fig = plot_panels(panels, xlabel, "Cross-entropy loss (nats/token)")
    notes = [describe_missing("loss_curves", missing, len(selection.runs()))] if missing else []
    if diverged:
        notes.append(f"loss_curves: curves stop at the last finite point of runs that diverged: {', '.join(diverged)}")
    table = pd.DataFrame(rows).rename(columns={"x": x})
    return FigureResult("loss_curves", fig, table, sources, {"x": x, "smooth": smooth}, notes)


def _per_layer_entropy(selection: Selection) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each run's ``(steps [n], values [n, L])`` of the per-layer entropy, read once."""
    found = {}
    for run in selection.runs():
        if ENTROPY_LAYERS_KEY in run.array_keys():
            steps, values = run.arrays(ENTROPY_LAYERS_KEY)
            found[run.id] = (np.asarray(steps), np.asarray(values, float).reshape(len(steps), -1))
    return found


def _entropy_reader(layer: int | None, per_layer: dict[str, tuple[np.ndarray, np.ndarray]]) -> Reader:
    def read(run: RunLike) -> tuple[np.ndarray, np.ndarray] | None:
        if layer is None:
            return run_scalars(run, ENTROPY_KEY) if ENTROPY_KEY in run.metric_keys() else None
        if run.id not in per_layer or layer >= per_layer[run.id][1].shape[1]:
            return None
        steps, values = per_layer[run.id]
        keep = np.isfinite(values[:, layer])
        return steps[keep], values[keep, layer]

    return read


def router_entropy(selection: Selection, x: str = "step", smooth: float = 0.0) -> FigureResult:
    """Figure 5: normalised router entropy over training, one panel per layer (1 = uniform routing).

    Reads ``moe/router_entropy_norm_layers`` ([L] per step); without it, the all-layer scalar
    ``moe/router_entropy_norm`` in a single panel.
    """
    xlabel = _xlabel(x)
    rows: list[dict] = []
    sources: list[dict] = []
    per_layer = _per_layer_entropy(selection)
    layers = max((values.shape[1] for _, values in per_layer.values()), default=0)
    panels: dict[str, list[Curve]] = {}
    for layer in range(layers) if layers else [None]:
        title = f"Layer {layer}" if layer is not None else "Mean over layers"
        read = _entropy_reader(layer, per_layer)
        curves = collect_curves(selection, title, read, x, smooth, rows, sources)
        if curves:
            panels[title] = curves
    if not panels:
        raise MissingDataError(
            f"router_entropy: no run has {ENTROPY_LAYERS_KEY} (array) or {ENTROPY_KEY} (scalar); "
            f"runs: {', '.join(r.name for r in selection.runs())}"
        )
    fig = plot_panels(panels, xlabel, "Router entropy / ln E", ncols=min(len(panels), 4), ylim=(0.0, 1.03))
    table = pd.DataFrame(rows).rename(columns={"x": x, "panel": "layer"})
    key = ENTROPY_LAYERS_KEY if layers else ENTROPY_KEY
    return FigureResult("router_entropy", fig, table, sources, {"x": x, "smooth": smooth, "key": key})
