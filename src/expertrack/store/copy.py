"""Copying runs between two stores: ``expertrack push``/``pull`` and live replication (issue 13; docs/storage.md).

``copy_runs(source, target)`` copies runs through the two store objects, whatever their engines: every statement
here is portable SQL (``?`` parameters, ``ON CONFLICT``, ``RETURNING``; valid on SQLite and PostgreSQL alike).

What a copy guarantees, repeated or interrupted at any point (a SIGKILL included):
- **Exactly one copy of every point.** Each scalar series (key, rank) is compared with the target's: when the
  target holds a prefix of the source's points (same count up to the target's last step, same last point, bit for
  bit), only the points after it are appended, as sealed chunks with their levels, encoded as the writer encodes
  them (store/chunks.py, store/levels.py), so reads from either store are identical. When it does not (rare: two
  writers of one key interleaving steps, or a series rebuilt by ``reparse``), the key's series is replaced in
  one transaction. Arrays are copied by step (``ON CONFLICT DO NOTHING``), files by chunk (a file replaced at the
  source is replaced), alerts without duplicates, ``run_ranks`` rows upserted.
- **Resumable.** Each transaction leaves the target consistent (whole series prefixes, whole array steps, whole
  file chunks); the next copy finds where the target is and goes on. A running run is copied as far as it is.
- **Runs are matched by id; nothing is silently overwritten.** The source's row wins for what changes during a
  run (state, summary, config, heartbeat...), but a run of the same id with another project or creation time is
  refused by name (``CopyRefused``). Under ``ranks="all"`` a node without rank 0 holds a placeholder row: it
  never replaces a row written by rank 0, so pulling every node's store into one gives one run with every rank.

Source reads of one run happen inside one read snapshot (``store.snapshot()`` where the engine has it, else an
SQLite deferred transaction), so a writer sealing its pieces into chunks meanwhile is seen entirely or not at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from expertrack.errors import StoreError
from expertrack.store.chunks import CHUNK_POINTS
from expertrack.store.levels import level_row
from expertrack.store.writes import ensure_key

# A target's last chunk smaller than this is merged with the points appended after it, so that replication
# (a copy every second or two) does not leave a long series as thousands of tiny chunks.
MERGE_BELOW = 1024
TRANSACTION_POINTS = 200_000  # scalar points per target transaction (several small keys share one)
TRANSACTION_BYTES = 64 << 20  # array and file bytes per target transaction

_RUN_COLUMNS = (
    "id", "project", "name", "run_group", "tags", "notes", "state", "created_at", "ended_at", "heartbeat_at",
    "exit_code", "exit_signal", "config", "summary", "metric_defs", "environment", "hostname", "pid",
    "dropped_points",
)  # fmt: skip
# Columns the source's row updates in the target (project and created_at are checked equal first, unless the
# target's row is a ranks="all" placeholder, which the owner's row replaces).
_RUN_UPDATED = tuple(c for c in _RUN_COLUMNS if c != "id")
_RANK_COLUMNS = (
    "rank", "state", "node", "pid", "started_at", "heartbeat_at", "ended_at", "exit_code", "dropped_points",
)  # fmt: skip


class CopyRefused(StoreError):
    """A run exists in both stores as two different runs (same id, another project or creation time)."""


@dataclass
class CopyReport:
    """What one ``copy_runs`` call did."""

    runs: list[str] = field(default_factory=list)  # ids of the runs copied (brought up to date)
    points: int = 0  # scalar points appended (or rewritten, for a replaced series)
    arrays: int = 0  # array points added
    files: int = 0  # file chunks added
    alerts: int = 0  # alerts added
    replaced: list[str] = field(default_factory=list)  # "run/key" series replaced (the target was no prefix)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (run id, why) of runs not copied

    @property
    def changed(self) -> int:
        """How many things were added: 0 when the target was already up to date."""
        return self.points + self.arrays + self.files + self.alerts


Progress = Callable[[str, int], None]  # (run id, scalar points just copied)


def copy_runs(
    source: Any, target: Any, run_ids: Iterable[str] | None = None, progress: Progress | None = None
) -> CopyReport:
    """Copy ``run_ids`` (every run when None) from ``source`` to ``target`` (two open stores); see the module
    docstring. A run that cannot be merged is refused (in the report's ``refused``) and the others are copied."""
    report = CopyReport()
    ids = [r.id for r in source.runs()] if run_ids is None else list(run_ids)
    for run_id in ids:
        try:
            copy_run(source, target, run_id, report, progress)
        except CopyRefused as exc:
            report.refused.append((run_id, str(exc)))
    return report


def copy_run(
    source: Any,
    target: Any,
    run_id: str,
    report: CopyReport | None = None,
    progress: Progress | None = None,
    tails_only: bool = False,
) -> CopyReport:
    """Bring one run of ``target`` up to ``source``'s; ``CopyRefused`` when the two are different runs.

    ``tails_only`` (replication's frequent copies): read each series of the source only from the target's last
    step on, and check only that point, so a copy costs what is new rather than the whole run; a series whose
    last point differs is then compared whole. The final copy of a replicated run compares every series whole."""
    report = report if report is not None else CopyReport()
    with _snapshot(source):
        row = _run_row(source.conn, run_id)
        if row is None:
            raise StoreError(f"no run with id {run_id!r} in the source store")
        source_owner = _owned(source.conn, run_id)
        with target.transaction() as conn:  # first: the row, so the keys can point at it
            _check_mergeable(conn, row, source_owner)
            existed = conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None
            target_owner = existed and _owned(conn, run_id)  # before this copy adds the source's ranks
            _insert_row(conn, row)
        _copy_ranks_rows(source.conn, target, run_id)
        _copy_scalars(source, target, run_id, report, progress, tails_only)
        _copy_arrays(source.conn, target, run_id, report)
        _copy_files(source.conn, target, run_id, report)
        _copy_alerts(source.conn, target, run_id, report)
        if source_owner or not target_owner:  # last: "finished" only once everything is there
            with target.transaction() as conn:
                _update_row(conn, row)
    report.runs.append(run_id)
    return report


# ---- the run's row ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _snapshot(store: Any) -> Iterator[None]:
    """Read ``store`` from one snapshot: the engine's own ``snapshot()`` if it has one; else, on SQLite, a deferred
    transaction (it keeps its first read's snapshot until it ends); else (PostgreSQL) a REPEATABLE READ one."""
    own = getattr(store, "snapshot", None)
    if own is not None:
        with own():
            yield
        return
    conn = store.conn
    if not hasattr(conn, "in_transaction"):  # not sqlite3: the engine's transaction, made a snapshot
        with store.transaction() as pg:
            pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield
        return
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def _run_row(conn: Any, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else dict(zip(_RUN_COLUMNS, row))


def _owned(conn: Any, run_id: str) -> bool:
    """Whether the store's row of the run is its owner's: not a ``ranks="all"`` placeholder (ranks, but no rank 0)."""
    ranks = {r[0] for r in conn.execute("SELECT rank FROM run_ranks WHERE run_id = ?", (run_id,)).fetchall()}
    return not ranks or 0 in ranks


def _check_mergeable(conn: Any, row: dict[str, Any], source_owner: bool) -> None:
    """``CopyRefused`` when the target holds another run under this id (a placeholder matches any project/time)."""
    existing = conn.execute("SELECT project, created_at FROM runs WHERE id = ?", (row["id"],)).fetchone()
    if existing is None or not source_owner or not _owned(conn, row["id"]):
        return
    project, created_at = existing
    if project != row["project"] or float(created_at) != float(row["created_at"]):
        raise CopyRefused(
            f"run {row['id']} differs between the stores (project {row['project']!r} created at "
            f"{row['created_at']:.3f} in the source, project {project!r} created at {float(created_at):.3f} in "
            "the target): they are two different runs; nothing of it was copied"
        )


def _insert_row(conn: Any, row: dict[str, Any]) -> None:
    """The run's row, when the target has none yet, as the source's but 'running' until the copy completes
    (a copy killed halfway reads as crashed, not as a finished run with half its points)."""
    values = dict(row, state="running")
    conn.execute(
        f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(_RUN_COLUMNS))})"
        " ON CONFLICT (id) DO NOTHING",
        tuple(values[c] for c in _RUN_COLUMNS),
    )


