"""Runs that repeat one setup (seeds) as one curve: their mean and spread over a common x grid.

Shared by the report figures (``expertrack.figures``) and the dashboard's grouped charts, so a group drawn in
the browser and the same group in a paper figure are the same numbers. NumPy only: the dashboard imports this
without matplotlib.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def align(curves: Sequence[tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``(grid, stack)``: the runs' values on one x grid, one row per run.

    Runs logged at the same x are stacked as they are; otherwise each is interpolated onto the union of their x
    values inside the range all runs cover, so nothing is extrapolated past the end of a shorter run.
    """
    raw = [(np.asarray(x), y) for x, y in curves if len(x)]
    if not raw:
        return np.empty(0), np.empty((0, 0))
    first = raw[0][0]
    # seeds of one setup usually log at the same steps: compare them as logged (integers), before any conversion
    if all(len(x) == len(first) and np.array_equal(x, first) for x, _ in raw):
        return first.astype(float), np.vstack([np.asarray(y, float) for _, y in raw])
    pairs = [(x.astype(float), np.asarray(y, float)) for x, y in raw]
    lo = max(x[0] for x, _ in pairs)
    hi = min(x[-1] for x, _ in pairs)
    grid = np.unique(np.concatenate([x[(x >= lo) & (x <= hi)] for x, _ in pairs]))
    return grid, np.vstack([np.interp(grid, x, y) for x, y in pairs])


def aggregate(curves: Sequence[tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof=1) across runs: ``(x, mean, std)``; a single run has std 0."""
    grid, stack = align(curves)
    return (grid, *_moments(stack))


def _moments(stack: np.ndarray, finite: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and s.d. over runs (rows), ignoring NaN; ``finite`` says the stack has none (NumPy's NaN-aware
    reductions copy and mask the whole stack: about 5x slower on the dashboard's 4 x 100,000-point groups)."""
    if stack.shape[0] == 0:
        return np.empty(0), np.empty(0)
    if stack.shape[0] == 1:
        return stack[0], np.zeros_like(stack[0])
    if finite is None:
        finite = bool(np.isfinite(stack).all())
    if finite:
        return stack.mean(axis=0), stack.std(axis=0, ddof=1)
    # a step where only one run has a value has no s.d.: NaN there, without NumPy's warning about it
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=0), np.nanstd(stack, axis=0, ddof=1)


@dataclass
class Spread:
    """One group's curve: the mean over its ``n`` runs and both bands (±1 s.d. and min-max) on grid ``x``."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int

    def band(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """The band's lower and upper edge: ``"std"`` for mean ± 1 s.d., ``"minmax"`` for the runs' range."""
        if kind == "std":
            return self.mean - self.std, self.mean + self.std
        if kind == "minmax":
            return self.low, self.high
        raise ValueError(f"band must be 'std' or 'minmax', not {kind!r}")


def spread(curves: Sequence[tuple[Any, Any]]) -> Spread:
    """``aggregate``'s mean and s.d., plus the runs' minimum and maximum at each x, on the same grid."""
    grid, stack = align(curves)
    if stack.shape[0] == 0:
        empty = np.empty(0)
        return Spread(empty, empty, empty, empty, empty, 0)
    finite = bool(np.isfinite(stack).all())
    mean, std = _moments(stack, finite)
    low, high = (stack.min(axis=0), stack.max(axis=0)) if finite else (np.nanmin(stack, 0), np.nanmax(stack, 0))
    return Spread(grid, mean, std, low, high, stack.shape[0])
