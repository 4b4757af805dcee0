"""How stored arrays become W&B values (documented in docs/wandb.md, "Arrays").

* a vector of at most ``MAX_SERIES`` values (per-expert utilization, per-layer load) becomes one scalar series
  per index: ``key/0``, ``key/1``, ... so each expert gets its own line, as W&B users plot them;
* a matrix (the experts x domains affinity) becomes a heatmap image, ``key``, one per logged step, so the
  media panel's step slider shows specialisation forming; a stack of matrices ``[L, E, D]`` (one per layer)
  becomes one heatmap per layer, ``key/layer0``, ``key/layer1``, ...; rows are the first axis (experts), columns
  the last (domains), and the caption gives the value range the colours span;
* anything larger (long vectors, big matrices, 4-D and up) becomes a ``wandb.Histogram`` of its finite values.

Heatmaps are drawn here with NumPy and Pillow (no matplotlib): each cell a square of pixels, coloured on a
viridis-like ramp. Without Pillow a matrix is sent as a ``wandb.Table`` instead (rows experts, columns domains).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_SERIES = 64  # vectors up to this many values become per-index series
MAX_HEATMAP_SIDE = 256  # matrices with both sides up to this become heatmaps
MAX_LAYERS = 64  # [L, E, D] stacks up to this many layers become per-layer heatmaps
HISTOGRAM_BINS = 64

# Anchor colours of matplotlib's viridis at 0, 1/4, 1/2, 3/4, 1 (van der Walt & Smith, 2015), interpolated.
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def array_kind(shape: tuple[int, ...]) -> str:
    """Which W&B form an array of this shape takes: "scalar", "series", "heatmap", "layers" or "histogram"."""
    size = int(np.prod(shape)) if shape else 1
    if size == 1:
        return "scalar"
    if len(shape) == 1 and shape[0] <= MAX_SERIES:
        return "series"
    if len(shape) == 2 and max(shape) <= MAX_HEATMAP_SIDE:
        return "heatmap"
    if len(shape) == 3 and shape[0] <= MAX_LAYERS and max(shape[1:]) <= MAX_HEATMAP_SIDE:
        return "layers"
    return "histogram"


def to_wandb(key: str, value: np.ndarray, wandb: Any) -> dict[str, Any]:
    """The W&B entries (name -> value for ``wandb.log``) that stand for one array logged under ``key``."""
    value = np.asarray(value)
    if value.dtype == np.bool_ or value.dtype.kind in "iu":
        value = value.astype(np.float64)
    kind = array_kind(value.shape)
    if kind == "scalar":
        return {key: float(value.reshape(-1)[0])}
    if kind == "series":
        return {f"{key}/{i}": float(v) for i, v in enumerate(value)}
    if kind == "heatmap":
        return {key: heatmap(value, wandb, title=key)}
    if kind == "layers":
        return {f"{key}/layer{i}": heatmap(m, wandb, title=f"{key} layer {i}") for i, m in enumerate(value)}
    return {key: histogram(value, wandb)}


def histogram(value: np.ndarray, wandb: Any) -> Any:
    """A ``wandb.Histogram`` of the finite values (NaN and inf have no bin)."""
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        flat = np.zeros(1)
    return wandb.Histogram(np_histogram=np.histogram(flat, bins=HISTOGRAM_BINS))


def heatmap(matrix: np.ndarray, wandb: Any, title: str = "") -> Any:
    """A heatmap image of a 2-D matrix (``wandb.Image``), or a ``wandb.Table`` when Pillow is missing."""
    matrix = np.asarray(matrix, dtype=np.float64)
    try:
        import PIL.Image  # noqa: F401  (wandb.Image needs Pillow for NumPy input)
    except ImportError:
        columns = [str(j) for j in range(matrix.shape[1])]
        return wandb.Table(columns=["row", *columns], data=[[i, *map(float, r)] for i, r in enumerate(matrix)])
    finite = matrix[np.isfinite(matrix)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    pixels = colorize(matrix, lo, hi)
    caption = f"{title}: rows = axis 0 ({matrix.shape[0]}), columns = axis 1 ({matrix.shape[1]}); "
    caption += f"colour from {lo:.4g} (dark) to {hi:.4g} (yellow)"
    return wandb.Image(pixels, caption=caption)


def colorize(matrix: np.ndarray, lo: float, hi: float, min_side: int = 192) -> np.ndarray:
    """RGB pixels (uint8, H x W x 3) for a matrix: each cell a square, NaN grey, on a viridis-like ramp."""
    span = hi - lo if hi > lo else 1.0
    t = np.clip((matrix - lo) / span, 0.0, 1.0)
    t = np.where(np.isfinite(matrix), t, 0.0)
    pos = t * (len(_RAMP) - 1)
    idx = np.minimum(pos.astype(int), len(_RAMP) - 2)
    frac = (pos - idx)[..., None]
    rgb = _RAMP[idx] * (1 - frac) + _RAMP[idx + 1] * frac
    rgb[~np.isfinite(matrix)] = 128.0
    cell = max(1, min_side // max(matrix.shape))
    rgb = np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)
    return rgb.round().astype(np.uint8)
