"""Helpers of the copy tests: everything a reader can get out of a store, to compare two stores bit for bit."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from expertrack.store.location import open_store


def contents(location: str | Path) -> dict[str, Any]:
    """Every run of the store with every point (steps, times and values as bytes), array, file, alert and rank."""
    store = open_store(location, readonly=True)
    try:
        out: dict[str, Any] = {}
        for record in store.runs():
            run: dict[str, Any] = {"row": dataclasses.asdict(record)}
            for rank in store.ranks(record.id) or [0]:
                for key in store.scalar_keys(record.id, rank):
                    steps, times, values = store.read_scalars(record.id, key, rank=rank)
                    run[f"scalar {key} @{rank}"] = (steps.tobytes(), times.tobytes(), values.tobytes())
                for key in store.array_keys(record.id, rank):
                    run[f"array {key} @{rank}"] = [
                        (step, t, a.dtype.str, a.shape, a.tobytes())
                        for step, t, a in store.read_arrays(record.id, key, rank=rank)
                    ]
            run["files"] = {name: store.read_file(record.id, name) for name in store.file_names(record.id)}
            run["alerts"] = [repr(a) for a in store.alerts(record.id)]
            run["ranks"] = {rank: dataclasses.asdict(r) for rank, r in store.rank_states(record.id).items()}
            out[record.id] = run
        return out
    finally:
        store.close()


def stored_points(location: str | Path, run_id: str) -> int:
    """Scalar points as stored (chunk rows' counts, pieces included): a duplicate would be counted twice."""
    store = open_store(location, readonly=True)
    try:
        chunked = store.conn.execute(
            "SELECT COALESCE(SUM(c.n), 0) FROM scalar_chunks c JOIN keys k ON c.key_id = k.id WHERE k.run_id = ?",
            (run_id,),
        ).fetchone()[0]
        pieces = store.conn.execute(
            "SELECT COALESCE(SUM(n), 0) FROM scalar_pieces WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
        return int(chunked) + int(pieces)
    finally:
        store.close()


def read_points(location: str | Path, run_id: str) -> int:
    """Scalar points a reader sees, one per (key, rank, step)."""
    store = open_store(location, readonly=True)
    try:
        return sum(
            len(store.read_scalars(run_id, key, rank=rank)[0])
            for rank in store.ranks(run_id) or [0]
            for key in store.scalar_keys(run_id, rank)
        )
    finally:
        store.close()
