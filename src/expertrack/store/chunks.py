"""Scalar series as binary chunks: the write-side buffer and the read-side decoding.

Why chunks and not a row per point: reading 1,000,000 points as rows costs about 0.6 s here, as chunks of
thousands of points about 17 ms (DESIGN.md, "Numbers"). A series is written as an open tail chunk that is
rewritten on each flush (so a crash loses at most one flush interval) until it holds ``CHUNK_POINTS`` points or
has been rewritten ``MAX_REWRITES`` times; then it is sealed and the next chunk starts. Rewrites stay bounded:
a slow series (one point a second) seals small chunks, a fast one seals full ones.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field
from typing import Any

CHUNK_POINTS = 16_384
MAX_REWRITES = 64
_LITTLE = sys.byteorder == "little"


def _le_bytes(values: array) -> bytes:
    if _LITTLE:
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


@dataclass
class SeriesBuffer:
    """The unsealed tail of one scalar series, kept by the writer between flushes.

    ``rows()`` plans the chunk writes for the current state without changing it; ``committed()`` advances the
    state once the transaction holding those rows has committed. A failed transaction therefore loses nothing:
    the next flush plans the same rows again, with any newer points.
    """

    key_id: int
    seq: int = 0
    steps: array = field(default_factory=lambda: array("q"))
    times: array = field(default_factory=lambda: array("d"))
    values: array = field(default_factory=lambda: array("d"))
    rewrites: int = 0
    dirty: bool = False

    def append(self, step: int, time: float, value: float) -> None:
        """Add a point; a second value at the step of the last point in the buffer replaces it (the row was
        published, then the same key was logged again at that step: the later value wins, as in wandb)."""
        if self.steps and self.steps[-1] == step:
            self.times[-1] = time
            self.values[-1] = value
        else:
            self.steps.append(step)
            self.times.append(time)
            self.values.append(value)
        self.dirty = True

    def rows(self) -> list[tuple[Any, ...]]:
        """Parameters for ``INSERT_CHUNK``: full chunks first, then the tail."""
        out = []
        seq, n = self.seq, len(self.steps)
        for start in range(0, n, CHUNK_POINTS):
            stop = min(start + CHUNK_POINTS, n)
            steps = self.steps[start:stop]
            out.append(
                (
                    self.key_id,
                    seq,
                    stop - start,
                    steps[0],
                    steps[-1],
                    _le_bytes(steps),
                    _le_bytes(self.times[start:stop]),
                    _le_bytes(self.values[start:stop]),
                )
            )
            seq += 1
        return out

    def committed(self) -> None:
        """Advance past what ``rows()`` planned: drop sealed chunks, seal a tail rewritten too often."""
        full = (len(self.steps) // CHUNK_POINTS) * CHUNK_POINTS
        if full:
            del self.steps[:full], self.times[:full], self.values[:full]
            self.seq += full // CHUNK_POINTS
            self.rewrites = 0
        if self.steps:
            self.rewrites += 1
            if self.rewrites >= MAX_REWRITES:  # seal a small chunk rather than rewrite it forever
                del self.steps[:], self.times[:], self.values[:]
                self.seq += 1
                self.rewrites = 0
        self.dirty = False


INSERT_CHUNK = (
    "INSERT OR REPLACE INTO scalar_chunks (key_id, seq, n, step_min, step_max, steps, times, vals)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def last_per_step(steps: Any, times: Any, values: Any) -> tuple[Any, Any, Any]:
    """Keep one point per step, the last: a step can repeat across a sealed chunk's end (see ``append``)."""
    if steps.size < 2:
        return steps, times, values
    last = steps[1:] != steps[:-1]
    if last.all():
        return steps, times, values
    import numpy as np

    keep = np.append(last, True)
    return steps[keep], times[keep], values[keep]


def decode(rows: list[tuple[bytes, bytes, bytes]]) -> tuple[Any, Any, Any]:
    """Concatenate chunk rows (steps, times, vals blobs) into three NumPy arrays, copying each blob once."""
    import numpy as np

    total = sum(len(r[0]) for r in rows) // 8
    steps = np.empty(total, dtype="<i8")
    times = np.empty(total, dtype="<f8")
    vals = np.empty(total, dtype="<f8")
    at = 0
    for step_blob, time_blob, val_blob in rows:
        n = len(step_blob) // 8
        steps[at : at + n] = np.frombuffer(step_blob, dtype="<i8")
        times[at : at + n] = np.frombuffer(time_blob, dtype="<f8")
        vals[at : at + n] = np.frombuffer(val_blob, dtype="<f8")
        at += n
    return steps.astype(np.int64, copy=False), times.astype(np.float64, copy=False), vals.astype(np.float64, copy=False)
