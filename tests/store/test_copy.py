"""push/pull between two stores (issue 13): every point bit for bit, idempotent, resumable after a SIGKILL, and
refusing to merge two different runs of one id. Real stores, real processes, the real console script."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import numpy as np

import expertrack
from expertrack.store.copy import copy_run, copy_runs
from expertrack.store.location import open_store
from tests.conftest import expertrack_cli, run_python
from tests.store.copying import contents, read_points, stored_points


def _varied_run(directory: Path, steps: int = 3000) -> str:
    """A finished run with everything a store holds: NaN and +-inf points, arrays, files, summary, config, alerts."""
    run = expertrack.init(project="copy", dir=directory, config={"lr": 3e-4, "model": {"experts": 8}}, mirror="off")
    for step in range(steps):
        value = math.nan if step == 5 else math.inf if step == 7 else -math.inf if step == 9 else math.sin(step)
        run.log({"loss": 1.0 / (step + 1), "odd": value, "moe/maxvio": step * 1e-3}, step=step)
        if step % 1000 == 0:
            run.log({"router/tokens": np.arange(8, dtype=np.int64) * step}, step=step)
    run.attach_file("notes.txt", b"first")
    run.append_file("console.log", b"line 1\n")
    run.append_file("console.log", b"line 2\n")
    run.summary["best"] = 0.5
    run.finish()
    return run.id


def test_push_copies_every_point_bit_for_bit_and_again_adds_nothing(tmp_path: Path) -> None:
    local, remote, back = tmp_path / "local", tmp_path / "remote", tmp_path / "back"
    run_id = _varied_run(local)
    first = expertrack_cli("push", "--dir", str(local), "--to", str(remote))
    assert first.returncode == 0, first.stderr
    assert f"pushed 1 run to {remote}: 9,000 points, 3 arrays" in first.stdout
    assert contents(remote) == contents(local)
    assert contents(remote)[run_id]["alerts"]  # the NaN and inf alerts came along
    again = expertrack_cli("push", run_id, "--dir", str(local), "--to", str(remote))
    assert again.returncode == 0, again.stderr
    assert ": 0 points, 0 arrays, 0 file chunks, 0 alerts new" in again.stdout
    assert stored_points(remote, run_id) == read_points(remote, run_id) == 9000
    pulled = expertrack_cli("pull", "--from", str(remote), "--dir", str(back))
    assert pulled.returncode == 0, pulled.stderr
    assert contents(back) == contents(local)


def test_a_running_run_is_copied_as_far_as_it_is_then_completed(tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "remote"
    run = expertrack.init(project="copy", dir=local, mirror="off")
    for step in range(500):
        run.log({"loss": float(step), "lr": 1e-3}, step=step)
    assert run.flush()  # the newest points are in the writer's pieces, not yet sealed into chunks
    with open_store(local, readonly=True) as source, open_store(remote) as target:
        assert copy_runs(source, target).points == 1000
    assert read_points(remote, run.id) == 1000
    assert expertrack.Api(remote).run(run.id).state == "running"
    for step in range(500, 900):
        run.log({"loss": float(step), "lr": 1e-3}, step=step)
    run.log({"loss": -1.0}, step=899)  # the last point replaced at its step: the copy there is replaced too
    run.flush()
    with open_store(local, readonly=True) as source, open_store(remote) as target:
        assert copy_runs(source, target).points == 800
    run.finish()
    with open_store(local, readonly=True) as source, open_store(remote) as target:
        report = copy_runs(source, target)
    assert contents(remote) == contents(local)
    assert stored_points(remote, run.id) == read_points(remote, run.id) == 1800
    assert expertrack.Api(remote).run(run.id).state == "finished"
    assert report.replaced == []


_KILLED_HALFWAY = """
import os, signal, sys
from expertrack.store import copy
from expertrack.store.location import open_store
copy.TRANSACTION_POINTS = 20_000  # many transactions, so "halfway" falls between two of them
batches = []
def progress(run_id, points):
    batches.append(points)
    if len(batches) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
