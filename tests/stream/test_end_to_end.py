"""The stream end to end with real processes: a training script streaming its records on stdout, a stand-in
launcher relaying that stdout in pieces, and ``expertrack run`` rebuilding the run in the local store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import expertrack
from expertrack.store import SQLiteStore
from expertrack.stream import MARKER
from tests.conftest import expertrack_cli
from tests.stream.trainers import PREEMPTING_RELAY, RELAY, RESUMING, STREAMING

EXPERTRACK = str(Path(sys.executable).with_name("expertrack"))


def wrap_relayed(tmp_path: Path, steps: int, mode: str = "auto") -> subprocess.CompletedProcess[bytes]:
    """``expertrack run -- python relay.py env EXPERTRACK_STREAM=stdout python trainer.py STEPS``: the trainer (its
    store in ``remote``, its snapshots in ``volume``) streams, as a Modal container does; the wrapper (its store in
    ``local``) does not."""
    (tmp_path / "trainer.py").write_text(STREAMING)
    (tmp_path / "relay.py").write_text(RELAY)
    remote = ["env", "EXPERTRACK_STREAM=stdout", f"EXPERTRACK_DIR={tmp_path / 'remote'}"]
    remote += [f"EXPERTRACK_SNAPSHOT_DIR={tmp_path / 'volume'}", sys.executable]  # and snapshots, as on Modal
    command = [sys.executable, "relay.py", *remote, "trainer.py", str(steps)]
    wrapper = [EXPERTRACK, "run", "--mirror", "off", "--dir", str(tmp_path / "local"), "--stdout", mode, "--"]
    return subprocess.run([*wrapper, *command], cwd=tmp_path, capture_output=True, timeout=120)


def series(directory: Path, run_id: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with SQLiteStore(directory / "store.db", readonly=True) as store:
        return store.read_scalars(run_id, key)


def same_series(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("mode", ["pty", "pipe"])  # a pty turns each newline into CR LF
def test_the_wrapper_rebuilds_the_relayed_run_with_its_id_and_every_point(tmp_path: Path, mode: str) -> None:
    done = wrap_relayed(tmp_path, steps=300, mode=mode)
    assert done.returncode == 0, done.stderr.decode()
    assert b"@@xt1" not in done.stdout  # the terminal never shows a tagged line ...
    assert done.stdout.count(b"of my own output") == 300  # ... and shows every line of the program's own
    [remote] = expertrack.Api(tmp_path / "remote").runs()
    local = {run.id: run for run in expertrack.Api(tmp_path / "local").runs()}
    assert remote.id in local and len(local) == 2  # the rebuilt run, with its id, and the wrapper's own run
    rebuilt = local.pop(remote.id)
    assert (rebuilt.name, rebuilt.project, rebuilt.state, rebuilt.tags) == ("streamed", "remote", "finished", ["modal"])
    assert rebuilt.config == remote.config == {"lr": 0.01, "layers": 2}
    assert rebuilt.created_at == remote.created_at  # the same run, as expertrack pull matches runs
    assert rebuilt.summary == remote.summary and rebuilt.summary["best"] == 0.25 and "gone" not in rebuilt.summary
    for key in ("loss", "nan", "tokens"):  # same steps, same wall times, same values (NaN included)
        assert same_series(series(tmp_path / "local", remote.id, key), series(tmp_path / "remote", remote.id, key))
    assert np.array_equal(rebuilt.array("experts", 290), np.arange(4.0) * 290)
    assert rebuilt.file("notes.txt") == b"hello"
    [wrapper_run] = local.values()
    console = wrapper_run.file("console.log") or b""
    assert b"@@xt1" not in console and console.count(b"of my own output") == 300

    # the same run's snapshot, pulled afterwards, adds nothing: the run seen live is the run, not a second one
    pulled = expertrack_cli("pull", "--from", str(tmp_path / "volume"), "--dir", str(tmp_path / "local"))
    assert pulled.returncode == 0, pulled.stderr
    # (a file's chunks carry the time each side stored them: the snapshot's copy of the file replaces the streamed)
    assert "pulled 1 run" in pulled.stdout and "0 points, 0 arrays" in pulled.stdout
    runs = {run.id: run for run in expertrack.Api(tmp_path / "local").runs()}
    assert len(runs) == 2 and runs[remote.id].file("notes.txt") == b"hello"
    for key in ("loss", "nan", "tokens"):
        assert same_series(series(tmp_path / "local", remote.id, key), series(tmp_path / "remote", remote.id, key))


def test_a_preempted_run_resumed_in_a_new_container_is_one_run_in_the_local_store(tmp_path: Path) -> None:
    (tmp_path / "relay.py").write_text(PREEMPTING_RELAY)
    (tmp_path / "trainer.py").write_text(RESUMING)
    command = [sys.executable, "relay.py", str(tmp_path / "volume"), "trainer.py", "300"]
    wrapper = [EXPERTRACK, "run", "--mirror", "off", "--dir", str(tmp_path / "local"), "--"]
    done = subprocess.run([*wrapper, *command], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.count(b"started ") == 2 and MARKER not in done.stdout
    runs = {run.name: run for run in expertrack.Api(tmp_path / "local").runs()}
    resumed = runs["resumable"]  # one run for both containers, finished by the second
    assert resumed.state == "finished" and len(runs) == 2
    steps, _times, values = series(tmp_path / "local", resumed.id, "loss")
    assert steps.tolist() == list(range(300)) and values.tolist() == [1.0 / (s + 1) for s in range(300)]
    container = series(tmp_path / "container-2", resumed.id, "loss")  # the second container's own store
    assert same_series((steps, _times, values), container)
