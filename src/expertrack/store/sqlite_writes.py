"""What only SQLite knows on the write side: its lock wait and its error codes, behind engine-neutral names.

The writer asks ``store.is_busy(exc)`` and ``store.is_disk_full(exc)`` and calls ``store.set_lock_wait(s)``, so
it never imports sqlite3; a PostgreSQL store answers the same questions its own way.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from expertrack.store.writes import StoreWrites

SQLITE_BUSY = 5
SQLITE_FULL = 13


class SqliteWrites(StoreWrites):
    """``StoreWrites`` with SQLite's answers to the writer's questions (mixed into store/sqlite.py's ``Store``)."""

    conn: Any
    _lock_wait_ms = -1

    @property
    def lock_wait_s(self) -> float:
        """The longest one write waits for another process's write lock (the connection's busy timeout)."""
        from expertrack.store.sqlite import BUSY_TIMEOUT_S

        return BUSY_TIMEOUT_S

    def set_lock_wait(self, seconds: float) -> None:
        """How long the next writes wait for another process's write lock before failing as busy."""
        ms = int(seconds * 1000)
        if ms != self._lock_wait_ms:
            self.conn.execute(f"PRAGMA busy_timeout = {ms}")
            self._lock_wait_ms = ms

    def is_busy(self, exc: BaseException) -> bool:
        """Whether ``exc`` is "database is locked": another process holds the write lock (ordinary contention)."""
        if not isinstance(exc, sqlite3.OperationalError):
            return False
        code = getattr(exc, "sqlite_errorcode", None)
        return code == SQLITE_BUSY if code is not None else "database is locked" in str(exc)

    def is_disk_full(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the disk (or the store's size limit) is full."""
        return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL
