"""Writers refuse the stores readers refuse (a newer schema, another program's SQLite file named store.db), by
name, and training goes on in a temporary store; and migrations run one transaction each."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

import expertrack
from expertrack.store import SQLiteStore
from expertrack.store.sqlite_schema import LATEST_VERSION, MIGRATIONS, migrate
from tests.conftest import expertrack_cli

TRAINER = (
    "print('step 1/2: train loss 2.500000 (1.0 ms, 100 tok/s)')\n"
    "print('step 2/2: train loss 2.250000 (1.0 ms, 100 tok/s)')\n"
)


def _newer_store(directory: Path) -> Path:
    SQLiteStore(directory / "store.db").close()
    with sqlite3.connect(directory / "store.db") as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 90}")
    return directory / "store.db"


def _foreign_database(directory: Path) -> Path:
    """Another program's SQLite database that happens to be called store.db (no schema version set)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "store.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    return path


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _journal_mode_byte(path: Path) -> int:
    """Byte 18 of the header: 1 for a rollback-journal database, 2 once switched to WAL."""
    return path.read_bytes()[18]


def test_init_refuses_a_newer_schema_by_name_and_keeps_the_run_elsewhere(
    tracking_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tracking_dir.mkdir()
    path = _newer_store(tracking_dir)
    run = expertrack.init(project="p")
    run.log({"loss": 1.5})
    run.finish()
    err = capsys.readouterr().err
    assert f"{path} was written by a newer expertrack (schema {LATEST_VERSION + 90}" in err
    assert run.dir != tracking_dir and str(run.dir) in err
    assert expertrack.Api(run.dir).run(run.id).scalars("loss")[2].tolist() == [1.5]
    with sqlite3.connect(path) as conn:  # nothing was written into the newer store
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION + 90


def test_init_refuses_a_foreign_database_without_changing_it(
    tracking_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _foreign_database(tracking_dir)
    before = path.read_bytes()
    run = expertrack.init(project="p")
    run.log({"loss": 1.5})
    run.finish()
    assert f"{path} is an SQLite database, but not an expertrack store" in capsys.readouterr().err
    assert path.read_bytes() == before  # no WAL switch, no tables added
    assert _tables(path) == {"notes"} and _journal_mode_byte(path) == 1
    assert expertrack.Api(run.dir).run(run.id).scalars("loss")[2].tolist() == [1.5]
    with pytest.raises(expertrack.StoreError, match="not an expertrack store"):
        expertrack.Api(tracking_dir).runs()


@pytest.mark.parametrize("kind", ["newer", "foreign"])
def test_expertrack_run_refuses_by_name_and_still_tracks_the_command(
    tmp_path: Path, tracking_dir: Path, kind: str
) -> None:
    tracking_dir.mkdir()
    path = _newer_store(tracking_dir) if kind == "newer" else _foreign_database(tracking_dir)
    before = _tables(path), path.read_bytes()[:18]
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    proc = expertrack_cli("run", "--mirror", "off", "--", sys.executable, str(script))
    assert proc.returncode == 0, proc.stderr
    assert "step 2/2: train loss 2.250000" in proc.stdout
    reason = "newer expertrack" if kind == "newer" else "not an expertrack store"
    assert f"{path}" in proc.stderr and reason in proc.stderr
    assert (_tables(path), path.read_bytes()[:18]) == before  # untouched: no tables added, journal mode kept
    # it says where the run went, and the run is there
    line = next(x for x in proc.stderr.splitlines() if "this run is kept in" in x)
    fallback = Path(line.split("this run is kept in ", 1)[1].split(" instead", 1)[0])
    assert f"in {fallback}" in proc.stderr.split(line, 1)[1]  # "tracking run ... in FALLBACK" afterwards
    (stored,) = expertrack.Api(fallback).runs()
    assert stored.scalars("train_loss")[2].tolist() == [2.5, 2.25]


def test_each_migration_commits_on_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration that fails leaves the store at the last one that succeeded, not at version 0."""
    broken = [*MIGRATIONS, (LATEST_VERSION + 1, "broken", "CREATE TABLE runs (x)")]
    monkeypatch.setattr("expertrack.store.sqlite_schema.MIGRATIONS", broken)
    monkeypatch.setattr("expertrack.store.sqlite_schema.LATEST_VERSION", LATEST_VERSION + 1)
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert not conn.in_transaction