source, target = open_store(sys.argv[1], readonly=True), open_store(sys.argv[2])
copy.copy_runs(source, target, progress=progress)
"""


def test_a_push_killed_halfway_is_completed_by_the_next_with_no_duplicate(tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "remote"
    run = expertrack.init(project="copy", dir=local, mirror="off")
    for step in range(20_000):
        run.log({f"layer{k}/grad_norm": step + k / 10 for k in range(8)}, step=step)
    run.finish()
    killed = run_python(
        _KILLED_HALFWAY.replace("sys.argv[1]", repr(str(local))).replace("sys.argv[2]", repr(str(remote))), check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    half = read_points(remote, run.id)
    assert 0 < half < 160_000 and stored_points(remote, run.id) == half
    assert expertrack.Api(remote).run(run.id).state != "finished"  # not shown as finished with half its points
    done = expertrack_cli("push", "--dir", str(local), "--to", str(remote))
    assert done.returncode == 0, done.stderr
    assert f"{160_000 - half:,} points" in done.stdout
    assert contents(remote) == contents(local)
    assert stored_points(remote, run.id) == 160_000


def test_two_different_runs_of_one_id_are_refused_by_name(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for directory, project in ((mine, "alpha"), (theirs, "beta")):
        run = expertrack.init(project=project, id="shared-id", dir=directory, mirror="off")
        run.log({"loss": 1.0 if project == "alpha" else 2.0})
        run.finish()
    other = expertrack.init(project="alpha", dir=mine, mirror="off")
    other.log({"loss": 3.0})
    other.finish()
    before = contents(theirs)
    result = expertrack_cli("push", "--dir", str(mine), "--to", str(theirs))
    assert result.returncode == 1
    assert "refused run shared-id" in result.stderr and "two different runs" in result.stderr
    assert "pushed 1 run" in result.stdout  # the other run is copied all the same
    after = contents(theirs)
    assert after["shared-id"] == before["shared-id"]
    assert after[other.id] == contents(mine)[other.id]


def test_bad_locations_are_one_message_naming_them_without_a_password(tmp_path: Path) -> None:
    missing = expertrack_cli("pull", "--from", str(tmp_path / "nowhere"), "--dir", str(tmp_path / "local"))
    assert missing.returncode == 1 and f"no expertrack store at {tmp_path / 'nowhere'}" in missing.stderr
    not_ours = tmp_path / "other.db"
    not_ours.write_bytes(b"not a database at all" * 100)
    _varied_run(tmp_path / "local", steps=10)
    bad = expertrack_cli("push", "--dir", str(tmp_path / "local"), "--to", str(not_ours))
    assert bad.returncode == 1 and str(not_ours) in bad.stderr and "Traceback" not in bad.stderr
    url = "postgresql://trainer:s3cret-pw@127.0.0.1:1/runs"
    down = expertrack_cli("push", "--dir", str(tmp_path / "local"), "--to", url)
    assert down.returncode == 1 and "postgresql://trainer@127.0.0.1:1/runs" in down.stderr
    assert "s3cret-pw" not in down.stderr + down.stdout


def test_a_series_written_in_both_stores_since_is_replaced_by_the_source_s_and_said(tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "remote"
    run = expertrack.init(project="copy", id="diverged", dir=local, mirror="off")
    for step in range(100):
        run.log({"loss": float(step), "lr": 0.1}, step=step)
    run.finish()
    assert expertrack_cli("push", "--dir", str(local), "--to", str(remote)).returncode == 0
    for directory, value in ((remote, -1.0), (local, 1.0)):  # step 100 logged in each store, differently
        again = expertrack.init(project="copy", id="diverged", resume="allow", dir=directory, mirror="off")
        again.log({"loss": value}, step=100)
        again.finish()
    with open_store(local, readonly=True) as source, open_store(remote) as target:
        report = copy_run(source, target, "diverged", tails_only=True)  # a replication's copy of new points
        assert copy_runs(source, target).changed == 0
    assert report.replaced == ["diverged/loss"] and report.points == 101  # lr was a prefix: untouched
    assert contents(remote) == contents(local)
    assert stored_points(remote, "diverged") == 201
