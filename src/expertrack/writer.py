"""The background writer: moves the run's queue into the store, one transaction per flush (DESIGN.md rule 1).

``Run.log()`` only appends records (expertrack.records) to ``Writer.queue``; this thread turns them into pieces
and chunks of scalar points (see store/chunks.py), arrays, files and summary updates, hands each flush to the
store as one ``Batch`` (``Store.write_batch``, one transaction), and commits on a fixed cadence of
``flush_interval`` and on request. It knows no SQL: threading, queueing, batching and when to seal are its part.

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
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from expertrack.errors import RunDeletedError
from expertrack.notify import Notifier
from expertrack.records import (
    AlertFired,
    ArrayPoint,
    Batch,
    Environment,
    MetricDefs,
    Record,
    Row,
    RunUpdate,
    SummaryDeleted,
    SummarySet,
)
from expertrack.store.chunks import SEAL_FLUSHES, SEAL_POINTS, Piece, SeriesBuffer
from expertrack.store.interface import Store
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
__all__ = ["RunDeletedError", "Writer", "queue_bound"]


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
        self.queue: deque[Row | Record] = deque()
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
        self.tap: list[Row | Record] | None = None
        self.after_commit: Callable[[list[Row | Record]], None] | None = None
        self._absorbed = 0  # points absorbed and not yet committed
        self._series: dict[str, SeriesBuffer] = {}
        self._key_ids: dict[str, int] = {}
        self._misc: list[Record] = []  # config, files, end: written in order, kept until committed
        self._pieces: list[Piece] = []  # encoded, waiting for a transaction that commits
        self._piece_seqs: list[int] = []  # this writer's pieces in the store, deleted when it seals
        self._unsealed_points = 0
        self._flushes_since_seal = 0
        self._last_ok = True
        self._busy_since: float | None = None  # when the store was first found locked by another process
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
        queued = sum(len(r.values) for r in list(self.queue) if type(r) is Row)
        return queued + self._absorbed

    # ---- the thread ---------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        next_flush = time.monotonic() + self.flush_interval  # counted from the start: the environment takes time
        if self._environment is not None:
            try:
                self.queue.appendleft(Environment(self._environment()))
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
                self._wait_for_lock_at_most(self.store.lock_wait_s if self._row_requested else self.flush_interval)
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
        self.store.set_lock_wait(seconds)

    def _report(self, exc: Exception) -> None:
        if self.store.is_busy(exc):
            # another process holds the write lock: silent while that is ordinary contention, said once it has
            # lasted as long as any single wait would (the store's busy timeout)
            now = time.monotonic()
            self._busy_since = self._busy_since or now
            held = now - self._busy_since
            if held < self.store.lock_wait_s and not self._row_requested:
                return
            exc = type(exc)(f"{exc}: another process has held the write lock for {held:.0f} s")
        self.errors += 1
        if self.store.is_disk_full(exc):
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
            if type(record) is Row:
                step, t, values = record.step, record.time, record.values
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
                assert not isinstance(record, Row)
                self._misc.append(record)
                if isinstance(record, MetricDefs):
                    self.summary.set_defs(record.defs)
                    self._summary_dirty = True
                elif isinstance(record, SummarySet):  # in order with the values logged around it
                    self.summary.set_override(record.key, record.value)
                    self._summary_dirty = True
                elif isinstance(record, SummaryDeleted):
                    self._summary_dirty = True
        if touched:
            import numpy as np

            for key, start in touched.items():
                # each key's new points of this flush (the shape alerts hook into); a copied slice: a NumPy view
                # would pin the array's buffer and block later appends
                series = self._series[key]
                new_values = np.frombuffer(series.values[start:], dtype=np.float64)
                self.summary.update(key, new_values)
                if self.alerts is not None:
                    self.alerts.scalars(key, series.steps[start:], new_values)
            self._summary_dirty = True
        if self.alerts is not None:
            self.alerts.tick()
            self._misc.extend(AlertFired(alert) for alert in self.alerts.take())

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
                if not check_key(key, self.notifier):
                    return
                self._misc.append(ArrayPoint(key, step, t, value))
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
        series = [s for s in self._series.values() if s.steps] if seal else [s for p in self._pieces for s in p.series]
        now = time.time()
        # the run's row is rewritten when asked, with records or a seal, and every ROW_UPDATE_S otherwise
        row_due = self._row_requested or bool(self._misc) or seal or now - self._row_written >= ROW_UPDATE_S
        update = None
        if row_due:
            summary = json.dumps(self.summary.snapshot()) if self._summary_dirty and self.owns_run else None
            update = RunUpdate(now, self.dropped_points, summary)
        batch = Batch(
            run_id=self.run_id,
            rank=self.rank,
            update=update,
            series=series,
            key_ids=self._key_ids,
            pieces=[] if seal else self._pieces,
            seal=seal,
            sealed_pieces=self._piece_seqs if seal else [],
            records=self._misc,
        )
        seqs = self.store.write_batch(batch)
        self._committed(seal, seqs)
        if row_due:
            self._summary_dirty = False
            self._row_written = now
        self._last_write = now

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
