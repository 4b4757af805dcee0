"""Precomputed min/max levels of sealed chunks, so a chart of a long series reads a few percent of its points.

A chart of 1,000,000 points asks for ~600 buckets: it draws each bucket's first, min, max and last point (and its
first NaN), about 2,400 points. Reading and decoding every point to find them costs 30-90 ms here; most of it is
fetching 16-24 MB of chunk blobs. So when a writer seals a chunk it also stores the chunk's *level*: for each block
of ``LEVEL_POINTS`` points from the chunk's start, the same five picks (first, min, max, last, first NaN), with
their in-chunk index, step and value (schema migration 5, table ``scalar_levels``).

A chart over K blocks and N buckets then groups ``ceil(K / N)`` whole blocks per bucket and picks from the blocks'
picks. This is exact, not an estimate: a bucket made of whole blocks has its first point in its first block's
picks, its last in its last block's, its min (the first point holding it, NaN ignored) among its blocks' mins,
and likewise its max and first NaN. So every spike a bucket holds is kept, as ``downsample.minmax_indices`` keeps
it from raw points; only the bucket edges differ (whole blocks instead of equal counts).

What is read raw instead, each part cut into blocks the same way: the unsealed points of the run's pieces, a
chunk with no level (written before migration 5 by a writer that was already running), and a chunk whose last
step is repeated by the next one (the later value replaced it: readers keep the later, so the chunk's picks could
hold a replaced value). When several writers' chunks of one key interleave in steps, ``read_envelope`` answers
None and the caller reads every point (``Store.read_scalars`` sorts them).
"""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import dataclass
from typing import Any

from expertrack.store import chunks
from expertrack.store.downsample import block_picks, sorted_unique

