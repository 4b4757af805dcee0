"""The background writer: moves the run's queue into the store, one transaction per flush (DESIGN.md rule 1).

``Run.log()`` only appends tuples to ``Writer.queue``; this thread turns them into pieces and chunks of scalar
points (see store/chunks.py), arrays, files and summary updates, and commits on a fixed cadence of
``flush_interval`` and on request.

What it promises, and how (issue 12):
- **Commits on time.** Each cadence flush absorbs what the queue holds for at most half an interval, then commits
  what it absorbed, so a training loop that logs faster than the writer can store never keeps it from committing.
- **Bounded memory.** Points logged but not yet committed are at most ``max_queued_points`` (default 1,000,000;
  ``EXPERTRACK_MAX_QUEUED_POINTS`` or ``init(settings={"max_queued_points": N})``). Past it, ``log()`` drops the
  row and counts its points: said once when it starts, the total said at the end, stored in ``runs.dropped_points``.
- **Encodes once.** A flush encodes its new points into one piece; a piece whose transaction fails is kept as it
  is and written by a later flush, so a store locked for a minute costs no re-encoding of the backlog.
- **Nothing stored is lost, and what is not stored is said.** A failed flush (a locked store, a full disk) is
  rolled back, reported once by its cause, and retried; the last flush at close is tried a few times within its
  deadline, and if it still fails the number of points that could not be stored is said.
A value that cannot be stored (an int too large for a float) is reported and skipped on its own, never costing the
records around it. A run whose row was deleted while it trained (``expertrack rm``) is said once and dropped: what
it logs afterwards is discarded at each flush, so its memory does not grow.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from expertrack.notify import Notifier
from expertrack.store import Store
from expertrack.store.alerts import insert_alerts
from expertrack.store.chunks import INSERT_CHUNK, INSERT_PIECE, SEAL_FLUSHES, SEAL_POINTS, Piece, SeriesBuffer
from expertrack.store.levels import INSERT_LEVEL, level_row
from expertrack.store.sqlite import BUSY_TIMEOUT_S, insert_array
from expertrack.summary import SummaryState
from expertrack.values import check_key

if TYPE_CHECKING:
    from expertrack.alerts.engine import AlertEngine

FLUSH_INTERVAL_S = 0.5  # half the 1 s loss bound (LOSS_BOUND_S), so a flush in progress still meets it
LOSS_BOUND_S = 1.0  # what a kill -9 may lose while the writer keeps up: README, docs and tests use this number
IDLE_HEARTBEAT_S = 10.0
# The run's row (summary, heartbeat, dropped count) is rewritten at most this often, and at every flush() and the
# last: it carries the environment and a summary entry per key, several pages that every 0.5 s flush rewrote
ROW_UPDATE_S = 2.0
MAX_KEYS_PER_RUN = 100_000
# about 60 MB while the writer absorbs (48 bytes a buffered point), 130 MB at worst (~130 a point in log()'s dicts)
MAX_QUEUED_POINTS = 1_000_000
CLOSE_ATTEMPTS = 5  # of the last flush, at close
CLOSE_RETRY_S = 0.2  # between them
SQLITE_FULL = 13
SQLITE_BUSY = 5


def queue_bound(settings: Any = None) -> int:
    """The bound on points logged and not yet committed: ``settings`` (a mapping or an object with a
    ``max_queued_points``), else ``$EXPERTRACK_MAX_QUEUED_POINTS``, else ``MAX_QUEUED_POINTS``."""
    given = settings.get("max_queued_points") if isinstance(settings, dict) else None
    if given is None and settings is not None and not isinstance(settings, dict):
        given = getattr(settings, "max_queued_points", None)
    if given is None:
        given = os.environ.get("EXPERTRACK_MAX_QUEUED_POINTS") or MAX_QUEUED_POINTS
    try:
        bound = int(given)
    except (TypeError, ValueError):
        raise ValueError(f"max_queued_points must be a positive integer, not {given!r}") from None
    if bound <= 0:
        raise ValueError(f"max_queued_points must be a positive integer, not {given!r}")
    return bound


def _is_busy(exc: Exception) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (sqlite_errorcode is there from Python 3.11)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return code == SQLITE_BUSY if code is not None else "database is locked" in str(exc)


class RunDeletedError(Exception):
    """The run's row is no longer in the store: it was deleted (``expertrack rm``) while the run was logging."""


