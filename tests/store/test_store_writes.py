"""The store's write side (store/writes.py): a batch is all or nothing, a reparse's replace never empties a run,
and no module outside store/ runs SQL."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import expertrack
from expertrack.records import ArrayPoint, Batch, ConfigSet, FileChunk, NewRun, RunUpdate
from expertrack.store import SQLiteStore
from expertrack.store.chunks import Piece, SeriesBuffer


def _new_run(store: SQLiteStore, run_id: str = "r1") -> None:
    store.create_run(NewRun(run_id, "p", "n", None, "[]", None, '{"lr": 1}', 1.0, None, None))


def _series(name: str | None, steps: range, offset: float = 0.0) -> SeriesBuffer:
    buffer = SeriesBuffer(name)  # type: ignore[arg-type]
    for step in steps:
        buffer.append(step, float(step), step + offset)
    return buffer


def test_a_batch_that_fails_midway_leaves_nothing(fresh_store: SQLiteStore) -> None:
    with fresh_store as store:
        _new_run(store)
        good = _series("loss", range(5))
        bad = _series(None, range(5))  # a key without a name: the store refuses it (NOT NULL), after "loss"
        key_ids: dict[str, int] = {}
        batch = Batch(
            run_id="r1",
            update=RunUpdate(now=2.0, dropped_points=0, summary='{"loss": 4.0}'),
            series=[good, bad],
            key_ids=key_ids,
            pieces=[Piece.from_fresh([good, bad])],
            records=[ConfigSet('{"lr": 2}'), FileChunk("notes.txt", b"hello", True)],
        )
        with pytest.raises(Exception, match=r"(?i)not[ -]null"):  # SQLite's and PostgreSQL's words
            store.write_batch(batch)
        assert store.scalar_keys("r1") == [] and store.point_counts("r1") == {}
        run = store.run("r1")
        assert run.config == {"lr": 1} and run.summary == {} and store.file_names("r1") == []
        assert key_ids == {} and good.key_id == -1  # a retry creates the key again, in its own transaction

        again = _series("loss", range(5))
        batch.series, batch.pieces = [again], [Piece.from_fresh([again])]
        batch.records.append(ArrayPoint("experts", 4, 4.0, np.arange(3.0)))
        assert len(store.write_batch(batch)) == 1
        assert store.point_counts("r1") == {"loss": 5} and store.run("r1").config == {"lr": 2}
        assert store.read_file("r1", "notes.txt") == b"hello"
        assert store.read_array("r1", "experts", 4).tolist() == [0.0, 1.0, 2.0]


def test_a_failing_replace_leaves_the_old_series(tmp_path: Path) -> None:
    with expertrack.init(project="p", dir=tmp_path, id="r1", mirror="off") as run:
        for step in range(10):
            run.log({"loss": float(step)})
    with SQLiteStore(tmp_path / "store.db") as store:
        with pytest.raises(Exception, match="NOT NULL"):
            store.replace_scalars("r1", [_series("loss", range(3), 100.0), _series(None, range(3))], '{"x": 1}')
        assert store.read_scalars("r1", "loss")[2].tolist() == [float(s) for s in range(10)]
        assert "x" not in store.run("r1").config

        store.replace_scalars("r1", [_series("loss", range(3), 100.0), _series("acc", range(2))], '{"x": 1}')
        assert store.read_scalars("r1", "loss")[2].tolist() == [100.0, 101.0, 102.0]
        assert store.scalar_keys("r1") == ["acc", "loss"] and store.run("r1").config == {"x": 1}


def test_only_the_store_runs_sql() -> None:
    """Every SQL statement lives under store/ (docs/storage.md, "The store interface")."""
    package = Path(expertrack.__file__).parent
    outside = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.relative_to(package).parts[0] != "store" and re.search(r"\.execute(many|script)?\(", path.read_text())
    ]
    assert outside == []
