"""The PostgreSQL store: one database on a server that many machines write to and many people read from.

``PostgresStore(url)`` connects with psycopg 3 (the ``postgres`` extra; imported here only), refuses what is not
an expertrack store, brings the schema to this expertrack's version (store/postgres_schema.py) and reads through
the same queries as SQLite (store/sql.py). Credentials come from the URL, libpq's environment variables
(``PGPASSWORD``, ``PGUSER``...) or ``~/.pgpass``; no message ever shows a password: the location is named by
``store.location.describe``, and psycopg's own error text is scrubbed of the password as well.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from expertrack.errors import StoreError
from expertrack.store.location import describe
from expertrack.store.postgres_schema import (
    LATEST_VERSION,
    MIGRATION_LOCK,
    MIGRATIONS,
    SQLITE_LAYOUT,
    VERSION_TABLE,
    statements,
)
from expertrack.store.sql import SqlStore
from expertrack.store.writes import StoreWrites

CONNECT_TIMEOUT_S = 10  # an unreachable server is said after this long (unless the URL sets connect_timeout)


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders (SQLite's, used by store/sql.py) as psycopg's ``%s``, a literal ``%`` doubled.

    The queries have no ``?`` inside string literals, so a plain replacement is exact."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """psycopg's connection behind the DB-API shape the shared reads use: ``execute(sql, params)`` with ``?``
    placeholders, answering a cursor (fetchone, fetchall, rowcount, iteration); ``executemany``; ``close``.

    Results come in PostgreSQL's binary format: ``bytea`` arrives as the stored bytes, not as hex text."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(to_pyformat(sql), tuple(params), binary=True)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cursor = self.raw.cursor()
        cursor.executemany(to_pyformat(sql), rows)
        return cursor

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)


