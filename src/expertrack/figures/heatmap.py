"""Figure 2: expert specialisation, an experts x domains heatmap per layer at one step of one run.

Reads ``moe/affinity``: raw token counts ``[L, E, D]`` (layer, expert, domain) per logged step. Counts
are normalised per domain by default (the share of each domain's routed tokens that each expert took), so
a uniform router shows 1/E everywhere and a specialised expert stands out in its domain's column.
Expert identities differ between seeds, so the heatmap shows one run, never a mean over runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from expertrack.figures.data import FigureResult, MissingDataError, domains_of, run_record
from expertrack.figures.selection import RunLike, Selection, Series, matches
from expertrack.figures.style import COLUMN_WIDTH, FULL_WIDTH, SEQUENTIAL_CMAP, new_figure, paper_style

AFFINITY_KEY = "moe/affinity"
NORMALIZATIONS = {
    "domain": "Share of domain's tokens (%)",
    "expert": "Share of expert's tokens (%)",
    "none": "Tokens routed",
}
ANNOTATE_MAX_EXPERTS = 16  # beyond this the numbers no longer fit in the cells
PANELS_PER_ROW = 6


def normalize_counts(counts: np.ndarray, normalize: str) -> np.ndarray:
    """Counts ``[..., E, D]`` as shares per domain (columns sum to 1), per expert (rows), or unchanged."""
    counts = np.asarray(counts, float)
    if normalize == "none":
        return counts
    axis = {"domain": -2, "expert": -1}.get(normalize)
    if axis is None:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, not {normalize!r}")
    totals = counts.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / totals, 0.0)


def _cell_text(value: float, normalize: str) -> str:
    if normalize == "none":
        return f"{value:.0f}" if value < 1000 else f"{value / 1000:.1f}k"
    return f"{100 * value:.0f}"


def plot_specialization(
    matrices: np.ndarray, domains: Sequence[str], layers: Sequence[int], normalize: str = "domain"
) -> Figure:
    """Heatmaps of ``matrices`` ``[layers, E, D]``, one panel per layer, one shared colour scale."""
    count, experts, _ = matrices.shape
    ncols = min(count, PANELS_PER_ROW)
    nrows = math.ceil(count / ncols)
    width = COLUMN_WIDTH if count == 1 else FULL_WIDTH
    scale = 100.0 if normalize != "none" else 1.0
    norm = Normalize(0.0, float(np.max(matrices)) * scale or 1.0)
    with paper_style():
        fig = new_figure(width, 0.55 + nrows * (0.35 + 0.16 * experts))
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
        image: AxesImage | None = None
        for ax, matrix, layer in zip(axes, matrices, layers):
            image = ax.imshow(matrix * scale, cmap=SEQUENTIAL_CMAP, norm=norm, aspect="auto")
            ax.set_title(f"Layer {layer}")
            ax.grid(False)
            ax.set_xticks(range(len(domains)), list(domains))
            ax.set_yticks(range(experts), [str(e) for e in range(experts)])
            ax.tick_params(length=0)
            if experts <= ANNOTATE_MAX_EXPERTS:
                _annotate(ax, matrix, normalize, norm)
        for ax in axes[count:]:
            ax.set_visible(False)
        for ax in axes[::ncols]:
            ax.set_ylabel("Expert")
        if image is not None:
            fig.colorbar(image, ax=list(axes[:count]), label=NORMALIZATIONS[normalize], shrink=0.9, aspect=25)
    return fig


def _annotate(ax: Axes, matrix: np.ndarray, normalize: str, norm: Normalize) -> None:
    """Write each cell's value, dark on light cells and light on dark ones (by the colour's luminance)."""
    cmap = ax.images[0].get_cmap()
    scale = 100.0 if normalize != "none" else 1.0
    for (expert, domain), value in np.ndenumerate(matrix):
        r, g, b, _ = cmap(norm(value * scale))
        dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5  # relative luminance, ITU-R BT.709 weights
        ax.text(
            domain,
            expert,
            _cell_text(value, normalize),
            ha="center",
            va="center",
            fontsize=6,
            color="white" if dark else "black",
        )


def _pick_run(selection: Selection, run: str | None) -> tuple[RunLike, Series]:
    candidates = [(r, s) for s in selection.series for r in s.runs if AFFINITY_KEY in r.array_keys()]
    if run is not None:
        named = [(r, s) for s in selection.series for r in s.runs if matches(r, run)]
        if not named:
            raise MissingDataError(f"specialization: no run named {run!r} among the chosen runs")
        candidates = [(r, s) for r, s in named if AFFINITY_KEY in r.array_keys()]
        if not candidates:
            raise MissingDataError(f"specialization: run {run!r} has no {AFFINITY_KEY} array")
    if not candidates:
        names = ", ".join(r.name for r in selection.runs())
        raise MissingDataError(f"specialization: no run has the {AFFINITY_KEY} array [L, E, D]; runs: {names}")
    # Prefer a load-balanced MoE run: the figure is about the specialisation the method reaches.
    candidates.sort(key=lambda rs: {"moe": 0, "moe-no-lb": 1}.get(rs[1].variant or "", 2))
    return candidates[0]


def _step_index(steps: np.ndarray, step: int | None) -> int:
    if step is None:
        return len(steps) - 1
    earlier = np.flatnonzero(steps <= step)
    if len(earlier) == 0:
        raise MissingDataError(f"specialization: no {AFFINITY_KEY} logged at or before step {step}")
    return int(earlier[-1])


def specialization(
    selection: Selection,
    run: str | None = None,
    layer: int | None = None,
    step: int | None = None,
    normalize: str = "domain",
) -> FigureResult:
    """Figure 2: experts x domains heatmap(s) of one run at one step (the last by default).

    ``run`` names the run (default: the first load-balanced MoE run with ``moe/affinity``); ``layer``
    picks one layer (default: every layer as small multiples); ``step`` takes the last logged step at or
    before it; ``normalize`` is "domain", "expert" or "none".
    """
    chosen, series = _pick_run(selection, run)
    steps, values = chosen.arrays(AFFINITY_KEY)
    counts = np.asarray(values, float)
    counts = counts.reshape(len(steps), -1, *counts.shape[-2:])  # [n, L, E, D]; a single layer gets L = 1
    index = _step_index(np.asarray(steps), step)
    layer_count = counts.shape[1]
    if layer is not None and not 0 <= layer < layer_count:
        raise MissingDataError(f"specialization: layer {layer} not in run {chosen.name} (it has {layer_count})")
    layers = list(range(layer_count)) if layer is None else [layer]
    shares = normalize_counts(counts[index][layers], normalize)
    domains = domains_of(chosen, counts.shape[-1])
    fig = plot_specialization(shares, domains, layers, normalize)
    rows = [
        {"layer": lyr, "expert": e, "domain": domains[d], "count": counts[index][lyr, e, d], "value": shares[i, e, d]}
        for i, lyr in enumerate(layers)
        for (e, d), _ in np.ndenumerate(shares[i])
    ]
    used_step = int(steps[index])
    source = {**run_record(chosen, series), "key": AFFINITY_KEY, "step": used_step}
    params = {"run": chosen.name, "step": used_step, "layers": layers, "normalize": normalize, "domains": domains}
    return FigureResult("specialization", fig, pd.DataFrame(rows), [source], params)
