"""The PostgreSQL engine against a real server (tests/pg.py): its schema, its refusals, and the readers on it.

What both engines share (reads of chunks, pieces, levels, arrays, files) is checked by the store tests run on
each engine (tests/store/conftest.py); here is what only a server has: connections, credentials, concurrent
migration, a database that is not ours, and the readers (``ls``, ``show``, ``export``, ``Api``, the dashboard)
given a ``postgresql://`` location.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import psycopg
import pytest

import expertrack
from expertrack.errors import StoreError
from expertrack.store.location import describe, open_store
from expertrack.store.postgres_schema import LATEST_VERSION, VERSION_TABLE
from tests.conftest import expertrack_cli
from tests.pg import PASSWORD, USER, PostgresServer, copy_into_postgres


def _logged_run(tracking_dir: Path) -> str:
    run = expertrack.init(project="team", name="shared", config={"lr": 0.1}, mirror="off")
    for step in range(300):
        run.log({"loss": 1.0 / (step + 1), "hist": np.arange(4.0) * step} if step % 100 == 0 else {"loss": 1.0})
    run.append_file("console.log", b"hello\n")
    run.finish()
    return run.id


def test_a_new_database_gets_the_schema_once_and_reopens(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        assert store.version == LATEST_VERSION and store.runs() == []
        assert store.location == describe(postgres_url) and PASSWORD not in store.location
    with open_store(postgres_url, readonly=True) as store:
        rows = store.conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchall()
        assert [r[0] for r in rows] == list(range(1, LATEST_VERSION + 1))
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # a reader cannot change what it reads
            store.conn.execute("DELETE FROM runs")
        # series are kept uncompressed, as SQLite keeps them (migration 2: decompressing slowed chart reads)
        storage = store.conn.execute(
            "SELECT c.relname, a.attname, a.attstorage FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid"
            " WHERE c.relname IN ('scalar_chunks', 'scalar_pieces', 'scalar_levels', 'array_data')"
            " AND a.atttypid = 'bytea'::regtype"
        ).fetchall()
        assert len(storage) == 10 and {row[2] for row in storage} == {"e"}


def _open(url: str) -> int:
    with open_store(url) as store:
        return int(store.version)


def test_processes_opening_a_new_database_at_once_migrate_it_once(postgres_url: str) -> None:
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        assert pool.map(_open, [postgres_url] * 8) == [LATEST_VERSION] * 8
    with open_store(postgres_url) as store:
        assert store.conn.execute(f"SELECT COUNT(*) FROM {VERSION_TABLE}").fetchone()[0] == LATEST_VERSION


def test_wrong_password_unreachable_server_and_foreign_or_newer_databases_are_refused_by_name(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    wrong = postgres_server.url(database, password="not-the-" + PASSWORD)
    with pytest.raises(StoreError) as refused:
        open_store(wrong)
    message = str(refused.value)
    assert describe(wrong) in message and "password authentication failed" in message
    assert "not-the-" not in message and PASSWORD not in message

    closed = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:1/{database}?connect_timeout=2"
    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL store") as refused:
        open_store(closed)
    assert PASSWORD not in str(refused.value) and "127.0.0.1:1" in str(refused.value)

    foreign = postgres_server.new_database()
    with postgres_server.admin(foreign.rsplit("/", 1)[1]) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    for readonly in (False, True):
        with pytest.raises(StoreError, match="another program's tables"):
            open_store(foreign, readonly=readonly)
    with postgres_server.admin(foreign.rsplit("/", 1)[1]) as conn:
        assert [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")] == [
            "invoices"
        ]  # nothing added

    open_store(postgres_url).close()
    with postgres_server.admin(database) as conn:
        conn.execute(f"INSERT INTO {VERSION_TABLE} (version, name) VALUES ({LATEST_VERSION + 5}, 'future')")
    with pytest.raises(StoreError, match=f"newer expertrack \\(schema {LATEST_VERSION + 5}"):
        open_store(postgres_url, readonly=True)


def test_reads_in_a_snapshot_see_one_state_of_the_database(tracking_dir: Path, postgres_url: str) -> None:
    run_id = _logged_run(tracking_dir)
    copy_into_postgres(tracking_dir, postgres_url)
    with open_store(postgres_url, readonly=True) as reader, open_store(postgres_url) as writer:
        with reader.snapshot():
            assert [r.id for r in reader.runs()] == [run_id]
            writer.delete_run(run_id)
            assert [r.id for r in reader.runs()] == [run_id] and reader.read_file(run_id, "console.log") == b"hello\n"
        assert reader.runs() == []


def test_credentials_from_libpq_environment(
    postgres_server: PostgresServer, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = postgres_server.url(postgres_url.rsplit("/", 1)[1], password=None)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    with open_store(bare) as store:
        assert store.runs() == []
    monkeypatch.setenv("PGPASSWORD", "wrong-" + PASSWORD)
    with pytest.raises(StoreError) as refused:
        open_store(bare)
    assert PASSWORD not in str(refused.value)


def test_a_stopped_server_is_refused_clearly_and_read_again_once_restarted(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    from starlette.testclient import TestClient

    from expertrack.dashboard.app import create_app

    open_store(postgres_url).close()
    client = TestClient(create_app(postgres_url), base_url="http://127.0.0.1:8080")
    assert client.get("/api/runs").json()["runs"] == []  # its reader is kept for the next request
    postgres_server.stop()
    try:
        with pytest.raises(StoreError, match="cannot connect to the PostgreSQL store"):
            open_store(postgres_url)
        down = client.get("/api/runs")
        assert down.status_code == 503 and "cannot connect" in down.json()["error"]
        assert PASSWORD not in down.text
    finally:
        postgres_server.start()
    with open_store(postgres_url, readonly=True) as store:
        assert store.runs() == []
    assert client.get("/api/runs").status_code == 200


def test_reading_commands_api_and_dashboard_read_a_postgresql_location(tracking_dir: Path, postgres_url: str) -> None:
    run_id = _logged_run(tracking_dir)
    copy_into_postgres(tracking_dir, postgres_url)

    api = expertrack.Api(postgres_url)
    (run,) = api.runs(project="team")
    assert run.id == run_id and run.config["lr"] == 0.1 and api.projects() == ["team"]
    assert run.file("console.log") == b"hello\n"
    local = expertrack.Api(tracking_dir)
    assert local.run(run_id).history().equals(run.history()) and len(run.history()) == 300
    for mine, theirs in zip(local.run(run_id).arrays("hist"), run.arrays("hist")):
        assert np.array_equal(mine, theirs)
    local.close()

    listed = expertrack_cli("ls", "--dir", postgres_url)
    assert listed.returncode == 0 and run_id in listed.stdout and PASSWORD not in listed.stdout + listed.stderr
    shown = expertrack_cli("--dir", postgres_url, "show", "shared")
    assert shown.returncode == 0 and "loss" in shown.stdout and "hist" in shown.stdout
    exported = expertrack_cli("export", "shared", "--dir", postgres_url, "--format", "jsonl")
    assert exported.returncode == 0 and len(exported.stdout.splitlines()) == 300

    from starlette.testclient import TestClient

    from expertrack.dashboard.app import create_app

    client = TestClient(create_app(postgres_url), base_url="http://127.0.0.1:8080")
    body = client.get("/api/runs").json()
    assert [r["id"] for r in body["runs"]] == [run_id] and body["dir"] == describe(postgres_url)
    assert PASSWORD not in json.dumps(body)

    api.delete_run(run_id)  # deleting a run takes everything it recorded along, as in SQLite
    api.close()
    with open_store(postgres_url) as store:
        for table in ("runs", "keys", "scalar_chunks", "scalar_levels", "arrays", "array_data", "files"):
            assert store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table


def test_a_command_given_a_bad_postgresql_location_exits_1_without_the_password(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    wrong = postgres_server.url(postgres_url.rsplit("/", 1)[1], password="hunter2-" + PASSWORD)
    done = expertrack_cli("ls", "--dir", wrong)
    assert done.returncode == 1 and describe(wrong) in done.stderr
    assert "hunter2" not in done.stderr + done.stdout and "Traceback" not in done.stderr
