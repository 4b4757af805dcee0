"""Min/max downsampling for charts: every bucket keeps its first, smallest, largest and last point.

Random or stride sampling drops loss spikes (TensorBoard's reservoir, W&B's 500-point history); keeping each
bucket's extremes draws the same envelope as the full series with a few thousand points (the M4 idea:
Jugel et al., "M4: A Visualization-Oriented Time Series Data Aggregation", VLDB 2014).
"""

from __future__ import annotations

from typing import Any


def minmax_indices(values: Any, buckets: int) -> Any:
    """Indices (sorted, unique) of the first, min, max and last point of each of ``buckets`` equal-count buckets.

    NaN values are ignored when choosing min and max. Returns every index when the series is short enough.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if buckets <= 0 or n <= 4 * buckets:
        return np.arange(n)
    size = -(-n // buckets)  # ceil: every bucket but the last is full
    full = (n // size) * size
    body = values[:full].reshape(-1, size)
    nans = np.isnan(body)
    if nans.any():  # argmin/argmax would pick the NaN; only then pay for the masked copies
        mins = np.where(nans, np.inf, body).argmin(axis=1)
        maxs = np.where(nans, -np.inf, body).argmax(axis=1)
    else:
        mins = body.argmin(axis=1)
        maxs = body.argmax(axis=1)
    starts = np.arange(0, full, size)
    parts = [starts, starts + mins, starts + maxs, starts + size - 1]
    if full < n:  # the short last bucket: keep all of it
        parts.append(np.arange(full, n))
    picked = np.unique(np.concatenate(parts))
    return picked