class Writer:
    """Owns the store connection of one run once the run has started; ``queue`` is its only input."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        notifier: Notifier,
        flush_interval: float = FLUSH_INTERVAL_S,
        summary: SummaryState | None = None,
        environment: Callable[[], str] | None = None,
        max_queued_points: int = MAX_QUEUED_POINTS,
        alerts: AlertEngine | None = None,
        rank: int | None = None,
    ) -> None:
        self.store = store
        # ranks="all" (issue 15): this rank's keys are its own series; only rank 0 writes the run's row (summary,
        # config, end state), every writing rank its own row of run_ranks. None: the run's only writer.
        self.rank = rank
        self.owns_run = rank in (None, 0)
        self._environment = environment  # captured first thing on this thread, so even a short run records it
        self.run_id = run_id
        self.notifier = notifier
        self.flush_interval = flush_interval
        self.queue: deque[tuple[Any, ...]] = deque()
        self.summary = summary or SummaryState()
        self.alerts = alerts  # rules fed each key's new points here, on this thread (expertrack.alerts)
        self.errors = 0
        # the bound: Run counts points into logged_points (under its lock) and checks it against settled_points,
        # which only this thread raises, once they are committed or given up; each counter has one writer
        self.max_queued_points = max_queued_points
        self.logged_points = 0
        self.settled_points = 0
        self.dropped_points = 0
        self.before_flush: Callable[[], None] | None = None  # Run.publish: an open row is written within a flush
        # the stream (expertrack.stream, issue 14): records taken from the queue are kept in ``tap`` and handed to
        # ``after_commit`` once their flush has committed; None (the default) costs nothing
        self.tap: list[tuple[Any, ...]] | None = None
        self.after_commit: Callable[[list[tuple[Any, ...]]], None] | None = None
        self._absorbed = 0  # points absorbed and not yet committed
        self._series: dict[str, SeriesBuffer] = {}
        self._key_ids: dict[str, int] = {}
        self._misc: list[tuple[Any, ...]] = []  # config, files, end: written in order, kept until committed
        self._pieces: list[Piece] = []  # encoded, waiting for a transaction that commits
        self._piece_seqs: list[int] = []  # this writer's pieces in the store, deleted when it seals
        self._unsealed_points = 0
        self._flushes_since_seal = 0
        self._last_ok = True
        self._busy_since: float | None = None  # when the store was first found locked by another process
        self._busy_timeout_ms = -1
        self._summary_dirty = False
        self._last_write = 0.0
        self._row_written = 0.0
        self._row_requested = False  # this flush was asked for (flush(), finish()): the run's row is written too
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._requested = 0
        self._completed = 0
        self._succeeded = 0  # the last ticket whose flush stored everything
        self._stopping = False
        self._close_deadline = 0.0
        self.deleted = False  # the run's row was deleted from the store: nothing more is stored
        self._thread = threading.Thread(target=self._loop, name="expertrack-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def drop(self, points: int) -> None:
        """Count ``points`` that ``log()`` could not queue (the bound is reached); said once (call under the run's
        lock)."""
        self.dropped_points += points
        self.notifier.once(
            "dropped",
            f"the store {self.store.path} is not keeping up: {self.max_queued_points:,} points are waiting to be "
            "written, so new points are dropped (counted, stored with the run as dropped_points; raise the "
            "bound with EXPERTRACK_MAX_QUEUED_POINTS); training goes on",
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Ask for a flush and wait until it has stored everything queued before the call (True); False when
        ``timeout`` passed first, the flush failed (the store is locked, the disk full), or the thread is dead."""
        with self._done:
            self._requested += 1
            ticket = self._requested
        self._wake.set()
        with self._done:
            self._done.wait_for(lambda: self._completed >= ticket or not self._thread.is_alive(), timeout)
            return self._succeeded >= ticket

    def close(self, timeout: float) -> bool:
        """Write everything queued, stop the thread, close the store; False if ``timeout`` passed first.

        A last flush that fails is retried a few times, within ``timeout``.
        """
        self._close_deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self.alerts is not None:
            self.alerts.close()
        if self._thread.is_alive():
            return False
        self.store.close()
        return True

    def unwritten_points(self) -> int:
        """Points logged and not in the store: still queued, or absorbed and not committed."""
        queued = sum(len(r[3]) for r in list(self.queue) if r[0] == "m")
        return queued + self._absorbed

    # ---- the thread ---------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        next_flush = time.monotonic() + self.flush_interval  # counted from the start: the environment takes time
        if self._environment is not None:
            try:
                self.queue.appendleft(("environment", self._environment()))
            except Exception as exc:  # outer boundary: the environment is nice to have, never worth a crash
                self.notifier.once("environment", f"could not record the environment: {exc}")
        while True:
            # a fixed cadence (not "interval after the last flush"), so slow flushes do not stretch the loss window
            self._wake.wait(max(0.0, next_flush - time.monotonic()))
            self._wake.clear()
            next_flush = max(next_flush + self.flush_interval, time.monotonic())
            stopping = self._stopping
            with self._done:
                ticket = self._requested
            # a requested flush (or the last) takes what is queued now; a cadence flush a time slice of it
            requested = stopping or ticket > self._completed
            self._row_requested = requested
            written = self._flush_once(len(self.queue) if requested else None)
            attempts = 1
            # the last chance to store this run: a few more tries while finish() waits (a store that stays
            # unwritable must not hold the process at exit for the whole deadline)
            while stopping and not written and attempts < CLOSE_ATTEMPTS and self._before_deadline():
                time.sleep(CLOSE_RETRY_S)
                written = self._flush_once(len(self.queue))
                attempts += 1
            with self._done:
                self._completed = max(self._completed, ticket)
                if written:
                    self._succeeded = max(self._succeeded, ticket)
                self._done.notify_all()
            if stopping:
                self._say_unwritten(written)
                return

    def _before_deadline(self) -> bool:
        return time.monotonic() + CLOSE_RETRY_S < self._close_deadline

    def _say_unwritten(self, written: bool) -> None:
        """At close: say what could not be stored, and the total of points dropped past the bound."""
        if not written:
            self.notifier.once(
                "unwritten",
                f"{self.unwritten_points():,} points of run {self.run_id} could not be stored in {self.store.path} "
                f"({self._last_error}); what was stored before is intact and readable",
            )
        if self.dropped_points:
            self.notifier.once(
                "dropped-total",
                f"run {self.run_id}: {self.dropped_points:,} points were dropped in all because the store did not "
                f"keep up (bound: {self.max_queued_points:,} points waiting)",
            )

    _last_error = "unknown error"

    def _flush_once(self, records: int | None) -> bool:
        """Absorb (``records`` of the queue, else a time slice) and write; True when everything absorbed is in
        the store (or was deliberately dropped)."""
        if self.deleted:
            self.queue.clear()  # the run is gone from the store: logging stays cheap and memory does not grow
            self.settled_points = self.logged_points
            return True
        if self.before_flush is not None and not self._stopping:
            self.before_flush()  # an open row (log(step=N)) is written within the flush interval too
            if records is not None:
                records = len(self.queue)
        absorbed = True
        try:
            self._absorb(records)
        except Exception as exc:  # the outer boundary; what was absorbed before the failure is still written below
            self._report(exc)
            absorbed = False  # the records after the failing one are still queued, for the next attempt
        try:
            if self._needs_write():
                self._wait_for_lock_at_most(BUSY_TIMEOUT_S if self._row_requested else self.flush_interval)
                self._write()
            self._last_ok = True
            self._busy_since = None
            return absorbed
        except RunDeletedError:
            self._drop_deleted_run()
            return True
        except Exception as exc:  # the tracker's outer boundary: never raise into training (DESIGN.md rule 1)
            self._last_ok = False
            self._report(exc)
            return False

    def _wait_for_lock_at_most(self, seconds: float) -> None:
        """How long a write waits for another process's write lock. A cadence flush waits one interval and
        tries again at the next, so that while the lock is held it goes on moving the queue into compact buffers
        (48 bytes a point instead of ~130 as log()'s dicts); flush() and the last flush wait the full 30 s."""
        ms = int(seconds * 1000)
        if ms != self._busy_timeout_ms:
            self.store.conn.execute(f"PRAGMA busy_timeout = {ms}")
            self._busy_timeout_ms = ms

    def _report(self, exc: Exception) -> None:
        if _is_busy(exc):
            # another process holds the write lock: silent while that is ordinary contention, said once it has
            # lasted as long as any single wait would (the store's busy timeout)
            now = time.monotonic()
            self._busy_since = self._busy_since or now
            held = now - self._busy_since
            if held < BUSY_TIMEOUT_S and not self._row_requested:
                return
            exc = sqlite3.OperationalError(f"{exc}: another process has held the write lock for {held:.0f} s")
        self.errors += 1
        if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL:
            self._last_error = f"disk full: {exc}"
            self.notifier.once(
                "disk-full",
                f"disk full: could not write to {self.store.path} ({exc}); {self.unwritten_points():,} points of "
                f"run {self.run_id} are kept in memory (up to {self.max_queued_points:,}) and retried at each "
                "flush; what was stored before is intact and readable",
            )
            return
        self._last_error = f"{type(exc).__name__}: {exc}"
        self.notifier.once(
            f"write-error:{type(exc).__name__}",
            f"could not write to {self.store.path} ({type(exc).__name__}: {exc}); "
            "records are kept in memory and retried at each flush",
        )

    def _drop_deleted_run(self) -> None:
        self.deleted = True
        self.notifier.once(
            "run-deleted",
            f"run {self.run_id} was deleted from the store {self.store.path} while it was running; "
            "nothing more is stored for it (training goes on)",
        )
        self.queue.clear()
        self._series.clear()
        self._key_ids.clear()
        self._misc.clear()
        self._pieces.clear()
        self._piece_seqs.clear()
        self._absorbed = 0
        self.settled_points = self.logged_points
        self._summary_dirty = False

    def _absorb(self, records: int | None) -> None:
        """Move queued records into series buffers and the misc list (memory only; cannot lose data): ``records``
        of them, or (None) what the queue holds for at most half a flush interval, so the commit comes on time."""
        queue = self.queue
        deadline = time.monotonic() + self.flush_interval / 2
        budget = len(queue) if records is None else records
        touched: dict[str, int] = {}  # key -> index of its first new point in the series buffer
        ongoing: dict[str, SeriesBuffer] = {}  # the series in ``touched``
        tap = self.tap
        while budget > 0 and queue:
            budget -= 1
            if records is None and budget % 64 == 0 and time.monotonic() > deadline:
                break
            record = queue.popleft()
            if tap is not None:
                tap.append(record)
            if record[0] == "m":
                _, step, t, values = record
                self._absorbed += len(values)
                plain = not self.summary.overrides
                for key, value in values.items():
                    # the common case inline (about 3x faster): a float for a key that already has a fresh point
                    # in this absorb, at a new step, with no summary override to forget
                    fast = ongoing.get(key) if plain and type(value) is float else None
                    if fast is not None and fast.steps[-1] != step:
                        fast.steps.append(step)
                        fast.times.append(t)
                        fast.values.append(value)
                        self._unsealed_points += 1
                        continue
                    try:
                        self._absorb_value(key, step, t, value, touched, ongoing)
                    except (ArithmeticError, TypeError, ValueError) as exc:  # one bad value costs only itself
                        self.notifier.once(
                            f"bad-value:{key}",
                            f"log(): could not store the value for {key!r} at step {step} "
                            f"({type(exc).__name__}: {exc}); that value was skipped (other values were stored)",
                        )
            else:
                self._misc.append(record)
                if record[0] == "defs":
                    self.summary.set_defs(record[1])
                    self._summary_dirty = True
                elif record[0] == "summary":
                    if len(record) == 3:  # run.summary[key] = value, in order with the values logged around it
                        self.summary.set_override(record[1], record[2])
                    self._summary_dirty = True
        if touched:
            import numpy as np

            for key, start in touched.items():
                # each key's new points of this flush (the shape alerts hook into); a copied slice: a NumPy view
                # would pin the array's buffer and block later appends
                series = self._series[key]
                values = np.frombuffer(series.values[start:], dtype=np.float64)
                self.summary.update(key, values)
                if self.alerts is not None:
                    self.alerts.scalars(key, series.steps[start:], values)
            self._summary_dirty = True
        if self.alerts is not None:
            self.alerts.tick()
            self._misc.extend(("alert", alert) for alert in self.alerts.take())

    def _absorb_value(
        self, key: str, step: int, t: float, value: Any, touched: dict[str, int], ongoing: dict[str, SeriesBuffer]
    ) -> None:
        kind = type(value)
        if kind is int:
            value = float(value)  # OverflowError past 1.8e308: reported by the caller, before any buffer changes
        elif kind is not float:
            value = self._materialise(key, value)
            if value is None:
                return
            if not isinstance(value, float):
                self._misc.append(("array", key, step, t, value))
                if self.alerts is not None:
                    self.alerts.array(key, step, value)
                self._logged_again(key)
                return
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key)
            if series is None:
                return
        if key not in touched:
            # a value at the buffer's last fresh step replaces that point: the summary must see it too
            repeated = series.fresh > 0 and series.steps[-1] == step
            touched[key] = len(series.values) - repeated
            ongoing[key] = series
        before = len(series.steps)
        series.append(step, t, value)
        self._unsealed_points += len(series.steps) - before
        self._logged_again(key)

    def _logged_again(self, key: str) -> None:
        if self.summary.overrides and key in self.summary.overrides:  # rarely true: one lookup per value at most
            self.summary.forget_override(key)
            self._summary_dirty = True

    def _materialise(self, key: str, value: Any) -> Any:
        """Tensors become floats or NumPy arrays here, off the training thread; NumPy arrays pass through."""
        if type(value).__module__.startswith("torch"):
            try:
                if value.ndim == 0:
                    return float(value.item())
                return value.cpu().float().numpy() if value.is_floating_point() else value.cpu().numpy()
            except (RuntimeError, TypeError, ValueError) as exc:
                self.notifier.once(f"tensor:{key}", f"could not read tensor for {key!r}: {exc}; not stored")
                return None
        return value

    def _new_series(self, key: str) -> SeriesBuffer | None:
        """A buffer for a new key, or None (reported once) when the key cannot be stored.

        Its database id is resolved inside the next write transaction, so nothing here touches the store.
        """
        if not check_key(key, self.notifier):
            return None
        if len(self._series) >= MAX_KEYS_PER_RUN:
            self.notifier.once(
                "too-many-keys",
                f"run has {MAX_KEYS_PER_RUN} metric keys; new keys such as "
                f"{key!r} are not stored (log vectors as arrays instead)",
            )
            return None
        series = self._series[key] = SeriesBuffer(key)
        return series

    def _key_id(self, conn: Any, key: str) -> int:
        """The key's id, creating the row if needed; call inside a transaction."""
        key_id = self._key_ids.get(key)
        if key_id is None:
            rank = self.rank or 0
            conn.execute("INSERT OR IGNORE INTO keys (run_id, name, rank) VALUES (?, ?, ?)", (self.run_id, key, rank))
            key_id = conn.execute(
                "SELECT id FROM keys WHERE run_id = ? AND name = ? AND rank = ?", (self.run_id, key, rank)
            ).fetchone()[0]
            self._key_ids[key] = key_id
        return int(key_id)

    def _needs_write(self) -> bool:
        dirty = bool(self._misc or self._summary_dirty or self._pieces or self._absorbed)
        dirty = dirty or (self._stopping and bool(self._piece_seqs))
        return dirty or time.time() - self._last_write > IDLE_HEARTBEAT_S

    def _plan(self) -> bool:
        """Encode this flush's new points into a piece, or decide to seal (True): at close, after
        ``SEAL_FLUSHES`` pieces or ``SEAL_POINTS`` points, and only when the last write worked (a seal encodes
        every unsealed point, which must not be repeated at each flush while the store is unwritable)."""
        due = self._stopping or self._flushes_since_seal >= SEAL_FLUSHES or self._unsealed_points >= SEAL_POINTS
        if due and (self._last_ok or self._stopping) and self._unsealed_points:
            return True
        fresh = [s for s in self._series.values() if s.fresh]
        if fresh:
            self._pieces.append(Piece.from_fresh(fresh))
            self._flushes_since_seal += 1
        return False

    def _write(self) -> None:
        seal = self._plan()
        known_keys = set(self._key_ids)
        series = [s for s in self._series.values() if s.steps] if seal else [s for p in self._pieces for s in p.series]
        now = time.time()
        try:
            with self.store.transaction() as conn:
                # first, so that a run deleted meanwhile is recognised before an insert fails on its foreign key
                row_due = self._row_update(conn, now, seal)
                for buffer in series:
                    if buffer.key_id < 0:
                        buffer.key_id = self._key_id(conn, buffer.name)
                seqs = self._seal(conn, series) if seal else self._insert_pieces(conn)
                for record in self._misc:
                    self._write_misc(conn, record)
        except BaseException:
            # rolled back: forget ids created inside the transaction so the retry creates them again
            for key in set(self._key_ids) - known_keys:
                del self._key_ids[key]
                if key in self._series:
                    self._series[key].key_id = -1
            raise
        self._committed(seal, seqs)
        if row_due:
            self._summary_dirty = False
            self._row_written = now
        self._last_write = now

    def _row_update(self, conn: Any, now: float, seal: bool) -> bool:
        """Rewrite the run's row when due (returns whether it did); ``RunDeletedError`` when the row is gone."""
        due = self._row_requested or bool(self._misc) or seal or now - self._row_written >= ROW_UPDATE_S
        if due and self.rank is not None:
            conn.execute(
                "UPDATE run_ranks SET heartbeat_at = ?, dropped_points = ? WHERE run_id = ? AND rank = ?",
                (now, self.dropped_points, self.run_id, self.rank),
            )
            if not self.owns_run:  # a placeholder row (rank 0 not here yet, or on another node) lives while we do
                conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ? AND pid IS NULL", (now, self.run_id))
        if due and self.owns_run:
            summary = json.dumps(self.summary.snapshot()) if self._summary_dirty else None
            found = conn.execute(
                "UPDATE runs SET summary = COALESCE(?, summary), heartbeat_at = ?, dropped_points = ? WHERE id = ?",
                (summary, now, self.dropped_points, self.run_id),
            ).rowcount
        else:
            found = conn.execute("SELECT COUNT(*) FROM runs WHERE id = ?", (self.run_id,)).fetchone()[0]
        if not found:
            raise RunDeletedError(self.run_id)
        return due

    def _seal(self, conn: Any, series: list[SeriesBuffer]) -> list[int]:
        """Every unsealed point as chunks, and this writer's pieces deleted, in one transaction."""
        for buffer in series:
            for row in buffer.chunk_rows():  # each chunk with its level (store/levels.py), under its seq
                seq = conn.execute(INSERT_CHUNK + " RETURNING seq", (buffer.key_id, *row)).fetchone()[0]
                conn.execute(INSERT_LEVEL, (buffer.key_id, seq, *row[:3], *level_row(row[3], row[5])))
        if self._piece_seqs:
            conn.executemany(
                "DELETE FROM scalar_pieces WHERE run_id = ? AND seq = ?", [(self.run_id, q) for q in self._piece_seqs]
            )
        return []

    def _insert_pieces(self, conn: Any) -> list[int]:
        return [conn.execute(INSERT_PIECE, piece.row(self.run_id)).fetchone()[0] for piece in self._pieces]

    def _committed(self, sealed: bool, seqs: list[int]) -> None:
        """The transaction committed: advance past what it held."""
        if sealed:
            for buffer in self._series.values():
                buffer.sealed()
            self._piece_seqs.clear()
            self._unsealed_points = 0
            self._flushes_since_seal = 0
        else:
            self._piece_seqs.extend(seqs)
        self._pieces.clear()
        self._misc.clear()
        self.settled_points += self._absorbed
        self._absorbed = 0
        if self.after_commit is not None and self.tap:
            tapped, self.tap = self.tap, []
            self.after_commit(tapped)

    def _write_misc(self, conn: Any, record: tuple[Any, ...]) -> None:
        kind = record[0]
        if not self.owns_run and kind in ("config", "defs", "environment", "end"):
            if kind == "end":  # another rank's end is its own: the run ends with rank 0
                self._end_rank(conn, record)
            return  # rank 0 owns the run's config, metric definitions and environment
        if kind == "end" and self.rank is not None:
            self._end_rank(conn, record)
        if kind == "array":
            _, key, step, t, array = record
            if check_key(key, self.notifier):
                insert_array(conn, self._key_id(conn, key), step, t, array)
        elif kind == "alert":
            insert_alerts(conn, self.run_id, [record[1]])
        elif kind == "config":
            conn.execute("UPDATE runs SET config = ? WHERE id = ?", (record[1], self.run_id))
        elif kind == "defs":
            conn.execute("UPDATE runs SET metric_defs = ? WHERE id = ?", (json.dumps(record[1]), self.run_id))
        elif kind == "summary":
            pass  # overrides live in self.summary; the snapshot written with the heartbeat includes them
        elif kind == "environment":
            conn.execute("UPDATE runs SET environment = ? WHERE id = ?", (record[1], self.run_id))
        elif kind == "file":
            _, name, data, replace = record
            if replace:
                conn.execute("DELETE FROM files WHERE run_id = ? AND name = ?", (self.run_id, name))
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM files WHERE run_id = ? AND name = ?",
                (self.run_id, name),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO files (run_id, name, seq, created_at, size, data) VALUES (?, ?, ?, ?, ?, ?)",
                (self.run_id, name, seq, time.time(), len(data), zlib.compress(data, 6)),
            )
        elif kind == "end":
            _, state, exit_code, signal, ended_at = record
            conn.execute(
                "UPDATE runs SET state = ?, exit_code = ?, exit_signal = ?, ended_at = ? WHERE id = ?",
                (state, exit_code, signal, ended_at, self.run_id),
            )

    def _end_rank(self, conn: Any, record: tuple[Any, ...]) -> None:
        """This rank's own end, in its run_ranks row (ranks="all"). A placeholder run row (rank 0 never came to
        this store: another node's) ends with the last of this store's ranks, so it does not read as crashed."""
        _, state, exit_code, _signal, ended_at = record
        conn.execute(
            "UPDATE run_ranks SET state = ?, exit_code = ?, ended_at = ?, heartbeat_at = ?"
            " WHERE run_id = ? AND rank = ?",
            (state, exit_code, ended_at, ended_at, self.run_id, self.rank),
        )
        if not self.owns_run:
            conn.execute(
                "UPDATE runs SET state = ?, exit_code = ?, ended_at = ? WHERE id = ? AND pid IS NULL AND NOT EXISTS"
                " (SELECT 1 FROM run_ranks WHERE run_id = ? AND state = 'running' AND rank != ?)",
                (state, exit_code, ended_at, self.run_id, self.run_id, self.rank),
            )
