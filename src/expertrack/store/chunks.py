"""Scalar series on disk: sealed chunks per key, recent points in per-flush pieces; write-side buffers and decoding.

Why chunks and not a row per point: reading 1,000,000 points as rows costs about 0.6 s here, as chunks of
thousands of points about 17 ms (DESIGN.md, "Numbers").

Why pieces (issue 12, item 11). SQLite writes whole 4 KiB pages to its WAL at each commit, and ``scalar_chunks`` is
ordered by key: a flush that adds a few points to each of 100 keys dirties about 100 pages, so rewriting each key's
open tail chunk at every flush wrote about 32 bytes to disk per byte of data. Instead, each flush of a writer
appends one *piece* row to ``scalar_pieces`` holding the new points of every key it touched (the rows of one run
lie together, so a flush dirties a few pages), and the writer *seals* its pieces now and then: one transaction
inserts each key's points since the last seal as chunks (of at most ``CHUNK_POINTS``) and deletes the pieces. Each
point is thus written about twice (piece, then chunk), a crash still loses at most one flush interval, and readers
concatenate a key's chunks and its slice of every piece.

Several writers may log the same run at once (issue 12, item 4): chunk and piece numbers are taken inside each
write transaction, which holds SQLite's write lock, and rows are inserted, never replaced; a writer deletes only
the pieces it wrote itself. Readers therefore sort a key's points by step when writers' rows interleave.
"""

from __future__ import annotations

import json
import sys
from array import array
from dataclasses import dataclass, field
from typing import Any

CHUNK_POINTS = 16_384
SEAL_FLUSHES = 64  # a writer seals its pieces after this many flushes with new points ...
SEAL_POINTS = 65_536  # ... or once they hold this many points (what readers decode from pieces stays small)
_LITTLE = sys.byteorder == "little"


def _le_bytes(values: array) -> bytes:
    if _LITTLE:
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


@dataclass
class SeriesBuffer:
    """The points of one scalar series since its writer last sealed: some already in pieces, the rest fresh.

    ``key_id`` is -1 until the write transaction that first stores the key ``name`` resolves it.
    """

    name: str
    key_id: int = -1
    steps: array = field(default_factory=lambda: array("q"))
    times: array = field(default_factory=lambda: array("d"))
    values: array = field(default_factory=lambda: array("d"))
    encoded: int = 0  # points before this index are in a piece (written or waiting for its transaction)

    def append(self, step: int, time: float, value: float) -> None:
        """Add a point; a second value at the step of the last fresh point replaces it (the row was published,
        then the same key was logged again at that step: the later value wins, as in wandb). A point already in
        a piece is not changed: the new one follows it at the same step, and readers keep the later."""
        if len(self.steps) > self.encoded and self.steps[-1] == step:
            self.times[-1] = time
            self.values[-1] = value
        else:
            self.steps.append(step)
            self.times.append(time)
            self.values.append(value)

    @property
    def fresh(self) -> int:
        """How many points are in no piece yet."""
        return len(self.steps) - self.encoded

    def take_fresh(self) -> tuple[bytes, bytes, bytes, int, int]:
        """The fresh points as (steps, times, values) blobs, their step maximum and count; they are no longer fresh."""
        start = self.encoded
        steps = self.steps[start:]
        self.encoded = len(self.steps)
        return _le_bytes(steps), _le_bytes(self.times[start:]), _le_bytes(self.values[start:]), max(steps), len(steps)

    def chunk_rows(self) -> list[tuple[int, int, int, bytes, bytes, bytes]]:
        """Every unsealed point as chunk rows (n, step_min, step_max, steps, times, vals), one point per step."""
        import numpy as np

        steps, times, values = last_per_step(
            np.frombuffer(self.steps, dtype=np.int64),
            np.frombuffer(self.times, dtype=np.float64),
            np.frombuffer(self.values, dtype=np.float64),
        )
        rows = []
        for start in range(0, len(steps), CHUNK_POINTS):
            part = slice(start, start + CHUNK_POINTS)
            s = steps[part].astype("<i8")
            rows.append(
                (
                    len(s),
                    int(s[0]),
                    int(s.max()),
                    s.tobytes(),
                    times[part].astype("<f8").tobytes(),
                    values[part].astype("<f8").tobytes(),
                )
            )
        return rows

    def sealed(self) -> None:
        """Forget the points just written as chunks."""
        del self.steps[:], self.times[:], self.values[:]
        self.encoded = 0


