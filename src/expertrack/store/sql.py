"""Reads shared by both engines: SQL valid on SQLite and PostgreSQL, over a DB-API connection with ``?`` placeholders.

``SqlStore`` holds every read (runs, keys, scalar chunks and pieces, levels, arrays, files, alerts) and the two
deletes readers need; an engine subclass connects, migrates its own schema, and gives ``self.conn`` (whose
``execute(sql, params)`` takes ``?`` placeholders and answers a cursor) and ``transaction()``.
``expertrack.store.sqlite.SQLiteStore`` is one, ``expertrack.store.postgres.PostgresStore`` the other.

Chunk decoding and downsampling are NumPy over the blobs the queries answer, the same for both engines.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import zlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from expertrack.errors import AmbiguousRunError, RunNotFoundError
from expertrack.store import chunks, levels
from expertrack.store.alerts import AlertRecord, read_alerts

# The schema features a store's tables have, in SQLite's migration numbers (store/sqlite_schema.py): 2 adds pieces and
# dropped_points, 4 alerts, 5 levels, 6 ranks. PostgreSQL's schema has all of them from its first migration.
LAYOUT_PIECES = 2
LAYOUT_ALERTS = 4
LAYOUT_LEVELS = 5

_RUN_COLUMNS = (
    "id, project, name, run_group, tags, notes, state, created_at, ended_at, heartbeat_at, exit_code, "
    "exit_signal, config, summary, metric_defs, environment, hostname, pid"
)


STALE_HEARTBEAT_S = 60.0


@dataclass
class RunRecord:
    """One row of the runs table, JSON columns decoded, with ``state`` corrected for dead processes."""

    id: str
    project: str
    name: str
    group: str | None
    tags: list[str]
    notes: str | None
    state: str
    created_at: float
    ended_at: float | None
    heartbeat_at: float | None
    exit_code: int | None
    exit_signal: int | None
    config: dict[str, Any]
    summary: dict[str, Any]
    metric_defs: list[dict[str, Any]]
    environment: dict[str, Any]
    hostname: str | None
    pid: int | None
    dropped_points: int = 0  # points the writer could not keep (its memory bound was reached); schema 2

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> RunRecord:
        values = list(row)  # columns in _RUN_COLUMNS order, which is the field order above
        for index in _JSON_COLUMN_INDEXES:
            values[index] = json.loads(values[index])
        record = cls(*values)
        if record.state == "running" and _process_gone(record):
            record.state = "crashed"
        return record


_JSON_COLUMN_INDEXES = (4, 12, 13, 14, 15)  # tags, config, summary, metric_defs, environment


def _process_gone(run: RunRecord) -> bool:
    """A run left 'running' whose writer process is dead (same host) or silent for a minute has crashed."""
    return _writer_gone(run.hostname, run.pid, run.heartbeat_at or run.created_at)


def _writer_gone(hostname: str | None, pid: int | None, last_heard: float) -> bool:
    if hostname == socket.gethostname() and pid:
        return not _pid_alive(pid)
    return time.time() - last_heard > STALE_HEARTBEAT_S


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: dead for our purposes
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class SqlStore:
    """The reads of an open store, whatever its engine. Subclasses set ``conn``, ``location`` (printable, never
    a password), ``layout`` (see ``LAYOUT_PIECES``) and ``readonly``, and provide ``transaction()`` and
    ``close()``."""

    conn: Any
    location: str
    layout: int = 0
    readonly: bool = False
    _run_columns: str = _RUN_COLUMNS + ", 0"  # with dropped_points once the layout has it

    def _columns_for_layout(self) -> None:
        self._run_columns = _RUN_COLUMNS + (", dropped_points" if self.layout >= LAYOUT_PIECES else ", 0")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> AbstractContextManager[Any]:
        """A write transaction (committed at the end of the block, rolled back on an error), answering the
        connection."""
        raise NotImplementedError

    # ---- runs -------------------------------------------------------------------------------------------------

    def runs(self, project: str | None = None) -> list[RunRecord]:
        """Every run (of ``project`` if given), oldest first."""
        sql = f"SELECT {self._run_columns} FROM runs"
        args: tuple[Any, ...] = ()
        if project is not None:
            sql, args = sql + " WHERE project = ?", (project,)
        rows = self.conn.execute(sql + " ORDER BY created_at, id", args).fetchall()
        return [RunRecord.from_row(r) for r in rows]

    def run(self, run_id: str) -> RunRecord:
        """The run with exactly this id."""
        row = self.conn.execute(f"SELECT {self._run_columns} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.location}")
        return RunRecord.from_row(row)

    def find_run(self, ref: str) -> RunRecord:
        """A run named by its id, else by its name, else by a unique id prefix; several runs of that name, or
        several ids of that prefix, raise ``AmbiguousRunError``. A whole name beats an id prefix: the run named
        ``e`` is never mistaken for the run whose id starts with ``e``."""
        row = self.conn.execute(f"SELECT {self._run_columns} FROM runs WHERE id = ?", (ref,)).fetchone()
        if row is not None:
            return RunRecord.from_row(row)
        rows = self.conn.execute(f"SELECT {self._run_columns} FROM runs WHERE name = ?", (ref,)).fetchall()
        if not rows:
            escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self.conn.execute(
                f"SELECT {self._run_columns} FROM runs WHERE id LIKE ? ESCAPE '\\'", (escaped + "%",)
            ).fetchall()
        if len(rows) == 1:
            return RunRecord.from_row(rows[0])
        if not rows:
            raise RunNotFoundError(f"no run matches {ref!r} (by id, id prefix or name) in {self.location}")
        candidates = [(r[0], r[2], r[1]) for r in rows]
        listing = ", ".join(f"{i} ({n}, project {p})" for i, n, p in candidates)
        raise AmbiguousRunError(f"{ref!r} matches {len(rows)} runs: {listing}; use an id", candidates)

    def delete_run(self, run_id: str) -> None:
        """Delete a run and everything recorded for it."""
        with self.transaction():
            self.conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # ---- metrics ----------------------------------------------------------------------------------------------

    def key_ids(self, run_id: str, rank: int = 0) -> dict[str, int]:
        """Every key of a run (scalar or array) with its id, as written by ``rank`` (schema 6: each rank of a
        ``ranks="all"`` run has its own keys; rank 0 is also a single process's)."""
        rows = self.conn.execute("SELECT name, id FROM keys WHERE run_id = ? AND rank = ?", (run_id, rank)).fetchall()
        return dict(rows)

    def ranks(self, run_id: str) -> list[int]:
        """The ranks that wrote keys of the run, ascending: ``[0]`` (or ``[]``) unless it ran with ``ranks="all"``."""
        rows = self.conn.execute("SELECT DISTINCT rank FROM keys WHERE run_id = ? ORDER BY rank", (run_id,))
        return [int(r[0]) for r in rows]

    def rank_states(self, run_id: str) -> dict[int, RankRecord]:
        """Each writing rank's own state under ``ranks="all"`` (none otherwise), a dead rank's 'running' read as
        'crashed' as for runs."""
        rows = self.conn.execute(
            "SELECT rank, state, node, pid, started_at, heartbeat_at, ended_at, exit_code, dropped_points"
            " FROM run_ranks WHERE run_id = ? ORDER BY rank",
            (run_id,),
        ).fetchall()
        return {int(row[0]): RankRecord.from_row(row) for row in rows}

    def scalar_keys(self, run_id: str, rank: int = 0) -> list[str]:
        """Names of the run's scalar series (those ``rank`` wrote), sorted."""
        return self._keys_in(run_id, "scalar_chunks", rank)

    def array_keys(self, run_id: str, rank: int = 0) -> list[str]:
        """Names of the run's array series (those ``rank`` wrote), sorted."""
        return self._keys_in(run_id, "arrays", rank)

    def _keys_in(self, run_id: str, table: str, rank: int = 0) -> list[str]:
        rows = self.conn.execute(
            f"SELECT name FROM keys k WHERE run_id = ? AND rank = ?"
            f" AND EXISTS (SELECT 1 FROM {table} t WHERE t.key_id = k.id) ORDER BY name",
            (run_id, rank),
        ).fetchall()
        names = {r[0] for r in rows}
        if table == "scalar_chunks" and self.layout >= LAYOUT_PIECES:  # a key whose points are all still in pieces
            in_pieces = chunks.piece_counts(self._piece_headers(run_id))
            if in_pieces:
                ids = {v: k for k, v in self.key_ids(run_id, rank).items()}
                names.update(ids[i] for i in in_pieces if i in ids)
        return sorted(names)

    def _piece_headers(self, run_id: str) -> list[tuple[str]]:
        if self.layout < LAYOUT_PIECES:
            return []
        return self.conn.execute("SELECT keys FROM scalar_pieces WHERE run_id = ?", (run_id,)).fetchall()

    def point_counts(self, run_id: str, key: str | None = None, rank: int = 0) -> dict[str, int]:
        """Number of stored points per scalar key (of ``key`` alone if given) of ``rank``: chunks in one grouped
        query, plus the newest points, in the run's pieces."""
        sql = (
            "SELECT k.name, SUM(c.n) FROM keys k JOIN scalar_chunks c ON c.key_id = k.id"
            " WHERE k.run_id = ? AND k.rank = ?"
        )
        args: tuple[Any, ...] = (run_id, rank)
        if key is not None:
            sql, args = sql + " AND k.name = ?", (run_id, rank, key)
        rows = self.conn.execute(sql + " GROUP BY k.name", args).fetchall()
        counts = {name: int(n) for name, n in rows}
        in_pieces = chunks.piece_counts(self._piece_headers(run_id))
        if in_pieces:
            for name, key_id in self.key_ids(run_id, rank).items():
                if key_id in in_pieces and (key is None or name == key):
                    counts[name] = counts.get(name, 0) + in_pieces[key_id]
        return counts

    def scalar_overview(self, run_id: str, rank: int = 0) -> dict[str, ScalarOverview]:
        """Per scalar key of ``rank``: points, last step and value, min and max (NaN ignored), sorted by key.

        One pass over the run's chunks in key order (steps and values only, never times nor arrays): `show`
        costs the same per key for 10 keys or 100,000, where asking key by key cost a query each.
        """
        import numpy as np

        rows = self.conn.execute(
            "SELECT k.name, c.n, c.steps, c.vals FROM keys k JOIN scalar_chunks c ON c.key_id = k.id"
            " WHERE k.run_id = ? AND k.rank = ? ORDER BY k.name, c.seq",
            (run_id, rank),
        )
        out: dict[str, ScalarOverview] = {}
        for name, n, step_blob, value_blob in rows:
            values = np.frombuffer(value_blob, dtype="<f8")
            finite = values[~np.isnan(values)] if np.isnan(values).any() else values
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
            last_step = int(np.frombuffer(step_blob[-8:], dtype="<i8")[0]) if step_blob else None
            last = float(values[-1]) if values.size else None
            seen = out.get(name)
            if seen is not None:
                n += seen.points
                low = _fold(min, seen.min, low)
                high = _fold(max, seen.max, high)
                if last_step is None:
                    last_step, last = seen.last_step, seen.last
            out[name] = ScalarOverview(int(n), last_step, last, low, high)
        if self.layout >= LAYOUT_PIECES:
            self._overview_of_pieces(run_id, out, rank)
        return dict(sorted(out.items()))

    def _overview_of_pieces(self, run_id: str, out: dict[str, ScalarOverview], rank: int = 0) -> None:
        """Fold the run's pieces (its newest points, not yet in chunks) into ``scalar_overview``'s answer, reading
        each piece once whatever the number of keys."""
        import numpy as np

        names = {key_id: name for name, key_id in self.key_ids(run_id, rank).items()}
        rows = self.conn.execute(
            "SELECT keys, steps, vals FROM scalar_pieces WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()
        for key_id, step_blob, value_blob in chunks.piece_entries(rows):
            name = names.get(key_id)
            if name is None or not step_blob:
                continue
            values = np.frombuffer(value_blob, dtype="<f8")
            finite = values[~np.isnan(values)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
            last_step = int(np.frombuffer(step_blob, dtype="<i8").max())
            last: float | None = float(values[-1])
            seen = out.get(name)
            n = values.size
            if seen is not None:
                n += seen.points
                low, high = _fold(min, seen.min, low), _fold(max, seen.max, high)
                if seen.last_step is not None and seen.last_step > last_step:  # another writer's is newer
                    last_step, last = seen.last_step, seen.last
            out[name] = ScalarOverview(int(n), last_step, last, low, high)

    def array_overview(self, run_id: str) -> dict[str, ArrayOverview]:
        """Per array key: steps logged, the last step, and that step's shape, dtype and size, sorted by key.

        Reads the arrays' index only: a run's 80 MB array costs this nothing (its payload is in ``array_data``).
        """
        rows = self.conn.execute(
            "SELECT k.name, s.n, a.step, a.shape, a.dtype, a.nbytes FROM keys k"
            " JOIN (SELECT key_id, COUNT(*) AS n, MAX(step) AS last FROM arrays"
            "       WHERE key_id IN (SELECT id FROM keys WHERE run_id = ?) GROUP BY key_id) s ON s.key_id = k.id"
            " JOIN arrays a ON a.key_id = k.id AND a.step = s.last ORDER BY k.name",
            (run_id,),
        )
        return {
            name: ArrayOverview(int(n), int(step), tuple(json.loads(shape)), dtype, int(nbytes))
            for name, n, step, shape, dtype, nbytes in rows
        }

    def read_scalars(
        self, run_id: str, key: str, after_step: int | None = None, times: bool = True, rank: int = 0
    ) -> tuple[Any, Any, Any]:
        """(steps, times, values) NumPy arrays of one series, a point per step (the last value logged at it);
        only steps > ``after_step`` if given. ``times=False`` leaves the times blobs unread (a third of the
        bytes; a chart on a step axis needs none) and answers None for them. ``rank``'s series of a
        ``ranks="all"`` run (rank 0's by default)."""
        if self.layout >= LAYOUT_PIECES:
            return self._series_of_runs([run_id], key, rank, after_step, times)[run_id]
        columns = "c.steps, c.times, c.vals" if times else "c.steps, c.vals"  # a store made before pieces
        sql = (
            f"SELECT {columns} FROM scalar_chunks c JOIN keys k ON c.key_id = k.id"
            " WHERE k.run_id = ? AND k.name = ? AND k.rank = ?"
        )
        args: tuple[Any, ...] = (run_id, key, rank)
        if after_step is not None:
            sql, args = sql + " AND c.step_max > ?", (*args, after_step)
        rows = self.conn.execute(sql + " ORDER BY c.seq", args).fetchall()
        return _decode_series(rows, times, after_step)

    def read_scalars_many(
        self, run_ids: Sequence[str], key: str, times: bool = True, rank: int = 0
    ) -> dict[str, tuple[Any, Any, Any]]:
        """``read_scalars(run_id, key, times=times, rank=rank)`` of every run of ``run_ids``, by run id, with the
        same arrays: one query per ``_RUNS_PER_QUERY`` runs (chunks and pieces together), where reading run by
        run cost two each (on a database server, a round trip each: 50 runs took 10x SQLite's time)."""
        wanted = list(dict.fromkeys(run_ids))
        if self.layout < LAYOUT_PIECES:
            return {run_id: self.read_scalars(run_id, key, times=times, rank=rank) for run_id in wanted}
        return self._series_of_runs(wanted, key, rank, None, times)

    def _series_of_runs(
        self, run_ids: list[str], key: str, rank: int, after_step: int | None, times: bool
    ) -> dict[str, tuple[Any, Any, Any]]:
        """``read_scalars`` of each run (distinct ids): a key's chunks and its run's pieces (its newest points) in
        one query for ``_RUNS_PER_QUERY`` runs; on a database server each query is a network round trip."""
        blobs = "steps, times, vals" if times else "steps, vals"
        after = "" if after_step is None else " AND {}.step_max > ?"
        bound: tuple[Any, ...] = () if after_step is None else (after_step,)
        found: dict[str, list[Any]] = {run_id: [] for run_id in run_ids}
        for at in range(0, len(run_ids), _RUNS_PER_QUERY):
            batch = run_ids[at : at + _RUNS_PER_QUERY]
            marks = ",".join("?" * len(batch))
            rows = self.conn.execute(
                f"SELECT k.run_id, 0, c.seq, k.id, NULL, {_prefixed(blobs, 'c')} FROM scalar_chunks c"
                f" JOIN keys k ON c.key_id = k.id WHERE k.run_id IN ({marks}) AND k.name = ? AND k.rank = ?"
                + after.format("c")
                + f" UNION ALL SELECT p.run_id, 1, p.seq, k.id, p.keys, {_prefixed(blobs, 'p')} FROM scalar_pieces p"
                f" JOIN keys k ON k.run_id = p.run_id AND k.name = ? AND k.rank = ? WHERE p.run_id IN ({marks})"
                + after.format("p"),
                (*batch, key, rank, *bound, key, rank, *batch, *bound),
            ).fetchall()
            for row in rows:
                found[row[0]].append(row[1:])
        out = {}
        for run_id, parts in found.items():
            parts.sort(key=lambda row: (row[0], row[1]))  # chunks in seq order, then pieces in seq order
            series: list[Any] = [tuple(row[4:]) for row in parts if row[0] == 0]
            pieces: list[Any] = [tuple(row[3:]) for row in parts if row[0] == 1]
            if pieces:
                series += _piece_parts(pieces, parts[-1][2], times)
            out[run_id] = _decode_series(series, times, after_step)
        return out

    def read_envelope(self, run_id: str, key: str, rank: int = 0) -> levels.Envelope | None:
        """The block picks (first, min, max, last, first NaN of every 64 points) of one scalar series, mostly from
        the chunks' precomputed levels: what a chart of a long series needs (``expertrack.store.levels``). None
        when the key is unknown or the store predates levels, or writers' chunks interleave: read the points."""
        if self.layout < LAYOUT_LEVELS:
            return None
        return levels.read_envelope(self.conn, run_id, key, rank)

    def read_envelopes_many(self, run_ids: Sequence[str], key: str, rank: int = 0) -> dict[str, levels.Envelope | None]:
        """``read_envelope(run_id, key, rank)`` of every run of ``run_ids``, by run id, with the same arrays: one
        query for many runs (``levels.read_envelopes``), where reading run by run cost one each."""
        if self.layout < LAYOUT_LEVELS:
            return dict.fromkeys(run_ids)
        return levels.read_envelopes(self.conn, list(run_ids), key, rank)

    def last_step(self, run_id: str) -> int | None:
        """The highest step of any scalar or array of the run, or None when nothing was logged.

        Steps only grow within a series, so each series' last chunk (by primary key) holds its highest step:
        this never scans chunk data, and the dashboard calls it for every running run on every poll. The newest
        points may still be in pieces (each carries its step maximum).
        """
        pieces = None
        if self.layout >= LAYOUT_PIECES:
            pieces = self.conn.execute(
                "SELECT MAX(step_max) FROM scalar_pieces WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
        row = self.conn.execute(
            "SELECT MAX(m) FROM (SELECT (SELECT step_max FROM scalar_chunks c WHERE c.key_id = k.id"
            " ORDER BY c.seq DESC LIMIT 1) AS m FROM keys k WHERE k.run_id = ?"
            " UNION ALL SELECT (SELECT MAX(a.step) FROM arrays a WHERE a.key_id = k.id) FROM keys k"
            " WHERE k.run_id = ?) AS last_steps",
            (run_id, run_id),
        ).fetchone()
        known = [int(v) for v in (row[0], pieces) if v is not None]
        return max(known) if known else None

    def read_arrays(
        self, run_id: str, key: str, after_step: int | None = None, rank: int = 0
    ) -> list[tuple[int, float, Any]]:
        """[(step, time, ndarray)] of one array series (``rank``'s), in step order."""
        import numpy as np

        sql = (
            "SELECT a.step, a.time, a.dtype, a.shape, d.data FROM arrays a JOIN keys k ON a.key_id = k.id"
            " JOIN array_data d ON d.key_id = a.key_id AND d.step = a.step"
            " WHERE k.run_id = ? AND k.name = ? AND k.rank = ?"
        )
        args: tuple[Any, ...] = (run_id, key, rank)
        if after_step is not None:
            sql, args = sql + " AND a.step > ?", (*args, after_step)
        out = []
        for step, t, dtype, shape, data in self.conn.execute(sql + " ORDER BY a.step", args):
            out.append((step, t, np.frombuffer(data, dtype=np.dtype(dtype)).reshape(json.loads(shape))))
        return out

    def array_steps(self, run_id: str, key: str, rank: int = 0) -> list[int]:
        """The steps at which an array key was logged, ascending, from the index alone (no payload read)."""
        rows = self.conn.execute(
            "SELECT a.step FROM arrays a JOIN keys k ON a.key_id = k.id WHERE k.run_id = ? AND k.name = ?"
            " AND k.rank = ? ORDER BY a.step",
            (run_id, key, rank),
        )
        return [r[0] for r in rows]

    def read_array(self, run_id: str, key: str, step: int, rank: int = 0) -> Any:
        """The array logged under ``key`` at exactly ``step`` (a NumPy array), or None: one payload read."""
        import numpy as np

        row = self.conn.execute(
            "SELECT a.dtype, a.shape, d.data FROM arrays a JOIN keys k ON a.key_id = k.id"
            " JOIN array_data d ON d.key_id = a.key_id AND d.step = a.step"
            " WHERE k.run_id = ? AND k.name = ? AND k.rank = ? AND a.step = ?",
            (run_id, key, rank, step),
        ).fetchone()
        if row is None:
            return None
        dtype, shape, data = row
        return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(json.loads(shape))

    # ---- alerts -----------------------------------------------------------------------------------------------

    def alerts(self, run_id: str) -> list[AlertRecord]:
        """The alerts raised for a run, oldest first (see ``expertrack.store.alerts``)."""
        if self.layout < LAYOUT_ALERTS:  # a store written before alerts existed, opened read-only: none
            return []
        return [alert for _run, alert in read_alerts(self.conn, run_id)]

    # ---- files ------------------------------------------------------------------------------------------------

    def file_names(self, run_id: str) -> list[str]:
        """Names of the files attached to a run."""
        rows = self.conn.execute("SELECT DISTINCT name FROM files WHERE run_id = ? ORDER BY name", (run_id,))
        return [r[0] for r in rows]

    def read_file(self, run_id: str, name: str) -> bytes | None:
        """A file's whole content, decompressed, or None when the run has no such file."""
        rows = self.conn.execute(
            "SELECT data FROM files WHERE run_id = ? AND name = ? ORDER BY seq", (run_id, name)
        ).fetchall()
        if not rows:
            return None
        return b"".join(zlib.decompress(r[0]) for r in rows)


_RUNS_PER_QUERY = 400  # run ids bound per query by read_scalars_many, well under SQLite's limit of parameters


def _prefixed(columns: str, table: str) -> str:
    return ", ".join(f"{table}.{c}" for c in columns.split(", "))


def _piece_parts(pieces: list[Any], key_id: int, times: bool) -> list[Any]:
    """One key's slices of piece rows (keys, steps, times, vals) or, without times, (keys, steps, vals)."""
    if times:
        return chunks.piece_slices(pieces, key_id)
    return [(s, v) for kid, s, v in chunks.piece_entries(pieces) if kid == key_id]


def _decode_series(rows: list[Any], times: bool, after_step: int | None) -> tuple[Any, Any, Any]:
    """(steps, times, values) of one series from its blob rows (chunks in seq order, then its piece slices): a
    point per step (the last logged), only steps > ``after_step`` if given; times None without them."""
    if times:
        decoded = chunks.decode(rows)
    else:  # the values stand in for the times through sorting and de-duplication, then are dropped
        steps, values = chunks.decode_pairs(rows)
        decoded = (steps, values, values)
    steps, stamps, values = chunks.last_per_step(*chunks.in_step_order(*decoded))
    if after_step is not None and steps.size and steps[0] <= after_step:
        keep = steps > after_step
        steps, stamps, values = steps[keep], stamps[keep], values[keep]
    return steps, stamps if times else None, values


@dataclass(frozen=True)
class RankRecord:
    """One rank's row of ``run_ranks`` (schema 6): how that rank's part of a ``ranks="all"`` run went."""

    state: str
    node: str | None
    pid: int | None
    started_at: float
    heartbeat_at: float | None
    ended_at: float | None
    exit_code: int | None
    dropped_points: int

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> RankRecord:
        """From ``rank_states``' columns (the rank first); a dead rank left 'running' reads as 'crashed'."""
        record = cls(*row[1:])
        last_heard = record.heartbeat_at or record.started_at
        if record.state == "running" and _writer_gone(record.node, record.pid, last_heard):
            return dataclasses.replace(record, state="crashed")
        return record


@dataclass(frozen=True)
class ScalarOverview:
    """What `show` prints for one scalar key: its points, last step and value, and range (NaN ignored)."""

    points: int
    last_step: int | None
    last: float | None
    min: float | None
    max: float | None


@dataclass(frozen=True)
class ArrayOverview:
    """What `show` prints for one array key, read from the arrays' index without touching payloads."""

    steps: int
    last_step: int
    shape: tuple[int, ...]
    dtype: str
    nbytes: int


def _fold(pick: Any, a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else pick(a, b)
