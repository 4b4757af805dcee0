"""Live replication (issue 13): a training process's run kept up to date in another store by a background process,
the target being down said once and caught up when it is back, a final copy at the end. Real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import expertrack
from tests.conftest import expertrack_cli
from tests.store.copying import contents, read_points

_TRAINING = """
import sys, time
from pathlib import Path
import pytest

import expertrack
target, go = sys.argv[1], Path(sys.argv[2])
run = expertrack.init(project="rep", replicate_to=target, mirror="off")
for step in range(400):
    run.log({"loss": 1.0 / (step + 1), "tokens": float(step * 4096)}, step=step)
    if step == 199:
        while not go.exists():  # the test looks at the target while this run is still training
            time.sleep(0.05)
run.finish()
"""


def _wait_for(what: str, check: object, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def _run_id(directory: Path) -> str | None:
    if not (directory / "store.db").exists():
        return None
    runs = expertrack.Api(directory).runs()
    return runs[0].id if runs else None


def _finished_in(directory: Path) -> bool:
    return _run_id(directory) is not None and expertrack.Api(directory).runs()[0].state == "finished"


def test_a_run_is_replicated_while_it_trains_through_the_target_being_down(tmp_path: Path) -> None:
    local, blocked, go = tmp_path / "local", tmp_path / "blocked", tmp_path / "go"
    blocked.write_text("a file where the target's directory should be: the target is down")
    target = blocked / "remote"
    err = tmp_path / "stderr.txt"
    env = {**os.environ, "EXPERTRACK_DIR": str(local), "EXPERTRACK_REPLICATE_POLL_S": "0.2"}
    with err.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", _TRAINING, str(target), str(go)], stderr=stderr, env=env, text=True
        )
    try:
        _wait_for("the target's failure to be said", lambda: "failed" in err.read_text())
        blocked.unlink()  # the target comes back while the run trains
        _wait_for(
            "the first 200 steps in the target", lambda: _run_id(target) and read_points(target, _run_id(target)) >= 400
        )
        assert expertrack.Api(target).runs()[0].state == "running"
        go.touch()
        assert child.wait(timeout=120) == 0, err.read_text()
    finally:
        child.kill()
    _wait_for("the final copy", lambda: _finished_in(target))
    assert contents(target) == contents(local)
    said = err.read_text()
    assert said.count("replication of run") == 2, said  # down once, back once
    assert "is back" in said and said.count("replicating run") == 1


def test_a_database_location_as_the_directory_writes_locally_and_never_shows_the_password(tmp_path: Path) -> None:
    url = "postgresql://trainer:s3cret-pw@127.0.0.1:1/runs"  # nothing listens on port 1: down for the whole run
    script = (
        "import expertrack\nrun = expertrack.init(project='p', mirror='off')\nrun.log({'loss': 1.0})\nrun.finish()\n"
    )
    env = {**os.environ, "EXPERTRACK_DIR": url, "EXPERTRACK_REPLICATE_DEADLINE_S": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "postgresql://trainer@127.0.0.1:1/runs" in proc.stderr and "s3cret-pw" not in proc.stderr
    local = tmp_path / "expertrack-runs"
    assert read_points(local, _run_id(local) or "") == 1  # written to the local default store as usual
    log = next((local / "replicate").glob("*.log"))  # the follower goes on there, then gives up naming the push
    _wait_for("the follower to give up", lambda: "expertrack push" in log.read_text())
    assert "s3cret-pw" not in log.read_text()


def test_expertrack_run_replicates_the_wrapped_command(tmp_path: Path) -> None:
    local, target = tmp_path / "local", tmp_path / "remote"
    command = [sys.executable, "-c", "for i in range(50): print(f'step {i}: loss={1.0 / (i + 1):.4f}')"]
    result = expertrack_cli("run", "--dir", str(local), "--replicate-to", str(target), "--", *command)
    assert result.returncode == 0, result.stderr
    _wait_for("the final copy", lambda: _finished_in(target))
    assert contents(target) == contents(local)
    assert read_points(target, _run_id(target) or "") >= 50


def test_a_location_that_is_no_store_is_refused_once_and_training_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for target in ("mysql://trainer:pw@db/runs", str(tmp_path / "runs")):  # another database; the run's own store
        run = expertrack.init(project="p", dir=tmp_path / "runs", replicate_to=target, mirror="off")
        run.log({"loss": 1.0})
        run.finish()
    said = capsys.readouterr().err
    assert "not replicating to mysql://trainer@db/runs: it is neither a directory nor a postgresql:// URL" in said
    assert f"not replicating to {tmp_path / 'runs'}: it is the run's own store" in said
    assert not any(p.name.startswith("mysql") for p in tmp_path.iterdir())
