"""Every write to a store, engine-neutral: ``StoreWrites``, the mixin each engine's ``Store`` inherits.

The SQL here runs unchanged on SQLite (3.35 or later) and PostgreSQL (15): ``?`` placeholders (an engine's
connection adapter may rewrite them), ``INSERT ... ON CONFLICT`` instead of SQLite's ``INSERT OR ...``,
``RETURNING``, and no engine's own functions or pragmas. The engine supplies ``transaction()`` (a context manager
that yields a connection, commits on success and rolls back on an error) and ``path``; what only one engine knows
(its error codes, its lock wait) is in its own module (store/sqlite_writes.py).

Who writes what: a run being written by its own process is changed only by that process's writer, through
``write_batch``; ``init()`` creates or reopens its row first; the rest (``add_arrays``, ``replace_scalars``,
``set_run_times``, the mirror's state) is for runs that already exist, from importers, ``reparse`` and followers.
"""

from __future__ import annotations

import json
import os
import socket
import time
import zlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

from expertrack.errors import RunDeletedError
from expertrack.records import (
    AlertFired,
    ArrayPoint,
    Batch,
    ConfigSet,
    End,
    Environment,
    FileChunk,
    MetricDefs,
    MirrorState,
    NewRun,
    Record,
)
from expertrack.store.alerts import insert_alerts
from expertrack.store.chunks import INSERT_CHUNK, INSERT_PIECE, SeriesBuffer
from expertrack.store.levels import level_row

INSERT_LEVEL = (
    "INSERT INTO scalar_levels (key_id, seq, n, step_min, step_max, picks, steps, vals)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key_id, seq) DO UPDATE SET n = excluded.n,"
    " step_min = excluded.step_min, step_max = excluded.step_max, picks = excluded.picks,"
    " steps = excluded.steps, vals = excluded.vals"
)
INSERT_ARRAY_INDEX = (
    "INSERT INTO arrays (key_id, step, time, dtype, shape, nbytes) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (key_id, step) DO UPDATE SET time = excluded.time, dtype = excluded.dtype,"
    " shape = excluded.shape, nbytes = excluded.nbytes"
)
INSERT_ARRAY_DATA = (
    "INSERT INTO array_data (key_id, step, data) VALUES (?, ?, ?)"
    " ON CONFLICT (key_id, step) DO UPDATE SET data = excluded.data"
)
INSERT_RUN = (
    "INSERT INTO runs (id, project, name, run_group, tags, notes, state, created_at, heartbeat_at, config,"
    " hostname, pid) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)"
)
# Appended to rank 0's INSERT of the run's row: a placeholder row (no pid: made by another rank that started
# first) becomes rank 0's, in the same statement, so no rank can slip in between a check and the insert.
CLAIM = (
    " ON CONFLICT (id) DO UPDATE SET project = excluded.project, name = excluded.name,"
    " run_group = excluded.run_group, tags = excluded.tags, notes = excluded.notes, config = excluded.config,"
    " state = 'running', ended_at = NULL, exit_code = NULL, heartbeat_at = excluded.heartbeat_at,"
    " hostname = excluded.hostname, pid = excluded.pid WHERE runs.pid IS NULL"
)


