"""One style for every figure: two-column paper sizes, embedded fonts, a colour-blind-safe palette.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas, never through pyplot: no
global figure registry to leak, no GUI backend picked up from the environment, and the caller's own
pyplot backend is left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Widths of a two-column paper (inches): one column and the full text width. ACL, NeurIPS-style two-column
# and IEEE templates sit between 3.25-3.5 in and 6.75-7.16 in; these fit all of them.
COLUMN_WIDTH = 3.35
FULL_WIDTH = 6.9

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies.
# Ordered so the first three slots are dense, MoE and MoE without load balancing (selection.VARIANTS), whose
# colours also differ in lightness (mid, dark, light) for grayscale print.
PALETTE = ["#009E73", "#0072B2", "#E69F00", "#D55E00", "#56B4E9", "#CC79A7", "#000000", "#F0E442"]

# Line styles and bar hatches by the same slots, so series stay apart in grayscale print too.
LINESTYLES: list[object] = ["--", "-", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1)), (0, (1, 1)), (0, (8, 2))]
HATCHES = ["////", "", "....", "xxxx", "\\\\\\\\", "++", "oo", "--"]

# A sequential colour map that stays monotonic in lightness, so it also reads in grayscale.
SEQUENTIAL_CMAP = "viridis"

RC: dict[str, Any] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "figure.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "axes.grid": True,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.35,
    "lines.linewidth": 1.3,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    # TrueType (Type 42) fonts in PDF/PS: Type 3 fonts are rejected by IEEE PDF eXpress and some publishers.
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    # Keep SVG text as text, so it stays selectable and editable.
    "svg.fonttype": "none",
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
}


@contextmanager
def paper_style() -> Iterator[None]:
    """Apply the figures' rcParams for the duration of the block (artists read most of them at creation)."""
    with rc_context(RC):  # type: ignore[arg-type]  # RC's keys are valid rcParams names
        yield


def new_figure(width: float = FULL_WIDTH, height: float = 2.4) -> Figure:
    """A Figure with constrained layout on an Agg canvas; call it inside ``paper_style()``."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str, fmt: str) -> None:
    """Write ``fig`` as ``fmt`` (pdf, png or svg) with the shared style's save settings."""
    with paper_style():
        fig.savefig(path, format=fmt)
