"""The SQLite store: connecting, pragmas, WAL, migrations, read-only and immutable opening (reads: ``store/sql.py``).

One file per tracking directory, in WAL mode so readers (the dashboard, ``expertrack ls``) never block the writer
and several processes can log their own runs at once. ``synchronous=NORMAL`` with WAL survives a killed process
(``kill -9``) without corruption or loss of committed transactions; only a power cut can lose the last commits.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from expertrack.errors import StoreError
from expertrack.store.sql import (  # noqa: F401 - the records' historical home: importers keep working
    STALE_HEARTBEAT_S,
    ArrayOverview,
    RankRecord,
    RunRecord,
    ScalarOverview,
    SqlStore,
)
from expertrack.store.sqlite_schema import LATEST_VERSION, migrate
from expertrack.store.sqlite_writes import SqliteWrites

BUSY_TIMEOUT_S = 30.0
READ_MMAP_BYTES = 1 << 30  # readers map the file: pages come from the OS cache, ~2-3x faster long reads


def _read_only_mount(directory: Path) -> bool:
    """Whether ``directory`` lies on a file system mounted read-only (``os.access`` does not say so for root)."""
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


class SQLiteStore(SqliteWrites, SqlStore):
    """An open store file. ``SQLiteStore(path)`` creates and migrates it; ``SQLiteStore(path, readonly=True)`` only
    reads. ``Store`` is the same class (its former name)."""

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False) -> None:
        self.path = Path(path) if str(path) != ":memory:" else Path(":memory:")
        self.location = str(self.path)
        self.readonly = readonly
        self.version = 0  # the schema version, once opened; its features are the layout (store/sql.py)
        try:
            if readonly:
                if not self.path.exists():
                    raise StoreError(f"no store at {self.path}")
                self.conn = self._connect_readonly()
            else:
                if str(path) != ":memory:":
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(
                    str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
                )
            self._setup()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable expertrack store: {exc}") from exc

    def _connect_readonly(self) -> sqlite3.Connection:
        """A read-only connection. A WAL store needs its ``-shm`` file, which SQLite creates beside the store, so
        in a directory nobody may write to (an archive, a read-only mount) the store is opened as immutable:
        nothing can change it there anyway."""

        def connect(flags: str) -> sqlite3.Connection:
            conn = sqlite3.connect(
                f"file:{self.path}?{flags}", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opening is lazy: fail here, not later
            return conn

        try:
            return connect("mode=ro")
        except sqlite3.OperationalError:
            if os.access(self.path.parent, os.W_OK) and not _read_only_mount(self.path.parent):
                raise
            return connect("mode=ro&immutable=1")

    def _setup(self) -> None:
        self.conn.execute("PRAGMA foreign_keys = ON")
        if self.readonly:
            self.conn.execute(f"PRAGMA mmap_size = {READ_MMAP_BYTES}").fetchall()
        # Readers and writers refuse the same files, before anything is changed: a writer must not switch
        # another program's database to WAL, add tables to it, or write rows a newer schema would misread.
        self.version = self._check_usable()
        if self.readonly:
            if 0 < self.version < LATEST_VERSION:
                self._upgrade_for_reading()
        else:
            self._enable_wal()
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.version = migrate(self.conn, self._check_ours)
            self._check_ours()
        self.layout = self.version
        self._columns_for_layout()

    def _upgrade_for_reading(self) -> None:
        """Readers of a store an older expertrack wrote bring it to this schema first (the migrations keep every
        record; see docs/storage.md), through a short writable connection; where the file cannot be written
        (an archive, a read-only mount), a ``StoreError`` says what to do instead of misreading it."""
        old = self.version
        try:
            SQLiteStore(self.path).close()
        except (StoreError, OSError) as exc:
            self.conn.close()
            raise StoreError(
                f"{self.path} has schema {old}, older than this expertrack's {LATEST_VERSION}, and cannot be "
                f"upgraded here ({exc}); copy it somewhere writable and open it there once"
            ) from exc
        self.conn.close()
        self.conn = self._connect_readonly()
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute(f"PRAGMA mmap_size = {READ_MMAP_BYTES}").fetchall()
        self.version = self._check_usable()

    def _check_usable(self) -> int:
        """The file's schema version; ``StoreError`` naming the file when it comes from a newer expertrack or is
        another program's SQLite database (tables, but not ours)."""
        # one statement, so the version and the tables come from the same snapshot of a store being created
        version, tables = self.conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT COUNT(*) FROM sqlite_master)"
        ).fetchone()
        if version > LATEST_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer expertrack (schema {version}; this one knows up to "
                f"{LATEST_VERSION}): upgrade expertrack to use it"
            )
        if version or tables:
            self._check_ours()
        return int(version)

    def _check_ours(self) -> None:
        """``StoreError`` for an SQLite file that has tables or a schema version but not expertrack's tables."""
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(runs)")}
        if not {"id", "project", "state", "created_at"} <= columns:
            raise StoreError(f"{self.path} is an SQLite database, but not an expertrack store (no runs table of ours)")

    def _enable_wal(self) -> None:
        """Switch to WAL, waiting for other processes: on a new file that several processes open at once (a
        sweep's seeds started together), SQLite answers "database is locked" at once, without its busy wait."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL").fetchall()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def transaction(self) -> _Transaction:
        """A ``BEGIN IMMEDIATE`` ... ``COMMIT`` block (rolled back on error)."""
        return _Transaction(self.conn)

    def __enter__(self) -> SQLiteStore:
        return self


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; on an error, or a COMMIT that fails (a full disk), ``ROLLBACK``.

    A failed COMMIT can leave the transaction open, and then every later ``BEGIN`` fails; rolling back lets the
    next flush start afresh. The ROLLBACK's own error (SQLite may already have rolled back: "no transaction is
    active") never replaces the error that caused it.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the error that brought us here is the one to report
