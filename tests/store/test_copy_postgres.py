"""push/pull and live replication with a real PostgreSQL server (tests/pg.py): round trips SQLite <-> PostgreSQL bit
for bit, a push killed with SIGKILL completed without a duplicate, replication through the server being stopped
and restarted mid-run, and 8 training processes replicating to one database at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import expertrack
from expertrack.store.location import open_store
from tests.conftest import expertrack_cli, run_python
from tests.pg import PostgresServer
from tests.store.copying import contents, read_points, stored_points
from tests.store.test_copy import _KILLED_HALFWAY, _varied_run


def _wait_for(what: str, check: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def _states(url: str) -> dict[str, str]:
    try:
        with open_store(url, readonly=True) as store:
            return {r.id: r.state for r in store.runs()}
    except Exception:  # no schema yet, or the server is down
        return {}


def test_round_trips_sqlite_postgresql_sqlite_bit_for_bit(tmp_path: Path, postgres_url: str) -> None:
    local, back = tmp_path / "local", tmp_path / "back"
    run_id = _varied_run(local)
    pushed = expertrack_cli("push", "--dir", str(local), "--to", postgres_url)
    assert pushed.returncode == 0, pushed.stderr
    assert "pg-test-secret" not in pushed.stdout + pushed.stderr
    assert contents(postgres_url) == contents(local)
    again = expertrack_cli("push", "--dir", str(local), "--to", postgres_url)
    assert ": 0 points, 0 arrays, 0 file chunks, 0 alerts new" in again.stdout
    pulled = expertrack_cli("pull", run_id, "--from", postgres_url, "--dir", str(back))
    assert pulled.returncode == 0, pulled.stderr
    assert contents(back) == contents(local)
    assert stored_points(postgres_url, run_id) == read_points(postgres_url, run_id) == 9000


def test_a_push_to_postgresql_killed_halfway_is_completed_with_no_duplicate(tmp_path: Path, postgres_url: str) -> None:
    local = tmp_path / "local"
    run = expertrack.init(project="copy", dir=local, mirror="off")
    for step in range(20_000):
        run.log({f"layer{k}/grad_norm": step + k / 10 for k in range(8)}, step=step)
    run.finish()
    code = _KILLED_HALFWAY.replace("sys.argv[1]", repr(str(local))).replace("sys.argv[2]", repr(postgres_url))
    killed = run_python(code, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    half = read_points(postgres_url, run.id)
    assert 0 < half < 160_000 and stored_points(postgres_url, run.id) == half
    done = expertrack_cli("push", "--dir", str(local), "--to", postgres_url)
    assert done.returncode == 0, done.stderr
    assert contents(postgres_url) == contents(local)
    assert stored_points(postgres_url, run.id) == 160_000


_TRAINING = """
import sys, time
from pathlib import Path
import expertrack
target, go = sys.argv[1], Path(sys.argv[2])
run = expertrack.init(project="rep", replicate_to=target, mirror="off")
print(run.id, flush=True)
for step in range(int(sys.argv[3])):
    run.log({"loss": 1.0 / (step + 1), "tokens": float(step * 4096)}, step=step)
    if step % 50 == 0:
        time.sleep(0.01)
    if step == 199:
        while not go.exists():  # the test stops and restarts the database while this run trains
            time.sleep(0.05)
run.finish()
"""


def test_replication_through_postgresql_stopped_and_restarted_mid_run(
    tmp_path: Path, postgres_url: str, postgres_server: PostgresServer
) -> None:
    local, go, err = tmp_path / "local", tmp_path / "go", tmp_path / "stderr.txt"
    env = {**os.environ, "EXPERTRACK_DIR": str(local), "EXPERTRACK_REPLICATE_POLL_S": "0.2"}
    with err.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", _TRAINING, postgres_url, str(go), "600"],
            stdout=subprocess.PIPE, stderr=stderr, env=env, text=True,
        )  # fmt: skip
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        _wait_for("the first steps in PostgreSQL", lambda: run_id in _states(postgres_url))
        postgres_server.stop()  # the database goes down while the run trains
        try:
            _wait_for("the outage to be said", lambda: "failed" in err.read_text())
        finally:
            postgres_server.start()
        _wait_for("the database's return to be said", lambda: "is back" in err.read_text())
        go.touch()
        assert child.wait(timeout=120) == 0, err.read_text()
    finally:
        child.kill()
    _wait_for("the final copy", lambda: _states(postgres_url).get(run_id) == "finished")
    assert contents(postgres_url) == contents(local)
    assert read_points(postgres_url, run_id) == 1200
    said = err.read_text()
    assert "pg-test-secret" not in said
    assert said.count("failed (") == 1 and said.count("is back:") == 1, said  # each said once


_ONE_OF_EIGHT = """
import sys, expertrack
run = expertrack.init(project="eight", name=f"p{sys.argv[1]}", replicate_to=sys.argv[2], mirror="off")
for step in range(3000):
    run.log({"loss": 1.0 / (step + 1), "rank_of_process": float(sys.argv[1])}, step=step)
run.finish()
"""


def test_eight_processes_replicating_to_one_database_lose_nothing(tmp_path: Path, postgres_url: str) -> None:
    local = tmp_path / "local"
    env = {**os.environ, "EXPERTRACK_DIR": str(local)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _ONE_OF_EIGHT, str(i), postgres_url], env=env, stderr=subprocess.PIPE)
        for i in range(8)
    ]
    for proc in procs:
        _out, said = proc.communicate(timeout=300)
        assert proc.returncode == 0, said
    _wait_for("every final copy", lambda: list(_states(postgres_url).values()) == ["finished"] * 8)
    assert contents(postgres_url) == contents(local)
    for run_id in _states(postgres_url):
        assert stored_points(postgres_url, run_id) == read_points(postgres_url, run_id) == 6000