LEVEL_POINTS = 64
INSERT_LEVEL = (
    "INSERT OR REPLACE INTO scalar_levels (key_id, seq, n, step_min, step_max, picks, steps, vals)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQL_BATCH = 500  # seqs per "IN (...)" query, well under SQLite's limit of bound parameters


def level_row(step_blob: bytes, value_blob: bytes) -> tuple[bytes, bytes, bytes]:
    """The level of one chunk, from its steps and values blobs: (picks int32, steps int64, vals float64) blobs."""
    import numpy as np

    values = np.frombuffer(value_blob, dtype="<f8")
    picks = block_picks(values, LEVEL_POINTS)
    steps = np.frombuffer(step_blob, dtype="<i8")
    return picks.astype("<i4").tobytes(), steps[picks].tobytes(), values[picks].tobytes()


def backfill(conn: sqlite3.Connection) -> None:
    """Store the level of every chunk that has none (migration 5 on a store made before it), in the caller's
    transaction, reading one chunk at a time."""
    missing = conn.execute(
        "SELECT c.key_id, c.seq FROM scalar_chunks c WHERE NOT EXISTS"
        " (SELECT 1 FROM scalar_levels l WHERE l.key_id = c.key_id AND l.seq = c.seq)"
    ).fetchall()
    for key_id, seq in missing:
        n, low, high, steps, vals = conn.execute(
            "SELECT n, step_min, step_max, steps, vals FROM scalar_chunks WHERE key_id = ? AND seq = ?",
            (key_id, seq),
        ).fetchone()
        conn.execute(INSERT_LEVEL, (key_id, seq, n, low, high, *level_row(steps, vals)))


@dataclass
class Envelope:
    """The picks of every block of one series, in step order: ``blocks`` numbers each pick's block (0, 1, ...)."""

    steps: Any  # int64
    values: Any  # float64
    blocks: Any  # int64, non-decreasing
    points: int  # how many points the series holds
    block_count: int

    def chart(self, buckets: int) -> Any:
        """Indices of the picks a chart of ``buckets`` buckets draws (see the module docstring)."""
        import numpy as np

        n = len(self.values)
        if n == 0:
            return np.arange(0)
        per = -(-self.block_count // max(buckets, 1))
        bucket = self.blocks // per
        starts = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
        ends = np.append(starts[1:], n) - 1
        counts = ends - starts + 1
        nans = np.isnan(self.values)
        low = np.where(nans, np.inf, self.values)
        high = np.where(nans, -np.inf, self.values)
        mins = _first_where(low == np.repeat(np.minimum.reduceat(low, starts), counts), starts)
        maxs = _first_where(high == np.repeat(np.maximum.reduceat(high, starts), counts), starts)
        parts = [starts, mins, maxs, ends]
        if nans.any():
            at = np.flatnonzero(nans)
            first = np.searchsorted(at, starts)
            inside = first < len(at)
            first_nan = at[first[inside]]
            parts.append(first_nan[first_nan <= ends[inside]])
        return sorted_unique(np.concatenate(parts))


def _first_where(mask: Any, starts: Any) -> Any:
    """Per segment (beginning at ``starts``), the first index where ``mask`` holds (it holds in each)."""
    import numpy as np

    at = np.flatnonzero(mask)
    return at[np.searchsorted(at, starts)]


def _level_of(steps: Any, values: Any) -> tuple[bytes, bytes, bytes]:
    """A level made up from points in memory: (picks, steps, vals) blobs as ``level_row`` stores them."""
    picks = block_picks(values, LEVEL_POINTS)
    return picks.astype("<i4").tobytes(), steps[picks].astype("<i8").tobytes(), values[picks].astype("<f8").tobytes()


def read_envelope(conn: Any, run_id: str, key: str, rank: int = 0) -> Envelope | None:
    """The block picks of one scalar series (``rank``'s: schema 6), from levels where the chunks have them; None
    when the run has no such key or its writers' chunks interleave in steps (then read every point)."""
    return read_envelopes(conn, [run_id], key, rank)[run_id]


# the key (with its highest chunk seq), its chunks' levels and its run's pieces, of many runs, in one query: on a
# database server each query is a network round trip, and a chart of one series paid three, of 50 runs 150
_ENVELOPE_PARTS = (
    "SELECT k.run_id, 0, (SELECT MAX(c.seq) FROM scalar_chunks c WHERE c.key_id = k.id), k.id,"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM keys k WHERE k.run_id IN ({runs}) AND k.name = ? AND k.rank = ?"
    " UNION ALL SELECT k.run_id, 1, l.seq, k.id, l.n, l.step_min, l.step_max, l.picks, l.steps, l.vals, NULL"
    " FROM keys k JOIN scalar_levels l ON l.key_id = k.id WHERE k.run_id IN ({runs}) AND k.name = ? AND k.rank = ?"
    " UNION ALL SELECT p.run_id, 2, p.seq, k.id, NULL, NULL, NULL, NULL, p.steps, p.vals, p.keys"
    " FROM scalar_pieces p JOIN keys k ON k.run_id = p.run_id AND k.name = ? AND k.rank = ?"
    " WHERE p.run_id IN ({runs})"
)
_RUNS_PER_QUERY = 300  # run ids bound three times per query: well under SQLite's limit of bound parameters


def read_envelopes(conn: Any, run_ids: list[str], key: str, rank: int = 0) -> dict[str, Envelope | None]:
    """``read_envelope`` of each run of ``run_ids`` (by run id, each the same), in one query per
    ``_RUNS_PER_QUERY`` runs; only chunks without a level, or whose last point a later chunk replaced, cost more
    queries (rare: see the module docstring)."""
    wanted = list(dict.fromkeys(run_ids))
    found: dict[str, list[Any]] = {run_id: [] for run_id in wanted}
    for at in range(0, len(wanted), _RUNS_PER_QUERY):
        batch = wanted[at : at + _RUNS_PER_QUERY]
        runs = ",".join("?" * len(batch))
        rows = conn.execute(
            _ENVELOPE_PARTS.format(runs=runs), (*batch, key, rank, *batch, key, rank, key, rank, *batch)
        ).fetchall()
        for row in rows:
            found[row[0]].append(row[1:])
    return {run_id: _envelope(conn, parts) for run_id, parts in found.items()}


def _envelope(conn: Any, parts: list[Any]) -> Envelope | None:
    """One series' envelope from its rows of ``_ENVELOPE_PARTS`` (part, seq, key id, level columns, keys)."""
    import numpy as np

    head = [row for row in parts if row[0] == 0]
    if not head:
        return None
    top, key_id = head[0][1], head[0][2]
    metas = sorted((tuple(row[1:2]) + tuple(row[3:9]) for row in parts if row[0] == 1), key=lambda m: m[0])
    metas = _chunk_levels(conn, key_id, top, metas)
    pieces = sorted((row for row in parts if row[0] == 2), key=lambda row: row[1])
    tail_steps, tail_values = _tail([(row[9], row[7], row[8]) for row in pieces], key_id)
    bounds = [(m[2], m[3]) for m in metas]
    if tail_steps.size:
        bounds.append((int(tail_steps[0]), int(tail_steps[-1])))
    if any(nxt[0] < prev[1] for prev, nxt in itertools.pairwise(bounds)):
        return None
    replaced = {i for i in range(len(bounds) - 1) if bounds[i + 1][0] == bounds[i][1]}
    raw = _raw_chunks(conn, key_id, [m[0] for i, m in enumerate(metas) if i in replaced and m[4] is not None])
    # every part as (picks, steps, vals) blobs and its first block, decoded together below: one NumPy call per
    # array, not per chunk (a first request paid ~10 ms for 70 small conversions)
    levels: list[tuple[bytes, bytes, bytes]] = []
    firsts: list[int] = []
    block = points = 0
    for i, (seq, n, _lo, _hi, picks, level_steps, level_values) in enumerate(metas):
        if picks is None or seq in raw:
            steps, values = raw.get(seq, (level_steps, level_values))
            if i in replaced:
                steps, values = steps[:-1], values[:-1]
            n = len(steps)
            levels.append(_level_of(steps, values))
        else:
            levels.append((picks, level_steps, level_values))
        firsts.append(block)
        block, points = block + -(-n // LEVEL_POINTS), points + n
    if tail_steps.size:
        levels.append(_level_of(tail_steps, tail_values))
        firsts.append(block)
        block, points = block + -(-tail_steps.size // LEVEL_POINTS), points + tail_steps.size
    local = np.frombuffer(b"".join(part[0] for part in levels), dtype="<i4")
    counts = [len(part[0]) // 4 for part in levels]
    return Envelope(
        np.frombuffer(b"".join(part[1] for part in levels), dtype="<i8").astype(np.int64),
        np.frombuffer(b"".join(part[2] for part in levels), dtype="<f8").astype(np.float64),
        np.repeat(np.asarray(firsts, dtype=np.int64), counts) + local // LEVEL_POINTS,
        points,
        block,
    )


def _chunk_levels(conn: Any, key_id: int, top: int | None, metas: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """(seq, n, step_min, step_max, picks, steps, vals) of every chunk of one key, in seq order; a chunk with no
    level has picks None and its raw steps and values (as arrays) instead.

    Chunk seqs are numbered 0, 1, ... per key, so one index probe for the highest (``top``, None without chunks)
    says whether a level is missing, without visiting ``scalar_chunks``'s rows (each a few pages: 3-5 ms for a
    million points)."""
    import numpy as np

    if top is None:
        return []
    if len(metas) == top + 1:  # a level per chunk (seqs of levels are those of existing chunks)
        return metas
    present = {m[0] for m in metas}
    missing = [seq for seq in range(top + 1) if seq not in present]
    for at in range(0, len(missing), _SQL_BATCH):
        batch = missing[at : at + _SQL_BATCH]
        rows = conn.execute(
            "SELECT seq, n, step_min, step_max, steps, vals FROM scalar_chunks"
            f" WHERE key_id = ? AND seq IN ({','.join('?' * len(batch))})",
            (key_id, *batch),
        )
        for seq, n, low, high, steps, vals in rows:
            metas.append((seq, n, low, high, None, np.frombuffer(steps, "<i8"), np.frombuffer(vals, "<f8")))
    return sorted(metas, key=lambda m: m[0])


def _tail(rows: list[tuple[str, bytes, bytes]], key_id: int) -> tuple[Any, Any]:
    """The key's points in the run's pieces (rows of keys, steps, vals in seq order: not sealed yet), a point
    per step, in step order."""
    import numpy as np

    mine = [(s, v) for kid, s, v in chunks.piece_entries(rows) if kid == key_id]
    steps = np.frombuffer(b"".join(s for s, _ in mine), dtype="<i8").astype(np.int64)
    values = np.frombuffer(b"".join(v for _, v in mine), dtype="<f8").astype(np.float64)
    steps, _, values = chunks.last_per_step(*chunks.in_step_order(steps, values, values))
    return steps, values


def _raw_chunks(conn: Any, key_id: int, seqs: list[int]) -> dict[int, tuple[Any, Any]]:
    """(steps, values) of the chunks ``seqs`` of one key, read whole."""
    import numpy as np

    out = {}
    for at in range(0, len(seqs), _SQL_BATCH):
        batch = seqs[at : at + _SQL_BATCH]
        rows = conn.execute(
            f"SELECT seq, steps, vals FROM scalar_chunks WHERE key_id = ? AND seq IN ({','.join('?' * len(batch))})",
            (key_id, *batch),
        )
        for seq, steps, vals in rows:
            out[seq] = (np.frombuffer(steps, "<i8").astype(np.int64), np.frombuffer(vals, "<f8").astype(np.float64))
    return out
