"""`expertrack sync` killed with SIGKILL mid-run, then run again: W&B (its offline mode, read back) gets each step
once, because the saved position never lags what W&B was handed."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import expertrack
from expertrack.mirror.state import read_state
from expertrack.mirror.wandb_log import read_run
from expertrack.paths import store_path
from expertrack.store import SQLiteStore

from ..conftest import expertrack_cli
from .wandb_offline import offline_env, wandb_logs

pytest.importorskip("wandb")
pytestmark = pytest.mark.e2e

STEPS = 20_000  # wandb.log takes ~0.1 ms offline: the sync must still be sending when it is killed


def _cursor(tracking_dir: Path, run_id: str) -> int:
    with SQLiteStore(store_path(tracking_dir), readonly=True) as store:
        state = read_state(store, run_id)
    return -1 if state is None or state.cursor_step is None else state.cursor_step


def _rows_in_wandb(wandb_dir: Path) -> int:
    """History rows W&B has written so far (the log being written: a cut-off last record is left out)."""
    return sum(read_run(log).record_counts.get("history", 0) for log in wandb_logs(wandb_dir))


def test_sync_killed_then_run_again_resends_nothing(tmp_path: Path, tracking_dir: Path) -> None:
    run = expertrack.init(project="killed", id="kill1", mirror="off")
    for step in range(STEPS):
        run.log({"train/loss": 1.0 / (step + 1), "tokens": step * 512})
    run.finish()
    wandb_dir = tmp_path / "wandb"
    env = offline_env(wandb_dir)
    first = subprocess.Popen(
        [str(Path(sys.executable).with_name("expertrack")), "sync", "kill1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while _rows_in_wandb(wandb_dir) < 3000:  # killed once W&B holds a few thousand steps, whatever was saved
        assert first.poll() is None and time.monotonic() < deadline, "sync ended before it could be killed"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = _cursor(tracking_dir, "kill1")
    assert killed_at < STEPS - 1

    again = expertrack_cli("sync", "kill1", env=env)
    assert again.returncode == 0, again.stderr
    sent: collections.Counter[int] = collections.Counter()
    for log in wandb_logs(wandb_dir):
        sent.update(row["_step"] for row in read_run(log).history)
    twice = sorted(step for step, count in sent.items() if count > 1)
    # at most the one step whose wandb.log had returned when the kill came, before its position was saved
    assert len(twice) <= 1, f"{len(twice)} steps sent twice, from {twice[:1]} to {twice[-1:]}"
    missing = sorted(set(range(STEPS)) - set(sent))
    assert not missing, f"{len(missing)} missing, {missing[:3]}..{missing[-3:]}; killed at {killed_at}; {len(sent)}"