def _update_row(conn: Any, row: dict[str, Any]) -> None:
    sets = ", ".join(f"{c} = ?" for c in _RUN_UPDATED)
    conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*(row[c] for c in _RUN_UPDATED), row["id"]))


def _copy_ranks_rows(source: Any, target: Any, run_id: str) -> None:
    rows = source.execute(
        f"SELECT {', '.join(_RANK_COLUMNS)} FROM run_ranks WHERE run_id = ? ORDER BY rank", (run_id,)
    ).fetchall()
    if not rows:
        return
    updates = ", ".join(f"{c} = excluded.{c}" for c in _RANK_COLUMNS[1:])
    with target.transaction() as conn:
        _lock_run(conn, run_id)
        conn.executemany(
            f"INSERT INTO run_ranks (run_id, {', '.join(_RANK_COLUMNS)}) VALUES (?{', ?' * len(_RANK_COLUMNS)})"
            f" ON CONFLICT (run_id, rank) DO UPDATE SET {updates}",
            [(run_id, *r) for r in rows],
        )


def _lock_run(conn: Any, run_id: str) -> None:
    """Take the target run's row lock for this transaction (PostgreSQL: a row lock, so two copies of one run, a
    push during replication, take turns and each sees the other's points; SQLite: its write lock is whole)."""
    conn.execute("UPDATE runs SET heartbeat_at = heartbeat_at WHERE id = ?", (run_id,))


