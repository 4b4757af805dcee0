"""The store's schema, as numbered migrations. Documented in docs/storage.md; change it only by appending here.

Each migration runs once, in its own transaction, and bumps ``PRAGMA user_version``. Never edit a migration that has
shipped: add the next one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from expertrack.errors import StoreError

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema: runs, keys, scalar chunks, arrays, files, mirror state",
        """
        CREATE TABLE runs (
            id            TEXT PRIMARY KEY,
            project       TEXT NOT NULL,
            name          TEXT NOT NULL,
            run_group     TEXT,
            tags          TEXT NOT NULL DEFAULT '[]',   -- JSON list of strings
            notes         TEXT,
            state         TEXT NOT NULL,                -- running | finished | failed | killed | crashed
            created_at    REAL NOT NULL,                -- unix seconds
            ended_at      REAL,
            heartbeat_at  REAL,                         -- last writer flush; a stale one means the process died
            exit_code     INTEGER,
            exit_signal   INTEGER,
            config        TEXT NOT NULL DEFAULT '{}',   -- JSON object
            summary       TEXT NOT NULL DEFAULT '{}',   -- JSON object
            metric_defs   TEXT NOT NULL DEFAULT '[]',   -- JSON list of define_metric settings
            environment   TEXT NOT NULL DEFAULT '{}',   -- JSON object (secrets redacted)
            hostname      TEXT,
            pid           INTEGER
        );
        CREATE INDEX runs_project ON runs(project, created_at);

        CREATE TABLE keys (
            id      INTEGER PRIMARY KEY,
            run_id  TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            name    TEXT NOT NULL,
            UNIQUE (run_id, name)
        );

        -- A scalar series is stored as chunks of up to 16,384 points: three little-endian arrays
        -- (int64 steps, float64 unix times, float64 values; NaN and +-inf kept bit for bit).
        CREATE TABLE scalar_chunks (
            key_id     INTEGER NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
            seq        INTEGER NOT NULL,
            n          INTEGER NOT NULL,
            step_min   INTEGER NOT NULL,
            step_max   INTEGER NOT NULL,
            steps      BLOB NOT NULL,
            times      BLOB NOT NULL,
            vals       BLOB NOT NULL,
            PRIMARY KEY (key_id, seq)
        ) WITHOUT ROWID;

        CREATE TABLE arrays (
            key_id  INTEGER NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
            step    INTEGER NOT NULL,
            time    REAL NOT NULL,
            dtype   TEXT NOT NULL,                      -- NumPy dtype string, e.g. '<f4'
            shape   TEXT NOT NULL,                      -- JSON list of ints
            data    BLOB NOT NULL,                      -- C-order bytes
            PRIMARY KEY (key_id, step)
        ) WITHOUT ROWID;

        -- Files attached to a run, as zlib-compressed chunks appended in order (a live console is many chunks).
        CREATE TABLE files (
            run_id      TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            name        TEXT NOT NULL,
            seq         INTEGER NOT NULL,
            created_at  REAL NOT NULL,
            size        INTEGER NOT NULL,               -- uncompressed bytes in this chunk
            data        BLOB NOT NULL,
            PRIMARY KEY (run_id, name, seq)
        ) WITHOUT ROWID;

        CREATE TABLE mirror_state (
            run_id       TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            target       TEXT NOT NULL,                 -- 'wandb'
            state        TEXT NOT NULL,                 -- partial | complete | failed
            cursor_step  INTEGER,                       -- last step fully sent
            remote_id    TEXT,
            reason       TEXT,
            updated_at   REAL NOT NULL,
            PRIMARY KEY (run_id, target)
        ) WITHOUT ROWID;
        """,
    ),
    (
        2,
        "write path: points dropped past the writer's bound, per run; recent points as per-flush pieces",
        """
        ALTER TABLE runs ADD COLUMN dropped_points INTEGER NOT NULL DEFAULT 0;

        -- One row per writer flush: the new points of every key it touched, until the writer seals them into
        -- scalar_chunks. keys is a JSON list of [key_id, n]; steps/times/vals hold those keys' points in that
        -- order, in the same encoding as scalar_chunks. Several writers of one run each add their own rows.
        CREATE TABLE scalar_pieces (
            run_id    TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            seq       INTEGER NOT NULL,
            n         INTEGER NOT NULL,
            step_max  INTEGER NOT NULL,
            keys      TEXT NOT NULL,
            steps     BLOB NOT NULL,
            times     BLOB NOT NULL,
            vals      BLOB NOT NULL,
            PRIMARY KEY (run_id, seq)
        ) WITHOUT ROWID;
        """,
    ),
    (
        3,
        "arrays split: the index (step, time, dtype, shape, size) apart from the payload (array_data)",
        # Why: in one WITHOUT ROWID table an 80 MB payload lay in the index's own b-tree, so listing a run's
        # keys or its last step dragged it through the page cache (a 10M-element array: 25.7 s per /api/runs).
        # The payload now lives in a rowid table of its own, found through its primary key when it is read.
        # (Number 2 is taken by the write path's migration; numbers are renumbered at merge if needed.)
        """
        CREATE TABLE array_data (
            key_id  INTEGER NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
            step    INTEGER NOT NULL,
            data    BLOB NOT NULL,                      -- C-order bytes
            PRIMARY KEY (key_id, step)
        );
        INSERT INTO array_data (key_id, step, data) SELECT key_id, step, data FROM arrays;
        CREATE TABLE arrays_index (
            key_id  INTEGER NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
            step    INTEGER NOT NULL,
            time    REAL NOT NULL,
            dtype   TEXT NOT NULL,                      -- NumPy dtype string, e.g. '<f4'
            shape   TEXT NOT NULL,                      -- JSON list of ints
            nbytes  INTEGER NOT NULL,                   -- size of the payload in array_data
            PRIMARY KEY (key_id, step)
        ) WITHOUT ROWID;
        INSERT INTO arrays_index (key_id, step, time, dtype, shape, nbytes)
            SELECT key_id, step, time, dtype, shape, length(data) FROM arrays;
        DROP TABLE arrays;
        ALTER TABLE arrays_index RENAME TO arrays;
        """,
    ),
    (
        4,
        "alerts: what the alert rules raised for a run (rule, key, step, value, time, message)",
        """
        CREATE TABLE alerts (
            id       INTEGER PRIMARY KEY,
            run_id   TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            rule     TEXT NOT NULL,                     -- nan | spike | dead_expert | maxvio | entropy | stall | wandb
            key      TEXT,                              -- the metric it concerns (NULL for a stall)
            step     INTEGER,                           -- the step it concerns (NULL before any step)
            value    REAL,                              -- the value that raised it (+-inf kept; NaN is NULL)
            time     REAL NOT NULL,                     -- unix seconds when it was raised
            message  TEXT NOT NULL
        );
        CREATE INDEX alerts_run ON alerts(run_id, id);
        """,
    ),
    (
        5,
        "levels: per sealed chunk, each 64-point block's first, min, max, last and first NaN (chart reads)",
        # Why: a chart of 1,000,000 points read and decoded all 24 MB of its chunks (30-90 ms) to draw ~2,400
        # points; a chunk's level is ~5% of its size (see store/levels.py). Stores made before this migration get
        # their levels computed here, once (BACKFILLS).
        """
        CREATE TABLE scalar_levels (
            key_id    INTEGER NOT NULL,
            seq       INTEGER NOT NULL,                 -- the chunk's seq in scalar_chunks
            n         INTEGER NOT NULL,                 -- the chunk's n, step_min, step_max (read without it)
            step_min  INTEGER NOT NULL,
            step_max  INTEGER NOT NULL,
            picks     BLOB NOT NULL,                    -- int32 indices in the chunk, ascending
            steps     BLOB NOT NULL,                    -- int64 steps of those points
            vals      BLOB NOT NULL,                    -- float64 values of those points
            PRIMARY KEY (key_id, seq),
            FOREIGN KEY (key_id, seq) REFERENCES scalar_chunks(key_id, seq) ON DELETE CASCADE
        ) WITHOUT ROWID;
        """,
    ),
    (
        6,
        "ranks: a rank on every key (unique by run, name, rank) and each writing rank's own state, for ranks='all'",
        # Why a rebuild: SQLite cannot change a table's UNIQUE constraint in place. SQLite's documented way: build
        # the new table, copy the rows with their ids, drop the old one and rename, with foreign keys off so that
        # the drop cascades to no chunk, piece or array (see REBUILDS in migrate()). Existing keys get rank 0:
        # rank 0 is also "the run's only writer" (docs/storage.md).
        """
        CREATE TABLE keys_with_ranks (
            id      INTEGER PRIMARY KEY,
            run_id  TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            name    TEXT NOT NULL,
            rank    INTEGER NOT NULL DEFAULT 0,         -- the writing process's rank; 0 for a single process
            UNIQUE (run_id, name, rank)
        );
        INSERT INTO keys_with_ranks (id, run_id, name, rank) SELECT id, run_id, name, 0 FROM keys;
        DROP TABLE keys;
        ALTER TABLE keys_with_ranks RENAME TO keys;
        -- One row per rank that writes a run under ranks='all' (rank 0 included); the run's own state is rank 0's.
        CREATE TABLE run_ranks (
            run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            rank            INTEGER NOT NULL,
            state           TEXT NOT NULL,              -- running | finished | failed | killed (crashed on read)
            node            TEXT,                       -- host name
            pid             INTEGER,
            started_at      REAL NOT NULL,
            heartbeat_at    REAL,
            ended_at        REAL,
            exit_code       INTEGER,
            dropped_points  INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, rank)
        ) WITHOUT ROWID;
        """,
    ),
]


def _backfill_levels(conn: sqlite3.Connection) -> None:
    from expertrack.store.levels import backfill  # NumPy is imported only when a store needs it

    backfill(conn)


# Work a migration needs beyond its SQL, run in the same transaction after it.
BACKFILLS: dict[int, Callable[[sqlite3.Connection], None]] = {5: _backfill_levels}

LATEST_VERSION = MIGRATIONS[-1][0]
# Migrations that rebuild a table other tables point at: run with foreign keys off (a pragma SQLite ignores inside
# a transaction, so it is set around it), and checked with foreign_key_check before they commit.
REBUILDS = {6}


def migrate(conn: sqlite3.Connection, check_ours: Callable[[], None] | None = None) -> int:
    """Bring the database to the latest schema; safe when several processes open a new store at once.

    Each migration runs in its own ``BEGIN IMMEDIATE`` transaction with its ``user_version`` bump: one process
    migrates while the others wait on the lock and then see the new version, and a migration that fails leaves
    the store at the last one that succeeded. ``check_ours`` is called inside the first transaction for a store
    that already has tables (another process may have created it meanwhile), to refuse a foreign database.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, _name, sql in MIGRATIONS:
        if number <= version:
            continue
        rebuild = number in REBUILDS and _foreign_keys_on(conn)
        if rebuild:
            conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > LATEST_VERSION:
                raise StoreError(f"the store was moved to a newer schema ({version}) while it was being opened")
            has_tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            if version == 0 and has_tables and check_ours is not None:
                check_ours()
            if number > version:
                for statement in _statements(sql):
                    conn.execute(statement)
                if number in BACKFILLS:
                    BACKFILLS[number](conn)
                if number in REBUILDS and conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise StoreError(f"schema migration {number} would leave dangling references; nothing changed")
                conn.execute(f"PRAGMA user_version = {number}")
                version = number
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            if rebuild:
                conn.execute("PRAGMA foreign_keys = ON")
    return int(version)


def _foreign_keys_on(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("PRAGMA foreign_keys").fetchone()[0])


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
