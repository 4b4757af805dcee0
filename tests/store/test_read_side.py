"""The read side with many keys and huge arrays: `show` and `/api/runs` ask the store a fixed number of questions
whatever the number of keys, and never read an array's payload; migration 3 moves existing arrays apart.

What SQLite is asked is observed on the real connection (its trace callback and authorizer), never timed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

import expertrack
from expertrack.cli.common import format_value
from expertrack.cli.main import cli
from expertrack.dashboard.app import create_app
from expertrack.store import SQLiteStore
from expertrack.store.sqlite_schema import LATEST_VERSION, MIGRATIONS
from tests.store.conftest import ReadLocation


@dataclass
class Observed:
    """Statements run and (table, column) pairs read by every read-only connection opened meanwhile."""

    statements: list[str] = field(default_factory=list)
    reads: set[tuple[str, str]] = field(default_factory=set)

    def payload_reads(self) -> set[tuple[str, str]]:
        return {(t, c) for t, c in self.reads if t in ("arrays", "array_data") and c == "data"}


@pytest.fixture
def observed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Observed]:
    seen = Observed()
    connect = SQLiteStore._connect_readonly

    def authorize(action: int, table: str | None, column: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_READ and table and column:
            seen.reads.add((table, column))
        return sqlite3.SQLITE_OK

    def observing(self: SQLiteStore) -> sqlite3.Connection:
        conn = connect(self)
        conn.set_trace_callback(seen.statements.append)
        conn.set_authorizer(authorize)
        return conn

    monkeypatch.setattr(SQLiteStore, "_connect_readonly", observing)
    yield seen


def make_run(directory: Path, keys: int, big: int = 100_000) -> str:
    run = expertrack.init(project="p", dir=directory, mirror="off")
    for step in range(3):
        row: dict[str, object] = {f"k{i:05d}": float(step * i) for i in range(keys)}
        row["moe/util"] = np.full(2 + step, 0.5, np.float32)  # its shape changes over the run
        if step == 1:
            row["moe/big"] = np.arange(big, dtype=np.float64)
        run.log(row)
    run.log({"k00001": float("nan")})
    run.finish()
    return run.id


def show(directory: Path, run_id: str) -> str:
    result = CliRunner().invoke(cli, ["show", run_id, "--dir", str(directory)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_show_asks_the_same_questions_for_10_or_1000_keys(tmp_path: Path, observed: Observed) -> None:
    counts = []
    for keys in (10, 1000):
        run_id = make_run(tmp_path / str(keys), keys)
        observed.statements.clear()
        output = show(tmp_path / str(keys), run_id)
        rows = [line.split() for line in output.splitlines() if line.split()[:1] == [f"k{keys - 1:05d}"]]
        # the summary's line, then the metrics table's (past 500 rows written as plain text, same columns)
        assert rows[-1][1:] == ["3", "2", format_value(2.0 * (keys - 1)), "0", format_value(2.0 * (keys - 1))]
        counts.append(len(observed.statements))
    assert counts[0] == counts[1], counts


def test_show_and_api_runs_never_read_array_payloads(tmp_path: Path, observed: Observed) -> None:
    run_id = make_run(tmp_path, 5)
    lines = show(tmp_path, run_id).splitlines()
    assert observed.payload_reads() == set()
    big = next(line for line in lines if "moe/big" in line).split()
    util = next(line for line in lines if "moe/util" in line).split()
    assert big[1:] == ["1", "1", "100000", "float64"]
    assert util[1:] == ["3", "2", "4", "float32"]  # steps, last step, the last step's shape, dtype
    k1 = [line for line in lines if line.split()[:1] == ["k00001"]][-1].split()  # the metrics table's row
    assert k1[1:] == ["4", "3", "nan", "0", "2"]  # NaN is the last value, ignored by min and max

    client = TestClient(create_app(tmp_path), base_url="http://127.0.0.1:8080")
    (row,) = client.get("/api/runs?metrics=k00001").json()["runs"]
    assert row["array_keys"] == ["moe/big", "moe/util"] and row["last_step"] == 3
    assert client.get(f"/api/runs/{run_id}").status_code == 200
    assert observed.payload_reads() == set()
    # the payload is still there for whoever asks for it
    steps, values = expertrack.Api(tmp_path).run(run_id).arrays("moe/big")
    assert steps.tolist() == [1] and values[0][-1] == 99_999.0


def test_point_counts_and_overview_agree_with_the_series(tmp_path: Path, read_location: ReadLocation) -> None:
    run_id = make_run(tmp_path, 3)
    run = expertrack.Api(read_location(tmp_path)).run(run_id)
    overview = run.scalar_overview()
    assert list(overview) == run.metric_keys()
    for key, seen in overview.items():
        steps, _times, values = run.scalars(key)
        assert seen.points == run.point_count(key) == len(steps)
        assert (seen.last_step, seen.max) == (int(steps[-1]), float(np.nanmax(values)))


V1_ARRAY = np.arange(12, dtype="<f4").reshape(3, 4)


def test_migration_3_moves_existing_arrays_apart(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(MIGRATIONS[0][2])  # a store as version 1 left it
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO runs (id, project, name, state, created_at) VALUES ('r1', 'p', 'n', 'finished', 1.0)")
    conn.execute("INSERT INTO keys (id, run_id, name) VALUES (7, 'r1', 'moe/affinity')")
    for step in (0, 5):
        conn.execute(
            "INSERT INTO arrays (key_id, step, time, dtype, shape, data) VALUES (7, ?, 2.0, '<f4', '[3, 4]', ?)",
            (step, (V1_ARRAY + step).tobytes()),
        )
    conn.close()

    SQLiteStore(path).close()  # a writer opens it: migrated
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        columns = [r[1] for r in check.execute("PRAGMA table_info(arrays)")]
        assert "data" not in columns and "nbytes" in columns
        assert check.execute("SELECT step, length(data) FROM array_data ORDER BY step").fetchall() == [(0, 48), (5, 48)]
    run = expertrack.Api(tmp_path).run("r1")
    steps, values = run.arrays("moe/affinity")
    assert steps.tolist() == [0, 5] and np.array_equal(values[1], V1_ARRAY + 5) and values.dtype == np.float32
    assert json.loads(json.dumps(run.array_overview()["moe/affinity"].shape)) == [3, 4]
    expertrack.Api(tmp_path).delete_run("r1")
    with sqlite3.connect(path) as check:  # deleting the run takes the payloads along
        assert check.execute("SELECT COUNT(*) FROM array_data").fetchone()[0] == 0


def test_a_reader_upgrades_an_older_store_before_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(MIGRATIONS[0][2])
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO runs (id, project, name, state, created_at) VALUES ('r1', 'p', 'n', 'finished', 1.0)")
    conn.execute("INSERT INTO keys (id, run_id, name) VALUES (7, 'r1', 'moe/util')")
    conn.execute("INSERT INTO arrays VALUES (7, 3, 2.0, '<f4', '[3, 4]', ?)", (V1_ARRAY.tobytes(),))
    conn.close()
    result = CliRunner().invoke(cli, ["show", "r1", "--dir", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0 and "moe/util" in result.output
    steps, values = expertrack.Api(tmp_path).run("r1").arrays("moe/util")
    assert steps.tolist() == [3] and np.array_equal(values[0], V1_ARRAY)


def test_an_array_at_one_step_reads_that_payload_only(tmp_path: Path) -> None:
    run = expertrack.init(project="p", dir=tmp_path, mirror="off")
    for step in range(3):
        run.log({"moe/util": np.full(4, float(step))})
    run.finish()
    with sqlite3.connect(tmp_path / "store.db") as conn:  # the other steps' payloads cannot be decoded any more
        conn.execute("UPDATE array_data SET data = x'00' WHERE step < 2")
    client = TestClient(create_app(tmp_path), base_url="http://127.0.0.1:8080")
    answer = client.get(f"/api/runs/{run.id}/array?key=moe/util&step=5").json()
    assert (answer["step"], answer["values"], answer["steps"]) == (2, [2.0] * 4, [0, 1, 2])
    assert expertrack.Api(tmp_path).run(run.id).array("moe/util", 2).tolist() == [2.0] * 4