# ---- scalars ----------------------------------------------------------------------------------------------------


def _copy_scalars(
    source: Any, target: Any, run_id: str, report: CopyReport, progress: Progress | None, tails_only: bool
) -> None:
    """Each scalar series, read one at a time from the source (a 1,000,000-point run is never held whole)."""
    series = [(name, rank) for rank in source.ranks(run_id) for name in source.scalar_keys(run_id, rank)]
    ends: dict[tuple[str, int], int] = {}
    if tails_only:  # where each series of the target ends (its writes are checked again in their transaction)
        rows = target.conn.execute(
            "SELECT k.name, k.rank, MAX(c.step_max) FROM keys k JOIN scalar_chunks c ON c.key_id = k.id"
            " WHERE k.run_id = ? GROUP BY k.name, k.rank",
            (run_id,),
        ).fetchall()
        ends = {(name, int(rank)): int(last) for name, rank, last in rows if last is not None}
    pending: list[tuple[str, int, bool, tuple[Any, Any, Any]]] = []
    held = 0
    for name, rank in series:
        end = ends.get((name, rank))
        tail = end is not None
        points = source.read_scalars(run_id, name, after_step=None if end is None else end - 1, rank=rank)
        pending.append((name, rank, tail, points))
        held += len(points[0])
        if held >= TRANSACTION_POINTS:
            _write_series(source, target, run_id, pending, report, progress)
            pending, held = [], 0
    if pending:
        _write_series(source, target, run_id, pending, report, progress)


def _write_series(
    source: Any,
    target: Any,
    run_id: str,
    batch: list[tuple[str, int, bool, tuple[Any, Any, Any]]],
    report: CopyReport,
    progress: Progress | None,
) -> None:
    copied = 0
    whole: list[tuple[str, int, bool, tuple[Any, Any, Any]]] = []
    with target.transaction() as conn:
        _lock_run(conn, run_id)
        for name, rank, tail, (steps, times, values) in batch:
            key_id = ensure_key(conn, run_id, name, rank)
            start, merge = _append_from(conn, key_id, steps, times, values, tail)
            if start is None and tail:  # the target's last point is not the source's: compare the series whole
                whole.append((name, rank, False, source.read_scalars(run_id, name, rank=rank)))
                continue
            if start is None:  # the target is no prefix of the source: the series is replaced
                _delete_chunks(conn, key_id, None)
                report.replaced.append(f"{run_id}/{name}" + (f"@{rank}" if rank else ""))
                start, merge = 0, None
            if start >= len(steps):
                continue
            copied += len(steps) - start
            if merge is not None:  # the tail chunk is small: rewritten with the new points
                seq, (m_steps, m_times, m_values) = merge
                _delete_chunks(conn, key_id, seq)
                _insert_chunks(conn, key_id, *_concat((m_steps, m_times, m_values), (steps, times, values), start))
            else:
                _insert_chunks(conn, key_id, steps[start:], times[start:], values[start:])
    report.points += copied
    if progress is not None and copied:
        progress(run_id, copied)
    if whole:
        _write_series(source, target, run_id, whole, report, progress)