class PostgresWrites(StoreWrites):
    """``StoreWrites`` with PostgreSQL's answers to the writer's questions (lock waits, contention, a full disk)."""

    conn: PgConnection
    _lock_wait_ms = -1

    @property
    def lock_wait_s(self) -> float:
        """The longest one write waits for a lock another session holds (``lock_timeout``; 0: no limit)."""
        return max(self._lock_wait_ms, 0) / 1000

    def set_lock_wait(self, seconds: float) -> None:
        """How long the next writes wait for another session's lock before failing as busy."""
        ms = int(seconds * 1000)
        if ms != self._lock_wait_ms:
            self.conn.execute(f"SET lock_timeout = {ms}")
            self._lock_wait_ms = ms

    def is_busy(self, exc: BaseException) -> bool:
        """Whether ``exc`` is ordinary contention: a lock wait that timed out, a deadlock or a serialization
        failure (the transaction can simply be tried again)."""
        return getattr(exc, "sqlstate", None) in {"55P03", "40P01", "40001"}

    def is_disk_full(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the server's disk is full (SQLSTATE 53100)."""
        return getattr(exc, "sqlstate", None) == "53100"


class PostgresStore(PostgresWrites, SqlStore):
    """An open PostgreSQL store. ``PostgresStore(url)`` creates the schema in an empty database;
    ``PostgresStore(url, readonly=True)`` never creates tables: in an empty database its ``version`` is 0 (no
    runs yet, as for a SQLite store being created; ``Api`` answers no runs)."""

    def __init__(self, url: str, readonly: bool = False) -> None:
        self.url = url
        self.location = describe(url)
        self.path = self.location  # what messages name (the interface's ``path``): never the password
        self.readonly = readonly
        self.version = 0
        self.conn = PgConnection(_connect(url, self.location))
        try:
            self.version = self._open()
        except BaseException:
            self.conn.close()
            raise
        self.layout = SQLITE_LAYOUT.get(self.version, 0)
        self._columns_for_layout()

    def __enter__(self) -> PostgresStore:
        return self

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        """One transaction (``BEGIN`` ... ``COMMIT``, rolled back on an error), answering the connection."""
        with self.conn.raw.transaction():
            yield self.conn

    def alive(self) -> bool:
        """Whether the connection still answers (one round trip): a kept reader checks it before reuse."""
        if self.conn.closed or self.conn.raw.broken:
            return False
        try:
            self.conn.execute("SELECT 1").fetchone()
        except Exception:
            return False
        return True

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside the block all see one snapshot of the database (a REPEATABLE READ transaction), as a
        deferred transaction gives on SQLite: a copy never sees half of a writer's commit."""
        with self.conn.raw.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield

    # ---- opening ----------------------------------------------------------------------------------------------

    def _open(self) -> int:
        """The schema version after migrating (a writer) or checking (a reader); ``StoreError`` naming the
        location for another program's database or a newer expertrack's."""
        import psycopg

        try:
            version = self._check_usable()
            if self.readonly and version == 0:  # an empty database: no runs yet (and no tables made by a reader)
                return 0
            if version != LATEST_VERSION:
                version = self._migrate()
            if self.readonly:  # from now on the server itself refuses any write through this connection
                self.conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            return version
        except psycopg.Error as exc:
            raise StoreError(f"{self.location} is not a usable expertrack store: {_scrub(exc, self.url)}") from exc

    def _check_usable(self) -> int:
        """The schema version (0: no expertrack tables), refusing another program's tables or a newer schema."""
        has_version, tables = self.conn.execute(
            "SELECT to_regclass(?) IS NOT NULL, (SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema())",
            (VERSION_TABLE,),
        ).fetchone()
        if not has_version:
            if tables:
                raise StoreError(
                    f"{self.location} holds another program's tables (no {VERSION_TABLE} table): not an expertrack "
                    "store; use an empty database"
                )
            return 0
        row = self.conn.execute(f"SELECT MAX(version) FROM {VERSION_TABLE}").fetchone()
        version = int(row[0] or 0)
        if version > LATEST_VERSION:
            raise StoreError(
                f"{self.location} was written by a newer expertrack (schema {version}; this one knows up to "
                f"{LATEST_VERSION}): upgrade expertrack to use it"
            )
        return version

    def _migrate(self) -> int:
        """Apply the missing migrations, each in its own transaction under an advisory lock (processes opening a
        new database at once wait for each other; the version is read again under the lock)."""
        version = 0
        for number, name, sql in MIGRATIONS:
            with self.transaction() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
                conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version BIGINT PRIMARY KEY, name TEXT NOT "
                             "NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")  # fmt: skip
                version = self._check_usable_locked()
                if number <= version:
                    continue
                for statement in statements(sql):
                    conn.execute(statement)
                conn.execute(f"INSERT INTO {VERSION_TABLE} (version, name) VALUES (?, ?)", (number, name))
                version = number
        return version

    def _check_usable_locked(self) -> int:
        """Inside the migration's transaction: the version, or ``StoreError`` for a newer one or for another
        program's tables that appeared meanwhile (the version table itself is ours)."""
        row = self.conn.execute(f"SELECT MAX(version) FROM {VERSION_TABLE}").fetchone()
        version = int(row[0] or 0)
        if version > LATEST_VERSION:
            raise StoreError(
                f"{self.location} was moved to a newer schema ({version}) while it was being opened: upgrade "
                "expertrack to use it"
            )
        if version == 0:
            others = self.conn.execute(
                "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename <> ?",
                (VERSION_TABLE,),
            ).fetchone()[0]
            if others:
                raise StoreError(
                    f"{self.location} holds another program's tables: not an expertrack store; use an empty database"
                )
        return version


def _connect(url: str, location: str) -> Any:
    """A psycopg connection in autocommit mode (transactions are explicit), or ``StoreError`` naming the location
    without its password."""
    try:
        import psycopg
    except ImportError as exc:
        raise StoreError(
            f"{location} is a PostgreSQL location, and psycopg is not installed: pip install 'expertrack[postgres]'"
        ) from exc
    options: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in url and "PGCONNECT_TIMEOUT" not in os.environ:
        options["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        return psycopg.connect(url, **options)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to the PostgreSQL store {location}: {_scrub(exc, url)}") from exc


def _scrub(exc: BaseException, url: str) -> str:
    """psycopg's message, its first lines only, with the URL's and the environment's password removed (libpq does
    not print passwords; this makes sure of it)."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:3] if line.strip())
    secrets = [os.environ.get("PGPASSWORD", "")]
    parts = urlsplit(url)
    if parts.password:
        secrets += [parts.password, unquote(parts.password)]
    for part in parts.query.split("&"):
        if part.lower().startswith("password="):
            secrets += [part.split("=", 1)[1], unquote(part.split("=", 1)[1])]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