@dataclass
class Piece:
    """One flush's new points of several series, encoded once; its key ids are filled in when it is written."""

    series: list[SeriesBuffer]
    counts: list[int]
    steps: bytes
    times: bytes
    values: bytes
    step_max: int

    @classmethod
    def from_fresh(cls, series: list[SeriesBuffer]) -> Piece:
        """Take the fresh points of ``series`` (those with any) into one piece."""
        parts = [(s, s.take_fresh()) for s in series if s.fresh]
        return cls(
            series=[s for s, _ in parts],
            counts=[p[4] for _, p in parts],
            steps=b"".join(p[0] for _, p in parts),
            times=b"".join(p[1] for _, p in parts),
            values=b"".join(p[2] for _, p in parts),
            step_max=max(p[3] for _, p in parts),
        )

    def row(self, run_id: str) -> tuple[Any, ...]:
        """Parameters for ``INSERT_PIECE`` (key ids must be resolved)."""
        header = json.dumps([[s.key_id, n] for s, n in zip(self.series, self.counts)], separators=(",", ":"))
        return (run_id, run_id, sum(self.counts), self.step_max, header, self.steps, self.times, self.values)


# Parameters: the key id twice (plain ``?`` placeholders, which every engine takes), then a ``chunk_rows`` row.
INSERT_CHUNK = (
    "INSERT INTO scalar_chunks (key_id, seq, n, step_min, step_max, steps, times, vals)"
    " VALUES (?, (SELECT COALESCE(MAX(seq) + 1, 0) FROM scalar_chunks WHERE key_id = ?), ?, ?, ?, ?, ?, ?)"
)
INSERT_PIECE = (
    "INSERT INTO scalar_pieces (run_id, seq, n, step_max, keys, steps, times, vals)"
    " VALUES (?, (SELECT COALESCE(MAX(seq) + 1, 0) FROM scalar_pieces WHERE run_id = ?), ?, ?, ?, ?, ?, ?)"
    " RETURNING seq"
)


def piece_counts(rows: list[tuple[str]]) -> dict[int, int]:
    """Points per key id in pieces, from their ``keys`` headers."""
    counts: dict[int, int] = {}
    for (header,) in rows:
        for key_id, n in json.loads(header):
            counts[key_id] = counts.get(key_id, 0) + n
    return counts


def piece_entries(rows: list[tuple[str, bytes, bytes]]) -> list[tuple[int, bytes, bytes]]:
    """Every (key_id, steps, vals) slice out of piece rows (keys, steps, vals), in row order."""
    out = []
    for header, steps, vals in rows:
        at = 0
        for key_id, n in json.loads(header):
            part = slice(at * 8, (at + n) * 8)
            out.append((key_id, steps[part], vals[part]))
            at += n
    return out


def piece_slices(rows: list[tuple[str, bytes, bytes, bytes]], key_id: int) -> list[tuple[bytes, bytes, bytes]]:
    """The (steps, times, vals) blobs of one key out of piece rows (keys, steps, times, vals), in row order."""
    out = []
    for header, steps, times, vals in rows:
        at = 0
        for kid, n in json.loads(header):
            if kid == key_id:
                part = slice(at * 8, (at + n) * 8)
                out.append((steps[part], times[part], vals[part]))
                break
            at += n
    return out


def in_step_order(steps: Any, times: Any, values: Any) -> tuple[Any, Any, Any]:
    """Sort by step (stably, so the later of two points at one step stays later) when rows interleaved."""
    if steps.size < 2 or bool((steps[1:] >= steps[:-1]).all()):
        return steps, times, values
    import numpy as np

    order = np.argsort(steps, kind="stable")
    return steps[order], times[order], values[order]


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


def decode_pairs(rows: list[tuple[bytes, bytes]]) -> tuple[Any, Any]:
    """Concatenate (steps, vals) blob pairs into two NumPy arrays: ``decode`` without the times."""
    import numpy as np

    steps = np.frombuffer(b"".join(r[0] for r in rows), dtype="<i8").astype(np.int64)
    values = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f8").astype(np.float64)
    return steps, values
