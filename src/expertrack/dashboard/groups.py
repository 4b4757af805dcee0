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

from expertrack.api import scalars_of_runs
from expertrack.dashboard.cache import SeriesCache
from expertrack.dashboard.encode import flatten, pack
from expertrack.seeds import spread
from expertrack.store.downsample import minmax_indices

BANDS = ("std", "minmax")
AGGREGATE_BLOCK = 8192  # steps per block: 4 runs x 8192 floats = 256 KB, within a core's L2 cache
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


def _finite_points(
    runs: Sequence[Any], key: str, cache: SeriesCache | None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each run's (steps, values) of ``key`` without non-finite values (as the figures read them), by run id: read
    for all the runs at once (one store query, not one per run)."""
    if cache is not None:
        read = dict(zip([run.id for run in runs], cache.scalars_many(runs, key, times=False), strict=True))
    else:
        read = scalars_of_runs(runs, key, times=False)
    out = {}
    for run_id, (steps, _times, values) in read.items():
        keep = np.isfinite(values)
        out[run_id] = (steps, values) if keep.all() else (steps[keep], values[keep])
    return out


def grouped_series(
    runs: Sequence[Any], key: str, by: str, band: str, buckets: int, cache: SeriesCache | None = None
) -> dict[str, Any]:
    """Each group's mean and band of ``key`` over steps, downsampled to about ``buckets`` buckets.

    Runs that never logged ``key`` are left out; a group none of whose runs logged it is left out too.
    """
    if band not in BANDS:
        raise HTTPException(400, f"band: 'std' or 'minmax', not {band!r}")
    out = []
    points = _finite_points(runs, key, cache)
    for value, members in group_runs(runs, by):
        curves, ids = [], []
        for run in members:
            steps, values = points[run.id]  # empty when the run never logged ``key``
            if len(steps):
                curves.append((steps, values))
                ids.append(run.id)
        if not curves:
            continue
        x, mean, low, high = aggregate(curves, band)
        matched = len(x)
        keep = _keep(mean, low, high, buckets)
        out.append(
            {
                "label": _label(by, value),
                "value": value,
                "runs": ids,
                "n": len(curves),
                "matched": matched,
                "count": len(keep) if keep is not None else matched,
                "steps": pack(x if keep is None else x[keep]),
                "mean": pack(mean if keep is None else mean[keep]),
                "low": pack(low if keep is None else low[keep]),
                "high": pack(high if keep is None else high[keep]),
            }
        )
    return {"key": key, "by": by, "band": band, "buckets": buckets, "groups": out}


def aggregate(curves: Sequence[tuple[np.ndarray, np.ndarray]], band: str) -> tuple[np.ndarray, ...]:
    """``(x, mean, low, high)`` of one group's finite curves: ``seeds.spread`` and its ``band``, the same numbers.

    Seeds logged at the same steps (the usual case) take a faster path with bit-identical results: the runs'
    values are stacked a block of ``AGGREGATE_BLOCK`` steps at a time, so the mean, the s.d. and the band edges
    are computed on a stack that stays in the CPU's cache, with no full-length temporaries (spread's stack and
    its s.d.'s deviations are 4 x 100,000 floats per group, fresh memory on a server's first grouped request),
    and only the band asked for is computed. NumPy reduces over runs (axis 0) one run after another for every
    step alike, so a block's columns get exactly the operations the whole stack's would.
    """
    first = curves[0][0]
    if len(curves) == 1 or not all(len(x) == len(first) and np.array_equal(x, first) for x, _ in curves[1:]):
        curve = spread(curves)
        return (curve.x, curve.mean, *curve.band(band))
    size = len(first)
    mean, low, high = np.empty(size), np.empty(size), np.empty(size)
    stack = np.empty((len(curves), min(size, AGGREGATE_BLOCK)))
    for start in range(0, size, AGGREGATE_BLOCK):
        end = min(start + AGGREGATE_BLOCK, size)
        block = stack[:, : end - start]
        for row, (_, values) in enumerate(curves):
            block[row] = values[start:end]
        block.mean(axis=0, out=mean[start:end])
        if band == "std":
            sd = block.std(axis=0, ddof=1)
            np.subtract(mean[start:end], sd, out=low[start:end])
            np.add(mean[start:end], sd, out=high[start:end])
        else:
            block.min(axis=0, out=low[start:end])
            block.max(axis=0, out=high[start:end])
    return first.astype(float), mean, low, high


def _keep(mean: np.ndarray, low: np.ndarray, high: np.ndarray, buckets: int) -> np.ndarray | None:
    """Indices keeping every bucket's extremes of the mean and of both band edges; None keeps everything."""
    if len(mean) <= 4 * buckets:
        return None
    chosen = np.zeros(len(mean), dtype=bool)  # a mask, not np.unique: no sort of the picked indices
    for line in (mean, low, high):
        chosen[minmax_indices(line, buckets)] = True
    return np.flatnonzero(chosen)