def _append_from(
    conn: Any, key_id: int, steps: Any, times: Any, values: Any, tail: bool = False
) -> tuple[int | None, Any]:
    """Where the source's points go on after the target's: (index of the first new point, the target's tail chunk
    to merge or None); (None, None) when the target's series is not a prefix of the source's. ``tail``: the
    source's points start at the target's last step (``tails_only``), and only that point is compared."""
    import numpy as np

    count, chunk_count, low, high = conn.execute(
        "SELECT COALESCE(SUM(n), 0), COUNT(*), MIN(step_min), MAX(step_max) FROM scalar_chunks WHERE key_id = ?",
        (key_id,),
    ).fetchone()
    if not chunk_count:
        return (0, None) if not tail else (None, None)
    seq, n, tail_high, s_blob, t_blob, v_blob = conn.execute(
        "SELECT seq, n, step_max, steps, times, vals FROM scalar_chunks WHERE key_id = ? ORDER BY seq DESC LIMIT 1",
        (key_id,),
    ).fetchone()
    t_steps = np.frombuffer(bytes(s_blob), dtype="<i8")
    t_times = np.frombuffer(bytes(t_blob), dtype="<f8")
    t_values = np.frombuffer(bytes(v_blob), dtype="<f8")
    if tail:  # the source's points from the target's last step on
        at = 1
        known = len(steps) > 0 and int(steps[0]) == int(high)
    else:  # the source's points up to the target's last step must be as many as the target's
        at = int(np.searchsorted(steps, high, side="right"))
        known = int(count) == at and int(steps[0]) == int(low) and int(steps[at - 1]) == int(high)
    prefix = (
        known
        and int(tail_high) == int(high) == int(t_steps[-1])
        and _same_bits(times[at - 1], t_times[-1])
        and _same_bits(values[at - 1], t_values[-1])
    )
    if not prefix:
        return None, None
    merge = (seq, (t_steps, t_times, t_values)) if int(n) < MERGE_BELOW and at < len(steps) else None
    return at, merge


def _same_bits(a: Any, b: Any) -> bool:
    import numpy as np

    return bool(np.float64(a).tobytes() == np.float64(b).tobytes())


def _concat(head: tuple[Any, Any, Any], series: tuple[Any, Any, Any], start: int) -> tuple[Any, Any, Any]:
    import numpy as np

    return (
        np.concatenate([head[0], series[0][start:]]),
        np.concatenate([head[1], series[1][start:]]),
        np.concatenate([head[2], series[2][start:]]),
    )


def _delete_chunks(conn: Any, key_id: int, seq: int | None) -> None:
    """Delete one chunk of a key (or all of them, ``seq`` None) with its level."""
    where, args = ("key_id = ?", (key_id,)) if seq is None else ("key_id = ? AND seq = ?", (key_id, seq))
    conn.execute(f"DELETE FROM scalar_levels WHERE {where}", args)
    conn.execute(f"DELETE FROM scalar_chunks WHERE {where}", args)


def _insert_chunks(conn: Any, key_id: int, steps: Any, times: Any, values: Any) -> None:
    """Append points (in step order, one per step) as chunks of at most ``CHUNK_POINTS``, each with its level:
    the writer's own encoding (``SeriesBuffer.chunk_rows``, ``levels.level_row``)."""
    seq = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM scalar_chunks WHERE key_id = ?", (key_id,)).fetchone()[0]
    for start in range(0, len(steps), CHUNK_POINTS):
        part = slice(start, start + CHUNK_POINTS)
        s = steps[part].astype("<i8")
        s_blob, v_blob = s.tobytes(), values[part].astype("<f8").tobytes()
        n, low, high = len(s), int(s[0]), int(s.max())
        conn.execute(
            "INSERT INTO scalar_chunks (key_id, seq, n, step_min, step_max, steps, times, vals)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key_id, seq, n, low, high, s_blob, times[part].astype("<f8").tobytes(), v_blob),
        )
        conn.execute(
            "INSERT INTO scalar_levels (key_id, seq, n, step_min, step_max, picks, steps, vals)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key_id, seq, n, low, high, *level_row(s_blob, v_blob)),
        )
        seq += 1


# ---- arrays, files, alerts --------------------------------------------------------------------------------------


def _copy_arrays(source: Any, target: Any, run_id: str, report: CopyReport) -> None:
    """Every array point the target lacks (matched by key, rank and step), payloads read one at a time."""
    index = source.execute(
        "SELECT k.id, k.name, k.rank, a.step, a.time, a.dtype, a.shape, a.nbytes FROM arrays a"
        " JOIN keys k ON a.key_id = k.id WHERE k.run_id = ? ORDER BY k.rank, k.name, a.step",
        (run_id,),
    ).fetchall()
    if not index:
        return
    have = {
        (name, rank, step)
        for name, rank, step in target.conn.execute(
            "SELECT k.name, k.rank, a.step FROM arrays a JOIN keys k ON a.key_id = k.id WHERE k.run_id = ?",
            (run_id,),
        ).fetchall()
    }
    missing = [r for r in index if (r[1], r[2], r[3]) not in have]
    batch: list[tuple[Any, ...]] = []
    size = 0
    for row in missing:
        batch.append(row)
        size += int(row[7])
        if size >= TRANSACTION_BYTES:
            report.arrays += _write_arrays(source, target, run_id, batch)
            batch, size = [], 0
    if batch:
        report.arrays += _write_arrays(source, target, run_id, batch)


