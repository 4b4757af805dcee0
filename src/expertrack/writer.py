"""The background writer: drains the run's queue into the store, one transaction per flush (DESIGN.md rule 1).

``Run.log()`` only appends tuples to ``Writer.queue``; this thread turns them into chunk rows, arrays, files and
summary updates at least once per ``flush_interval`` and on request. Failures are counted and reported once; the
batch stays in memory and is written by the next flush, so a locked or briefly unwritable store loses nothing. A
value that cannot be stored (an int too large for a float) is reported and skipped on its own, never costing the
records around it. A run whose row was deleted while it trained (``expertrack rm``) is said once and dropped: what
it logs afterwards is discarded at each flush, so its memory does not grow.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

from expertrack.notify import Notifier
from expertrack.store import Store
from expertrack.store.chunks import INSERT_CHUNK, SeriesBuffer
from expertrack.store.sqlite import insert_array
from expertrack.summary import SummaryState
from expertrack.values import check_key

FLUSH_INTERVAL_S = 0.5  # half the 1 s loss bound DESIGN.md promises, so a flush in progress still meets it
IDLE_HEARTBEAT_S = 10.0
MAX_KEYS_PER_RUN = 100_000
CLOSE_ATTEMPTS = 5  # of the last flush, at close
CLOSE_RETRY_S = 0.2  # between them


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
    ) -> None:
        self.store = store
        self._environment = environment  # captured first thing on this thread, so even a short run records it
        self.run_id = run_id
        self.notifier = notifier
        self.flush_interval = flush_interval
        self.queue: deque[tuple[Any, ...]] = deque()
        self.summary = summary or SummaryState()
        self.errors = 0
        self._series: dict[str, SeriesBuffer] = {}
        self._key_ids: dict[str, int] = {}
        self._misc: list[tuple[Any, ...]] = []  # config, files, end: written in order, kept until committed
        self._summary_dirty = False
        self._last_write = 0.0
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._requested = 0
        self._completed = 0
        self._stopping = False
        self._close_deadline = 0.0
        self.deleted = False  # the run's row was deleted from the store: nothing more is stored
        self._thread = threading.Thread(target=self._loop, name="expertrack-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Ask for a flush and wait until it has run (True) or ``timeout`` passed (False)."""
        with self._done:
            self._requested += 1
            ticket = self._requested
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._completed >= ticket or not self._thread.is_alive(), timeout)

    def close(self, timeout: float) -> bool:
        """Write everything queued, stop the thread, close the store; False if ``timeout`` passed first.

        A last flush that fails is retried a few times, within ``timeout``.
        """
        self._close_deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self.store.close()
        return True

    # ---- the thread ---------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        if self._environment is not None:
            try:
                self.queue.appendleft(("environment", self._environment()))
            except Exception as exc:  # outer boundary: the environment is nice to have, never worth a crash
                self.notifier.once("environment", f"could not record the environment: {exc}")
        next_flush = time.monotonic() + self.flush_interval
        while True:
            # a fixed cadence (not "interval after the last flush"), so slow flushes do not stretch the loss window
            self._wake.wait(max(0.0, next_flush - time.monotonic()))
            self._wake.clear()
            next_flush = max(next_flush + self.flush_interval, time.monotonic())
            stopping = self._stopping
            with self._done:
                ticket = self._requested
            written = self._flush_once()
            attempts = 1
            # the last chance to store this run: a few more tries while finish() waits (a store that stays
            # unwritable must not hold the process at exit for the whole deadline)
            while stopping and not written and attempts < CLOSE_ATTEMPTS and self._before_deadline():
                time.sleep(CLOSE_RETRY_S)
                written = self._flush_once()
                attempts += 1
            with self._done:
                self._completed = max(self._completed, ticket)
                self._done.notify_all()
            if stopping:
                return

    def _before_deadline(self) -> bool:
        return time.monotonic() + CLOSE_RETRY_S < self._close_deadline

    def _flush_once(self) -> bool:
        """Absorb the queue and write; True when everything absorbed is in the store (or was deliberately dropped)."""
        if self.deleted:
            self.queue.clear()  # the run is gone from the store: logging stays cheap and memory does not grow
            return True
        absorbed = True
        try:
            self._absorb()
        except Exception as exc:  # the outer boundary; what was absorbed before the failure is still written below
            self._report(exc)
            absorbed = False  # the records after the failing one are still queued, for the next attempt
        try:
            if self._needs_write():
                self._write()
            return absorbed
        except RunDeletedError:
            self._drop_deleted_run()
            return True
        except Exception as exc:  # the tracker's outer boundary: never raise into training (DESIGN.md rule 1)
            self._report(exc)
            return False

    def _report(self, exc: Exception) -> None:
        self.errors += 1
        self.notifier.once(
            f"write-error:{type(exc).__name__}",
            f"could not write to {self.store.path} ({type(exc).__name__}: {exc}); "
            "records are kept in memory and retried every second",
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
        self._summary_dirty = False

    def _absorb(self) -> None:
        """Move queued records into series buffers and the misc list (memory only; cannot lose data)."""
        queue = self.queue
        touched: dict[str, int] = {}  # key -> index of its first new point in the series buffer
        while queue:
            record = queue.popleft()
            if record[0] == "m":
                _, step, t, values = record
                for key, value in values.items():
                    try:
                        self._absorb_value(key, step, t, value, touched)
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
                # a copied slice: a NumPy view would pin the array's buffer and block later appends
                self.summary.update(key, np.frombuffer(self._series[key].values[start:], dtype=np.float64))
            self._summary_dirty = True

    def _absorb_value(self, key: str, step: int, t: float, value: Any, touched: dict[str, int]) -> None:
        kind = type(value)
        if kind is int:
            value = float(value)  # OverflowError past 1.8e308: reported by the caller, before any buffer changes
        elif kind is not float:
            value = self._materialise(key, value)
            if value is None:
                return
            if not isinstance(value, float):
                self._misc.append(("array", key, step, t, value))
                self._logged_again(key)
                return
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key)
            if series is None:
                return
        if key not in touched:
            # a value at the buffer's last step replaces that point: the summary must see it too
            repeated = bool(series.steps) and series.steps[-1] == step
            touched[key] = len(series.values) - repeated
        series.append(step, t, value)
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
        series = self._series[key] = SeriesBuffer(key_id=-1)
        return series

    def _key_id(self, conn: Any, key: str) -> int:
        """The key's id, creating the row if needed; call inside a transaction."""
        key_id = self._key_ids.get(key)
        if key_id is None:
            conn.execute("INSERT OR IGNORE INTO keys (run_id, name) VALUES (?, ?)", (self.run_id, key))
            key_id = conn.execute("SELECT id FROM keys WHERE run_id = ? AND name = ?", (self.run_id, key)).fetchone()[0]
            self._key_ids[key] = key_id
        return int(key_id)

    def _needs_write(self) -> bool:
        dirty = self._misc or self._summary_dirty or any(s.dirty for s in self._series.values())
        return bool(dirty) or time.time() - self._last_write > IDLE_HEARTBEAT_S

    def _write(self) -> None:
        dirty = [(key, s) for key, s in self._series.items() if s.dirty]
        known_keys = set(self._key_ids)
        now = time.time()
        try:
            with self.store.transaction() as conn:
                # first, so that a run deleted meanwhile is recognised before an insert fails on its foreign key
                summary = json.dumps(self.summary.snapshot()) if self._summary_dirty else None
                updated = conn.execute(
                    "UPDATE runs SET summary = COALESCE(?, summary), heartbeat_at = ? WHERE id = ?",
                    (summary, now, self.run_id),
                )
                if updated.rowcount == 0:
                    raise RunDeletedError(self.run_id)
                for key, series in dirty:
                    if series.key_id < 0:  # first write of this key: continue after any chunks already stored
                        series.key_id = self._key_id(conn, key)
                        series.seq = conn.execute(
                            "SELECT COALESCE(MAX(seq) + 1, 0) FROM scalar_chunks WHERE key_id = ?",
                            (series.key_id,),
                        ).fetchone()[0]
                    conn.executemany(INSERT_CHUNK, series.rows())
                for record in self._misc:
                    self._write_misc(conn, record)
        except BaseException:
            # rolled back: forget ids created inside the transaction so the retry creates them again
            for key in set(self._key_ids) - known_keys:
                del self._key_ids[key]
            for key, series in dirty:
                if key not in self._key_ids:
                    series.key_id = -1
            raise
        for _key, series in dirty:
            series.committed()
        self._misc.clear()
        self._summary_dirty = False
        self._last_write = now

    def _write_misc(self, conn: Any, record: tuple[Any, ...]) -> None:
        kind = record[0]
        if kind == "array":
            _, key, step, t, array = record
            if check_key(key, self.notifier):
                insert_array(conn, self._key_id(conn, key), step, t, array)
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