class StoreWrites:
    """The write side of a store (see the module docstring); mixed into each engine's ``Store``."""

    path: Any
    conn: Any  # the engine's connection: reads go straight to it, writes through ``transaction()``

    def transaction(self) -> AbstractContextManager[Any]:  # supplied by the engine
        raise NotImplementedError

    # ---- a live run's batches ---------------------------------------------------------------------------------

    def write_batch(self, batch: Batch) -> list[int]:
        """Store one flush of a writer in one transaction: all of it, or (an exception) nothing.

        Returns the seqs of the pieces it inserted (none when it sealed). Raises ``RunDeletedError`` when the
        run's row is gone (``expertrack rm`` while it ran), before anything else is written.
        """
        known = set(batch.key_ids)
        try:
            with self.transaction() as conn:
                # first, so that a run deleted meanwhile is recognised before an insert fails on its foreign key
                self._update_run(conn, batch)
                for buffer in batch.series:
                    if buffer.key_id < 0:
                        buffer.key_id = self._key_id(conn, batch, buffer.name)
                if batch.seal:
                    self._seal(conn, batch)
                    seqs: list[int] = []
                else:
                    seqs = [conn.execute(INSERT_PIECE, p.row(batch.run_id)).fetchone()[0] for p in batch.pieces]
                for record in batch.records:
                    self._write_record(conn, batch, record)
        except BaseException:
            # rolled back: forget the ids created inside the transaction so the retry creates them again
            for name in set(batch.key_ids) - known:
                del batch.key_ids[name]
            for buffer in batch.series:
                if buffer.name not in batch.key_ids:
                    buffer.key_id = -1
            raise
        return seqs

    def _update_run(self, conn: Any, batch: Batch) -> None:
        update, run_id = batch.update, batch.run_id
        if update is not None and batch.rank is not None:
            conn.execute(
                "UPDATE run_ranks SET heartbeat_at = ?, dropped_points = ? WHERE run_id = ? AND rank = ?",
                (update.now, update.dropped_points, run_id, batch.rank),
            )
            if not batch.owns_run:  # a placeholder row (rank 0 not here yet, or on another node) lives while we do
                conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ? AND pid IS NULL", (update.now, run_id))
        if update is not None and batch.owns_run:
            found = conn.execute(
                "UPDATE runs SET summary = COALESCE(?, summary), heartbeat_at = ?, dropped_points = ? WHERE id = ?",
                (update.summary, update.now, update.dropped_points, run_id),
            ).rowcount
        else:
            found = conn.execute("SELECT COUNT(*) FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        if not found:
            raise RunDeletedError(run_id)

    def _key_id(self, conn: Any, batch: Batch, name: str) -> int:
        """The id of the batch's key ``name``, creating its row if needed (inside the transaction)."""
        key_id = batch.key_ids.get(name)
        if key_id is None:
            key_id = batch.key_ids[name] = ensure_key(conn, batch.run_id, name, batch.rank or 0)
        return key_id

    def _seal(self, conn: Any, batch: Batch) -> None:
        """Every unsealed point of the batch's series as chunks, and the writer's pieces deleted."""
        _insert_chunks(conn, batch.series)
        if batch.sealed_pieces:
            conn.executemany(
                "DELETE FROM scalar_pieces WHERE run_id = ? AND seq = ?",
                [(batch.run_id, seq) for seq in batch.sealed_pieces],
            )

    def _write_record(self, conn: Any, batch: Batch, record: Record) -> None:
        run_id = batch.run_id
        if isinstance(record, End) and batch.rank is not None:
            _end_rank(conn, batch, record)
        if not batch.owns_run and isinstance(record, (ConfigSet, MetricDefs, Environment, End)):
            return  # rank 0 owns the run's config, metric definitions and environment; its end ends the run
        if isinstance(record, ArrayPoint):
            insert_array(conn, self._key_id(conn, batch, record.key), record.step, record.time, record.array)
        elif isinstance(record, AlertFired):
            insert_alerts(conn, run_id, [record.alert])
        elif isinstance(record, ConfigSet):
            conn.execute("UPDATE runs SET config = ? WHERE id = ?", (record.config, run_id))
        elif isinstance(record, MetricDefs):
            conn.execute("UPDATE runs SET metric_defs = ? WHERE id = ?", (json.dumps(record.defs), run_id))
        elif isinstance(record, Environment):
            conn.execute("UPDATE runs SET environment = ? WHERE id = ?", (record.environment, run_id))
        elif isinstance(record, FileChunk):
            _insert_file(conn, run_id, record)
        elif isinstance(record, End):
            conn.execute(
                "UPDATE runs SET state = ?, exit_code = ?, exit_signal = ?, ended_at = ? WHERE id = ?",
                (record.state, record.exit_code, record.signal, record.ended_at, run_id),
            )
        # SummarySet and SummaryDeleted: the writer's summary holds them; its snapshot comes with ``update``

    # ---- runs -------------------------------------------------------------------------------------------------

    def create_run(self, run: NewRun, claim: bool = False) -> bool:
        """Insert the run's row (state 'running'); False, and nothing changed, when a run of that id exists.

        ``claim`` (rank 0 under ``ranks="all"``): a placeholder row another rank made (no pid) is filled in
        instead, in the same statement; a row that is no placeholder stays as it is (False).
        """
        args = (run.id, run.project, run.name, run.group, run.tags, run.notes, run.created_at, run.created_at,
                run.config, run.hostname, run.pid)  # fmt: skip
        with self.transaction() as conn:
            sql = INSERT_RUN + (CLAIM if claim else " ON CONFLICT (id) DO NOTHING")
            return bool(conn.execute(sql, args).rowcount)

    def reopen_run(self, run_id: str, name: str, group: str | None, tags: str, notes: str | None, config: str) -> None:
        """A run resumed by this process: 'running' again, its end cleared, these fields (JSON text for
        ``tags`` and ``config``) and this host and process recorded, in one transaction."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE runs SET state = 'running', ended_at = NULL, exit_code = NULL, exit_signal = NULL,"
                " name = ?, run_group = ?, tags = ?, notes = ?, config = ?, hostname = ?, pid = ?, heartbeat_at = ?"
                " WHERE id = ?",
                (name, group, tags, notes, config, socket.gethostname(), os.getpid(), time.time(), run_id),
            )

    def run_exists(self, run_id: str) -> bool:
        """Whether the store holds a run of exactly this id."""
        return self._first("SELECT 1 FROM runs WHERE id = ?", (run_id,)) is not None

    def count_runs(self, project: str) -> int:
        """How many runs ``project`` has."""
        return int(self._first("SELECT COUNT(*) FROM runs WHERE project = ?", (project,))[0])

    def projects(self) -> list[str]:
        """The names of every project with a run, sorted."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT project FROM runs ORDER BY project").fetchall()]

    def set_run_times(self, run_id: str, created_at: float, ended_at: float | None) -> None:
        """Give a run the start (and, when known, end) time it had elsewhere (an imported run)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE runs SET created_at = ?, ended_at = COALESCE(?, ended_at) WHERE id = ?",
                (created_at, ended_at, run_id),
            )

    def replace_scalars(
        self, run_id: str, series: list[SeriesBuffer], config: str | None = None, summary: str | None = None
    ) -> None:
        """Replace every scalar point of a run (of every rank) with ``series`` (rank 0's keys), and its config and
        summary (JSON text; None keeps them), in one transaction: a reader sees the old points or the new, never
        none, and a failure leaves the run as it was (``expertrack reparse``)."""
        with self.transaction() as conn:
            if conn.execute("SELECT COUNT(*) FROM runs WHERE id = ?", (run_id,)).fetchone()[0] == 0:
                raise LookupError(f"no run {run_id!r} in {self.path}")
            owned = "SELECT id FROM keys WHERE run_id = ?"
            conn.execute(f"DELETE FROM scalar_levels WHERE key_id IN ({owned})", (run_id,))
            conn.execute(f"DELETE FROM scalar_chunks WHERE key_id IN ({owned})", (run_id,))
            conn.execute("DELETE FROM scalar_pieces WHERE run_id = ?", (run_id,))
            for buffer in series:
                buffer.key_id = ensure_key(conn, run_id, buffer.name, 0)
            _insert_chunks(conn, series)
            conn.execute(
                "UPDATE runs SET config = COALESCE(?, config), summary = COALESCE(?, summary) WHERE id = ?",
                (config, summary, run_id),
            )

    def add_arrays(self, run_id: str, key: str, points: Iterable[tuple[int, float, Any]]) -> int:
        """Store ``(step, time, ndarray)`` points of one array key of a stored run, in one transaction; a point
        at a step the key already has replaces it (importing the same files again changes nothing). Returns the
        count; ``LookupError`` when there is no such run."""
        with self.transaction() as conn:
            if conn.execute("SELECT COUNT(*) FROM runs WHERE id = ?", (run_id,)).fetchone()[0] == 0:
                raise LookupError(f"no run {run_id!r} in {self.path}")
            key_id = ensure_key(conn, run_id, key, 0)  # rank 0's: what readers show by default
            count = 0
            for step, t, array in points:
                insert_array(conn, key_id, step, t, array)
                count += 1
        return count

    def file_chunks(self, run_id: str, name: str) -> list[tuple[float, bytes]]:
        """A run file's chunks with the time each was saved, in order (``read_file`` joins them, timeless)."""
        rows = self.conn.execute(
            "SELECT created_at, data FROM files WHERE run_id = ? AND name = ? ORDER BY seq", (run_id, name)
        ).fetchall()
        return [(float(created_at), zlib.decompress(data)) for created_at, data in rows]

    # ---- ranks="all" (expertrack.allranks) ------------------------------------------------------------------

    def rank_placeholder(self, run_id: str) -> bool:
        """Whether the run's row was made by another rank, waiting for rank 0 to fill it in."""
        rows = self.conn.execute("SELECT rank FROM run_ranks WHERE run_id = ?", (run_id,)).fetchall()
        return bool(rows) and 0 not in {r[0] for r in rows}

    def rank_wrote_before(self, run_id: str, rank: int) -> bool:
        """Whether ``rank`` already has a part in the stored run of that id."""
        return self._first("SELECT 1 FROM run_ranks WHERE run_id = ? AND rank = ?", (run_id, rank)) is not None

    def join_rank(self, run_id: str, rank: int, project: str) -> None:
        """A rank other than 0 joins the run: its row made as a placeholder (no host, no pid: the run's liveness
        is rank 0's) when rank 0 has not made it yet, and its own ``run_ranks`` row, in one transaction."""
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO runs (id, project, name, state, created_at, heartbeat_at)"
                " VALUES (?, ?, ?, 'running', ?, ?) ON CONFLICT (id) DO NOTHING",
                (run_id, project, run_id, now, now),
            )
            _register_rank(conn, run_id, rank, now)

    def register_rank(self, run_id: str, rank: int) -> None:
        """This process's ``run_ranks`` row for ``rank``, running (a resumed rank's row starts again)."""
        with self.transaction() as conn:
            _register_rank(conn, run_id, rank, time.time())

    # ---- followers' state (mirror_state) ----------------------------------------------------------------------

    def read_mirror_state(self, run_id: str, target: str) -> MirrorState | None:
        """A follower's saved position in a run, or None when it never followed it."""
        row = self._first(
            "SELECT run_id, target, state, cursor_step, remote_id, reason, updated_at FROM mirror_state"
            " WHERE run_id = ? AND target = ?",
            (run_id, target),
        )
        return None if row is None else MirrorState(*row)

    def write_mirror_state(self, state: MirrorState) -> None:
        """Insert or replace a follower's state of a run, in one short transaction."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO mirror_state (run_id, target, state, cursor_step, remote_id, reason, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, target) DO UPDATE SET state = excluded.state,"
                " cursor_step = excluded.cursor_step, remote_id = excluded.remote_id, reason = excluded.reason,"
                " updated_at = excluded.updated_at",
                (state.run_id, state.target, state.state, state.cursor_step, state.remote_id, state.reason,
                 state.updated_at),
            )  # fmt: skip

    def advance_mirror_cursor(self, run_id: str, target: str, cursor_step: int) -> None:
        """Move a follower's saved position in a run to ``cursor_step`` (one short transaction)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE mirror_state SET cursor_step = ?, updated_at = ? WHERE run_id = ? AND target = ?",
                (cursor_step, time.time(), run_id, target),
            )

    # ---- plumbing -----------------------------------------------------------------------------------------------

    def _first(self, sql: str, args: tuple[Any, ...]) -> Any:
        """The first row of a one-row read (or None)."""
        return self.conn.execute(sql, args).fetchone()


