"""Min/max downsampling for charts: every bucket keeps its first, smallest, largest and last point.

Random or stride sampling drops loss spikes (TensorBoard's reservoir, W&B's 500-point history); keeping each
bucket's extremes draws the same envelope as the full series with a few thousand points (the M4 idea:
Jugel et al., "M4: A Visualization-Oriented Time Series Data Aggregation", VLDB 2014).
"""

from __future__ import annotations

from typing import Any


def minmax_indices(values: Any, buckets: int) -> Any:
    """Indices (sorted, unique) of the first, min, max and last point of each of ``buckets`` equal-count buckets,
    so at most 4 x ``buckets`` points (5 x where a bucket holds a NaN).

    NaN values are ignored when choosing min and max; a bucket's first NaN is kept too, so a loss that turns NaN
    for one step still shows. Returns every index when the series is short enough.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if buckets <= 0 or n <= 4 * buckets:
        return np.arange(n)
    return block_picks(values, -(-n // buckets))  # ceil: every bucket but the last is full


def block_picks(values: Any, size: int) -> Any:
    """Indices (sorted, unique) of the first, min, max, last and first NaN point of each block of ``size``
    points from the start (the last block may be shorter): what ``minmax_indices`` keeps per bucket, and what
    the store's levels keep per block of a chunk (``expertrack.store.levels``)."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n == 0:
        return np.arange(0)
    full = (n // size) * size
    parts = _bucket_picks(values[:full].reshape(-1, size), 0) if full else []
    if full < n:  # the short last bucket, picked the same way
        parts += _bucket_picks(values[full:].reshape(1, -1), full)
    return sorted_unique(np.concatenate(parts))


def sorted_unique(indices: Any) -> Any:
    """``np.unique`` of an integer array, without its first call's set-up (~10 ms with NumPy 2, paid by a cold
    chart request)."""
    import numpy as np

    ordered = np.sort(indices)
    if ordered.size < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _bucket_picks(body: Any, offset: int) -> list[Any]:
    """First, min, max, last (and first NaN) index of each row of ``body`` [buckets, size], as series indices."""
    import numpy as np

    size = body.shape[1]
    starts = np.arange(offset, offset + body.size, size)
    nans = np.isnan(body)
    if not nans.any():
        return [starts, starts + body.argmin(axis=1), starts + body.argmax(axis=1), starts + size - 1]
    # argmin/argmax would pick the NaN; only here pay for the masked copies
    mins = np.where(nans, np.inf, body).argmin(axis=1)
    maxs = np.where(nans, -np.inf, body).argmax(axis=1)
    with_nan = nans.any(axis=1)
    first_nan = (starts + nans.argmax(axis=1))[with_nan]
    return [starts, starts + mins, starts + maxs, starts + size - 1, first_nan]
