"""The store's schema, as numbered migrations. Documented in docs/storage.md; change it only by appending here.

Each migration runs once, in its own transaction, and bumps ``PRAGMA user_version``. Never edit a migration that has
shipped: add the next one.
"""

from __future__ import annotations

import sqlite3

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
        4,
        "alerts: what the alert rules raised for a run (rule, key, step, value, time, message)",
        """
        CREATE TABLE alerts (
            id       INTEGER PRIMARY KEY,
            run_id   TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            rule     TEXT NOT NULL,                     -- nan | spike | dead_expert | maxvio | entropy | stall | wandb
            key      TEXT,                              -- the metric it concerns (NULL for a stall)
            step     INTEGER,                           -- the step it concerns (NULL before any step)
            value    REAL,                              -- the value that raised it (NaN and +-inf kept)
            time     REAL NOT NULL,                     -- unix seconds when it was raised
            message  TEXT NOT NULL
        );
        CREATE INDEX alerts_run ON alerts(run_id, id);
        """,
    ),
]

LATEST_VERSION = MIGRATIONS[-1][0]


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to the latest schema; safe when several processes open a new store at once."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= LATEST_VERSION:
        return int(version)
    conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait on the lock, then see the new version
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, _name, sql in MIGRATIONS:
            if number > version:
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return LATEST_VERSION


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