def ensure_key(conn: Any, run_id: str, name: str, rank: int) -> int:
    """The id of key ``name`` of ``rank`` in the run, creating its row if needed; inside a transaction."""
    conn.execute(
        "INSERT INTO keys (run_id, name, rank) VALUES (?, ?, ?) ON CONFLICT (run_id, name, rank) DO NOTHING",
        (run_id, name, rank),
    )
    row = conn.execute("SELECT id FROM keys WHERE run_id = ? AND name = ? AND rank = ?", (run_id, name, rank))
    return int(row.fetchone()[0])


def _insert_chunks(conn: Any, series: list[SeriesBuffer]) -> None:
    """Every unsealed point of ``series`` (key ids resolved) as chunks, each with its level (store/levels.py)."""
    for buffer in series:
        for row in buffer.chunk_rows():
            seq = conn.execute(INSERT_CHUNK + " RETURNING seq", (buffer.key_id, buffer.key_id, *row)).fetchone()[0]
            conn.execute(INSERT_LEVEL, (buffer.key_id, seq, *row[:3], *level_row(row[3], row[5])))


def insert_array(conn: Any, key_id: int, step: int, time: float, array: Any) -> None:
    """Store one array (a NumPy array) at a step, inside the caller's transaction: its index row, then its
    payload in ``array_data`` (schema migration 3). A second array at the same step replaces the first."""
    data = array.tobytes()
    conn.execute(INSERT_ARRAY_INDEX, (key_id, step, time, array.dtype.str, json.dumps(list(array.shape)), len(data)))
    conn.execute(INSERT_ARRAY_DATA, (key_id, step, data))


