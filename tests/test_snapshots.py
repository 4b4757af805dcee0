"""Snapshots of runs to a directory standing in for a Modal Volume (expertrack.snapshots), with real processes:
periodic and final snapshots, one file per run and process, and a preempted run resumed by a second process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np

import expertrack
from expertrack import snapshots
from expertrack.store import SQLiteStore
from tests.stream.trainers import RESUMING


def start_trainer(tmp_path: Path, container: str, steps: int, pause: float) -> subprocess.Popen[str]:
    """The resuming trainer in its own "container": a local store of its own, the shared snapshot directory."""
    script = tmp_path / "trainer.py"
    script.write_text(RESUMING)
    env = {**os.environ, "EXPERTRACK_DIR": str(tmp_path / container), "EXPERTRACK_MIRROR": "off"}
    command = [sys.executable, str(script), str(tmp_path / "volume"), str(steps), str(pause)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def read_run(path: Path, run_id: str) -> tuple[str, list[int], list[float], int]:
    """A snapshot's run: its state, its loss series' steps and values, and how many runs the file holds."""
    with SQLiteStore(path, readonly=True) as store:
        steps, _times, values = store.read_scalars(run_id, "loss")
        state = store.run(run_id).state
        count = store.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    return state, [int(s) for s in steps], [float(v) for v in values], count


def test_a_finished_run_has_its_own_snapshot_file_holding_it_alone(tmp_path: Path) -> None:
    with expertrack.init(project="other", dir=tmp_path / "container", mirror="off") as other:  # not snapshotted
        other.log({"loss": 9.0})
    trainer = start_trainer(tmp_path, "container", steps=5, pause=0)
    assert trainer.wait(60) == 0
    [(run_id, paths)] = snapshots.snapshot_files(tmp_path / "volume").items()
    assert len(paths) == 1 and run_id != other.id
    state, steps, values, count = read_run(paths[0], run_id)
    assert (state, steps, count) == ("finished", list(range(5)), 1)
    assert values == [1.0 / (s + 1) for s in range(5)]
    assert not list((tmp_path / "volume").rglob("*.partial"))  # replaced whole, nothing left aside


def test_a_preempted_run_is_resumed_by_a_second_process_with_one_continuous_series(tmp_path: Path) -> None:
    first = start_trainer(tmp_path, "container-1", steps=10_000, pause=0.005)
    assert first.stdout is not None
    for line in first.stdout:  # training goes on until well past a periodic snapshot
        if line.startswith("step 150"):
            break
    first.send_signal(signal.SIGTERM)  # Modal's preemption
    assert first.wait(60) == -signal.SIGTERM
    [(run_id, [killed])] = snapshots.snapshot_files(tmp_path / "volume").items()
    state, steps, _values, _count = read_run(killed, run_id)
    assert state == "killed" and steps == list(range(len(steps))) and len(steps) > 150

    # a fresh container (an empty local store) resumes the run from the snapshot, at the next step
    second = start_trainer(tmp_path, "container-2", steps=len(steps) + 50, pause=0)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert f"started {run_id} at {len(steps)}" in out
    paths = snapshots.snapshot_files(tmp_path / "volume")[run_id]
    assert len(paths) == 2 and paths[0] == killed  # the newest snapshot last
    state, steps, values, _count = read_run(paths[-1], run_id)
    assert state == "finished"
    assert steps == list(range(len(steps))) and len(steps) > 200  # one series, no step twice, none missing
    assert values == [1.0 / (s + 1) for s in steps]
    with SQLiteStore(paths[-1], readonly=True) as store:
        experts = store.read_array(run_id, "experts", steps[-1])
        assert store.run(run_id).summary["best"] == 0.5
    assert np.array_equal(experts, np.full(4, float(steps[-1])))

    # both snapshots pulled: one run, its one continuous series (the newest snapshot holds the older's points)
    with SQLiteStore(tmp_path / "mine" / "store.db") as mine:
        found, report = snapshots.pull(str(tmp_path / "volume"), mine)
        assert (found, report.refused) == (1, [])
        assert [run.id for run in mine.runs()] == [run_id]
        assert mine.read_scalars(run_id, "loss")[0].tolist() == steps


def test_a_snapshot_is_a_consistent_copy_while_the_run_writes(tmp_path: Path) -> None:
    trainer = start_trainer(tmp_path, "container", steps=100_000, pause=0)
    assert trainer.stdout is not None
    for line in trainer.stdout:
        if line.startswith("step 3000"):
            break
    store = tmp_path / "container" / "store.db"
    run_id = next(iter(snapshots.snapshot_files(tmp_path / "volume")))
    for n in range(5):  # while the writer commits: each copy opens, passes an integrity check, reads a prefix
        target = tmp_path / "copies" / f"{n}.sqlite"
        snapshots.write_snapshot(store, run_id, target)
        with sqlite3.connect(target) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        _state, steps, _values, _count = read_run(target, run_id)
        assert steps == list(range(len(steps)))
    trainer.terminate()
    trainer.wait(60)
