"""Writes outside a live run's writer: arrays an importer adds to a run that already exists (and has ended).

A run being written by its own process is changed only by that process's writer; these are for stored runs, such
as the run ``expertrack run`` made for a Megatron-LM job, completed afterwards with files the job wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from expertrack.store.sqlite import Store, insert_array


def add_arrays(store: Store, run_id: str, key: str, points: Iterable[tuple[int, float, Any]]) -> int:
    """Store ``(step, time, ndarray)`` points of one array key for ``run_id`` in one transaction; a point at a step
    the key already has replaces it (so importing the same files again changes nothing). Returns the count."""
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise LookupError(f"no run {run_id!r} in {store.path}")
        # rank 0's key: what readers show by default, and a single process's (schema 6, docs/storage.md)
        conn.execute("INSERT OR IGNORE INTO keys (run_id, name, rank) VALUES (?, ?, 0)", (run_id, key))
        key_id = conn.execute(
            "SELECT id FROM keys WHERE run_id = ? AND name = ? AND rank = 0", (run_id, key)
        ).fetchone()[0]
        count = 0
        for step, t, array in points:
            insert_array(conn, key_id, step, t, array)
            count += 1
    return count
