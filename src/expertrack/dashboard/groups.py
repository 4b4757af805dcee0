"""Grouped charts: the runs of each group (a config value, or the run's group) as a mean line with a band.

The aggregation is the report figures' own (``expertrack.seeds``): runs at the same steps are stacked, others
interpolated onto their common range, and the band is either ±1 standard deviation (ddof=1) or the runs'
min-max. Each group's three lines are then reduced with ``minmax_indices`` on the mean and on both band edges,
so a spike in any of them survives the downsampling.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from starlette.exceptions import HTTPException

from expertrack.dashboard.cache import SeriesCache
from expertrack.dashboard.encode import flatten, pack
from expertrack.seeds import spread
from expertrack.store.downsample import minmax_indices

BANDS = ("std", "minmax")
NO_VALUE = "(none)"


def check_by(by: str) -> str:
    """``group`` or ``config.KEY`` (a flattened config key, as the runs table names it); 400 otherwise."""
    if by == "group" or (by.startswith("config.") and len(by) > len("config.")):
        return by
    raise HTTPException(400, f"by: 'group' or 'config.KEY' (e.g. config.lr), not {by!r}")


def group_value(run: Any, by: str) -> Any:
    """What ``run`` holds for ``by``: its group, or the value of one flattened config key (None when absent)."""
    if by == "group":
        return run.group
    return flatten(dict(run.config or {})).get(by[len("config.") :])


def _label(by: str, value: Any) -> str:
    shown = NO_VALUE if value is None else value if isinstance(value, str) else json.dumps(value)
    return str(shown) if by == "group" else f"{by[len('config.') :]}={shown}"


def _order(value: Any) -> tuple[int, Any]:
    """Numbers in numeric order, then strings, then anything else, then runs without a value."""
    if value is None:
        return (3, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value))
    return (1, value) if isinstance(value, str) else (2, json.dumps(value, sort_keys=True, default=str))


def group_runs(runs: Sequence[Any], by: str) -> list[tuple[Any, list[Any]]]:
    """``[(value, runs)]`` in a stable order: runs sharing one value of ``by`` form one group."""
    groups: dict[str, tuple[Any, list[Any]]] = {}
    for run in runs:
        value = group_value(run, by)
        groups.setdefault(json.dumps(value, sort_keys=True, default=str), (value, []))[1].append(run)
    return sorted(groups.values(), key=lambda item: _order(item[0]))


def _finite_points(run: Any, key: str, cache: SeriesCache | None) -> tuple[np.ndarray, np.ndarray]:
    """One run's (steps, values) of ``key`` without non-finite values (as the figures read them)."""
    steps, _times, values = cache.scalars(run, key, times=False) if cache is not None else run.scalars(key, times=False)
    keep = np.isfinite(values)
    if keep.all():
        return steps, values
    return steps[keep], values[keep]


def grouped_series(
    runs: Sequence[Any], key: str, by: str, band: str, buckets: int, cache: SeriesCache | None = None
) -> dict[str, Any]:
    """Each group's mean and band of ``key`` over steps, downsampled to about ``buckets`` buckets.

    Runs that never logged ``key`` are left out; a group none of whose runs logged it is left out too.
    """
    if band not in BANDS:
        raise HTTPException(400, f"band: 'std' or 'minmax', not {band!r}")
    out = []
    for value, members in group_runs(runs, by):
        curves, ids = [], []
        for run in members:
            steps, values = _finite_points(run, key, cache)  # empty when the run never logged ``key``
            if len(steps):
                curves.append((steps, values))
                ids.append(run.id)
        if not curves:
            continue
        curve = spread(curves)
        low, high = curve.band(band)
        matched = len(curve.x)
        keep = _keep(curve.mean, low, high, buckets)
        out.append(
            {
                "label": _label(by, value),
                "value": value,
                "runs": ids,
                "n": curve.n,
                "matched": matched,
                "count": len(keep) if keep is not None else matched,
                "steps": pack(curve.x if keep is None else curve.x[keep]),
                "mean": pack(curve.mean if keep is None else curve.mean[keep]),
                "low": pack(low if keep is None else low[keep]),
                "high": pack(high if keep is None else high[keep]),
            }
        )
    return {"key": key, "by": by, "band": band, "buckets": buckets, "groups": out}


def _keep(mean: np.ndarray, low: np.ndarray, high: np.ndarray, buckets: int) -> np.ndarray | None:
    """Indices keeping every bucket's extremes of the mean and of both band edges; None keeps everything."""
    if len(mean) <= 4 * buckets:
        return None
    chosen = np.zeros(len(mean), dtype=bool)  # a mask, not np.unique: no sort of the picked indices
    for line in (mean, low, high):
        chosen[minmax_indices(line, buckets)] = True
    return np.flatnonzero(chosen)