def _write_arrays(source: Any, target: Any, run_id: str, batch: list[tuple[Any, ...]]) -> int:
    added = 0
    with target.transaction() as conn:
        _lock_run(conn, run_id)
        for source_key, name, rank, step, t, dtype, shape, nbytes in batch:
            data = source.execute(
                "SELECT data FROM array_data WHERE key_id = ? AND step = ?", (source_key, step)
            ).fetchone()[0]
            key_id = ensure_key(conn, run_id, name, rank)
            inserted = conn.execute(
                "INSERT INTO arrays (key_id, step, time, dtype, shape, nbytes) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (key_id, step) DO NOTHING RETURNING step",
                (key_id, step, t, dtype, shape, nbytes),
            ).fetchone()
            if inserted is not None:
                conn.execute(
                    "INSERT INTO array_data (key_id, step, data) VALUES (?, ?, ?)"
                    " ON CONFLICT (key_id, step) DO NOTHING",
                    (key_id, step, data),
                )
                added += 1
    return added


def _copy_files(source: Any, target: Any, run_id: str, report: CopyReport) -> None:
    """Each file's chunks the target lacks; a file whose chunks differ from the target's (replaced at the source)
    is replaced whole."""
    listing = "SELECT name, seq, created_at, size FROM files WHERE run_id = ? ORDER BY name, seq"
    theirs: dict[str, list[tuple[int, float, int]]] = {}
    for name, seq, created_at, size in source.execute(listing, (run_id,)).fetchall():
        theirs.setdefault(name, []).append((int(seq), float(created_at), int(size)))
    if not theirs:
        return
    ours: dict[str, list[tuple[int, float, int]]] = {}
    for name, seq, created_at, size in target.conn.execute(listing, (run_id,)).fetchall():
        ours.setdefault(name, []).append((int(seq), float(created_at), int(size)))
    for name, chunks in theirs.items():
        have = ours.get(name, [])
        replace = have != chunks[: len(have)]
        todo = chunks if replace else chunks[len(have) :]
        if not todo:
            continue
        with target.transaction() as conn:
            _lock_run(conn, run_id)
            if replace:
                conn.execute("DELETE FROM files WHERE run_id = ? AND name = ?", (run_id, name))
            for seq, created_at, size in todo:
                data = source.execute(
                    "SELECT data FROM files WHERE run_id = ? AND name = ? AND seq = ?", (run_id, name, seq)
                ).fetchone()[0]
                conn.execute(
                    "INSERT INTO files (run_id, name, seq, created_at, size, data) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (run_id, name, seq) DO NOTHING",
                    (run_id, name, seq, created_at, size, data),
                )
        report.files += len(todo)


def _copy_alerts(source: Any, target: Any, run_id: str, report: CopyReport) -> None:
    """The source's alerts the target does not have yet (an alert is its rule, key, step, value, time and
    message), in the order they were raised."""
    listing = "SELECT rule, key, step, value, time, message FROM alerts WHERE run_id = ? ORDER BY id"
    theirs = [tuple(r) for r in source.execute(listing, (run_id,)).fetchall()]
    if not theirs:
        return
    with target.transaction() as conn:
        _lock_run(conn, run_id)
        have = {tuple(r) for r in conn.execute(listing, (run_id,)).fetchall()}
        new = [r for r in theirs if r not in have]
        if new:
            conn.executemany(
                "INSERT INTO alerts (run_id, rule, key, step, value, time, message) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, *r) for r in new],
            )
    report.alerts += len(new)


def redact_location(message: str, location: str) -> str:
    """``message`` with ``location``'s password cut out, in case a database driver repeated the URL in an error."""
    from urllib.parse import urlsplit

    from expertrack.store.location import describe, is_postgres

    if not is_postgres(location):
        return message
    message = message.replace(str(location), describe(location))
    try:
        password = urlsplit(str(location)).password
    except ValueError:
        password = None
    return message.replace(password, "***") if password else message
