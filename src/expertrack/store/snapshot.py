"""What remote runs (issue 14) need of SQLite files: a snapshot of one run, what a snapshot holds, and a store made
from a snapshot. The policy (when, where, publishing) is expertrack.snapshots
and expertrack.stream; the statements are here, with the store's others.

A snapshot is a whole store file holding one run: SQLite's backup API copies the live store in one read
transaction (the writer never waits; what was committed before it is all there), the other runs are deleted from
the copy (their rows cascade), and the copy is switched from WAL to a rollback journal, so it is one closed file
that can be copied anywhere, a Volume or a network file system included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

BUSY_TIMEOUT_S = 30.0


def write_run_snapshot(source: Path, run_id: str, target: Path) -> None:
    """Copy run ``run_id`` of the store file ``source`` to ``target``, replacing it whole (written aside, then
    renamed: a reader never sees half a snapshot)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="expertrack-snapshot-") as scratch:
        copy = Path(scratch) / "run.sqlite"
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)  # one step: a consistent read of the whole store
            dst.execute("PRAGMA foreign_keys = ON")
            with dst:
                dst.execute("DELETE FROM runs WHERE id != ?", (run_id,))  # cascades to the other runs' rows
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file (no -wal beside it)
        finally:
            src.close()
            dst.close()
        aside = target.with_name(target.name + ".partial")
        shutil.copyfile(copy, aside)
        os.replace(aside, target)


def held_run(path: Path) -> tuple[str, float]:
    """The run a snapshot file holds and its last heartbeat; ValueError when the file is not a snapshot."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT id, heartbeat_at FROM runs").fetchall()
    except sqlite3.Error as exc:
        raise ValueError(f"{path} is not a readable snapshot ({exc})") from None
    if len(rows) != 1:
        raise ValueError(f"{path} holds {len(rows)} runs, not one: not a snapshot")
    return str(rows[0][0]), float(rows[0][1] or 0.0)


def store_holds(path: Path, run_id: str) -> bool:
    """Whether the store file ``path`` exists and holds run ``run_id``."""
    if not path.exists():
        return False
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None


def store_from_snapshot(snapshot: Path, store: Path) -> None:
    """Make the store file ``store`` (there is none yet) a copy of ``snapshot``."""
    store.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    dst = sqlite3.connect(store)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
