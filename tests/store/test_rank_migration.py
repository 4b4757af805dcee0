"""Schema migration 6 (ranks): a store written before it reads exactly as before, every key as rank 0's."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import expertrack
from expertrack.store import SQLiteStore
from expertrack.store.chunks import INSERT_CHUNK, INSERT_PIECE, Piece, SeriesBuffer
from expertrack.store.sqlite_schema import LATEST_VERSION, MIGRATIONS


def _store_before_ranks(path: Path) -> None:
    """A store as schema 4 left it: one run with a sealed chunk, a newer piece and an array of key 'loss'/'moe'."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    for number, _name, sql in MIGRATIONS:
        if number <= 4:
            conn.executescript(sql)
            conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("INSERT INTO runs (id, project, name, state, created_at) VALUES ('r1', 'p', 'old', 'finished', 1.0)")
    conn.execute("INSERT INTO keys (id, run_id, name) VALUES (7, 'r1', 'loss'), (8, 'r1', 'moe')")
    sealed = SeriesBuffer("loss", key_id=7)
    for step in range(3):
        sealed.append(step, 10.0 + step, step / 2)
    conn.executemany(INSERT_CHUNK, [(7, 7, *row) for row in sealed.chunk_rows()])
    newer = SeriesBuffer("loss", key_id=7)
    newer.append(3, 13.0, 1.5)
    conn.execute(INSERT_PIECE, Piece.from_fresh([newer]).row("r1")).fetchall()
    conn.execute("INSERT INTO arrays (key_id, step, time, dtype, shape, nbytes) VALUES (8, 2, 12.0, '<f4', '[2]', 8)")
    conn.execute("INSERT INTO array_data (key_id, step, data) VALUES (8, 2, ?)", (np.ones(2, "<f4").tobytes(),))
    conn.close()


def test_a_store_from_before_ranks_reads_as_before(tmp_path: Path) -> None:
    _store_before_ranks(tmp_path / "store.db")
    run = expertrack.Api(tmp_path).run("r1")  # a reader brings the store to schema 6 first
    assert run.ranks() == [0] and run.rank_states() == {}
    steps, times, values = run.scalars("loss")
    assert steps.tolist() == [0, 1, 2, 3] and values.tolist() == [0.0, 0.5, 1.0, 1.5]
    assert times.tolist() == [10.0, 11.0, 12.0, 13.0]
    assert run.history(rank=0)["loss"].tolist() == [0.0, 0.5, 1.0, 1.5]
    assert run.point_count("loss") == 4 and run.scalar_overview()["loss"].last == 1.5
    assert run.array("moe", 2).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="no series of rank 1"):
        run.scalars("loss", rank=1)
    with sqlite3.connect(tmp_path / "store.db") as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert check.execute("PRAGMA foreign_key_check").fetchall() == []
        assert check.execute("SELECT id, name, rank FROM keys ORDER BY id").fetchall() == [
            (7, "loss", 0),
            (8, "moe", 0),
        ]


def test_after_migration_a_key_has_one_series_per_rank_and_deletes_still_cascade(tmp_path: Path) -> None:
    _store_before_ranks(tmp_path / "store.db")
    with SQLiteStore(tmp_path / "store.db") as store, store.transaction() as conn:
        conn.execute("INSERT INTO keys (run_id, name, rank) VALUES ('r1', 'loss', 1)")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO keys (run_id, name, rank) VALUES ('r1', 'loss', 1)")
    expertrack.Api(tmp_path).delete_run("r1")
    with sqlite3.connect(tmp_path / "store.db") as check:
        for table in ("keys", "scalar_chunks", "arrays", "array_data", "scalar_pieces"):
            assert check.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table


def test_arrays_added_to_a_stored_run_go_to_rank_0s_key(tmp_path: Path) -> None:
    from expertrack.store.writes import add_arrays

    _store_before_ranks(tmp_path / "store.db")
    with SQLiteStore(tmp_path / "store.db") as store:
        with store.transaction() as conn:  # rank 1's key of the same name, made first
            conn.execute("INSERT INTO keys (run_id, name, rank) VALUES ('r1', 'tpe', 1)")
        add_arrays(store, "r1", "tpe", [(4, 14.0, np.zeros(3, "<f4"))])
    run = expertrack.Api(tmp_path).run("r1")
    assert run.array_steps("tpe") == [4] and run.array_steps("tpe", rank=1) == []