def _insert_file(conn: Any, run_id: str, chunk: FileChunk) -> None:
    if chunk.replace:
        conn.execute("DELETE FROM files WHERE run_id = ? AND name = ?", (run_id, chunk.name))
    seq = conn.execute(
        "SELECT COALESCE(MAX(seq) + 1, 0) FROM files WHERE run_id = ? AND name = ?", (run_id, chunk.name)
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO files (run_id, name, seq, created_at, size, data) VALUES (?, ?, ?, ?, ?, ?)",
        (run_id, chunk.name, seq, time.time(), len(chunk.data), zlib.compress(chunk.data, 6)),
    )


def _end_rank(conn: Any, batch: Batch, end: End) -> None:
    """This rank's own end, in its run_ranks row (ranks="all"). A placeholder run row (rank 0 never came to
    this store: another node's) ends with the last of this store's ranks, so it does not read as crashed."""
    conn.execute(
        "UPDATE run_ranks SET state = ?, exit_code = ?, ended_at = ?, heartbeat_at = ? WHERE run_id = ? AND rank = ?",
        (end.state, end.exit_code, end.ended_at, end.ended_at, batch.run_id, batch.rank),
    )
    if not batch.owns_run:
        conn.execute(
            "UPDATE runs SET state = ?, exit_code = ?, ended_at = ? WHERE id = ? AND pid IS NULL AND NOT EXISTS"
            " (SELECT 1 FROM run_ranks WHERE run_id = ? AND state = 'running' AND rank != ?)",
            (end.state, end.exit_code, end.ended_at, batch.run_id, batch.run_id, batch.rank),
        )


def _register_rank(conn: Any, run_id: str, rank: int, now: float) -> None:
    conn.execute(
        "INSERT INTO run_ranks (run_id, rank, state, node, pid, started_at, heartbeat_at) VALUES"
        " (?, ?, 'running', ?, ?, ?, ?) ON CONFLICT (run_id, rank) DO UPDATE SET state = 'running',"
        " node = excluded.node, pid = excluded.pid, started_at = excluded.started_at,"
        " heartbeat_at = excluded.heartbeat_at, ended_at = NULL, exit_code = NULL, dropped_points = 0",
        (run_id, rank, socket.gethostname(), os.getpid(), now, now),
    )


def add_arrays(store: Any, run_id: str, key: str, points: Iterable[tuple[int, float, Any]]) -> int:
    """``store.add_arrays(...)``: kept for callers of the function."""
    return int(store.add_arrays(run_id, key, points))
