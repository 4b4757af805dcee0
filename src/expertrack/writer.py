"""The background writer: drains the run's queue into the store, one transaction per flush (DESIGN.md rule 1).

``Run.log()`` only appends tuples to ``Writer.queue``; this thread turns them into chunk rows, arrays, files and
summary updates at least once per ``flush_interval`` and on request. Failures are counted and reported once; the
batch stays in memory and is written by the next flush, so a locked or briefly unwritable store loses nothing.
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
from expertrack.summary import SummaryState
from expertrack.values import check_key

FLUSH_INTERVAL_S = 0.5  # half the 1 s loss bound DESIGN.md promises, so a flush in progress still meets it
IDLE_HEARTBEAT_S = 10.0
MAX_KEYS_PER_RUN = 100_000


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
        """Write everything queued, stop the thread, close the store; False if ``timeout`` passed first."""
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
            self._flush_once()
            with self._done:
                self._completed = max(self._completed, ticket)
                self._done.notify_all()
            if stopping:
                return

    def _flush_once(self) -> None:
        try:
            self._absorb()
            if self._needs_write():
                self._write()
        except Exception as exc:  # the tracker's outer boundary: never raise into training (DESIGN.md rule 1)
            self.errors += 1
            self.notifier.once(
                f"write-error:{type(exc).__name__}",
                f"could not write to {self.store.path} ({type(exc).__name__}: {exc}); "
                "records are kept in memory and retried every second",
            )

    def _absorb(self) -> None:
        """Move queued records into series buffers and the misc list (memory only; cannot lose data)."""
        queue = self.queue
        touched: dict[str, int] = {}  # key -> index of its first new point in the series buffer
        while queue:
            record = queue.popleft()
            if record[0] == "m":
                _, step, t, values = record
                for key, value in values.items():
                    self._absorb_value(key, step, t, value, touched)
            else:
                self._misc.append(record)
                if record[0] == "defs":
                    self.summary.set_defs(record[1])
                    self._summary_dirty = True
                elif record[0] == "summary":
                    self._summary_dirty = True
        if touched:
            import numpy as np

            for key, start in touched.items():
                # a copied slice: a NumPy view would pin the array's buffer and block later appends
                self.summary.update(key, np.frombuffer(self._series[key].values[start:], dtype=np.float64))
            self._summary_dirty = True

    def _absorb_value(self, key: str, step: int, t: float, value: Any, touched: dict[str, int]) -> None:
        kind = type(value)
        if kind is not float and kind is not int:
            value = self._materialise(key, value)
            if value is None:
                return
            if not isinstance(value, float):
                self._misc.append(("array", key, step, t, value))
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
        series.append(step, t, float(value))

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
                summary = json.dumps(self.summary.snapshot()) if self._summary_dirty else None
                conn.execute(
                    "UPDATE runs SET summary = COALESCE(?, summary), heartbeat_at = ? WHERE id = ?",
                    (summary, now, self.run_id),
                )
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
                conn.execute(
                    "INSERT OR REPLACE INTO arrays (key_id, step, time, dtype, shape, data) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        self._key_id(conn, key),
                        step,
                        t,
                        array.dtype.str,
                        json.dumps(list(array.shape)),
                        array.tobytes(),
                    ),
                )
        elif kind == "config":
            conn.execute("UPDATE runs SET config = ? WHERE id = ?", (record[1], self.run_id))
        elif kind == "defs":
            conn.execute("UPDATE runs SET metric_defs = ? WHERE id = ?", (json.dumps(record[1]), self.run_id))
        elif kind == "summary":
            pass  # overrides live in self.summary; the snapshot written below includes them
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
