"""Accelerate, for real (a plain PyTorch loop, random data, six steps on CPU): with ``ExpertrackTracker``, and
through ``log_with="wandb"`` under the stand-in turned on by ``EXPERTRACK_AS_WANDB=1`` alone (a launcher that
cannot be wrapped), with ``$EXPERTRACK_DIR`` choosing where the run goes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .training import TRAINERS, check, child_env, logged, series, the_run, train_natively

pytest.importorskip("accelerate")
pytestmark = pytest.mark.e2e


def assert_stored_as_logged(workdir: Path, tracking_dir: Path) -> None:
    run = the_run(tracking_dir)
    record = logged(workdir)
    for entry in record["logged"]:
        for key, value in entry["values"].items():
            if isinstance(value, dict):  # nested dicts are flattened with "/"
                for inner, number in value.items():
                    assert series(run, f"{key}/{inner}")[entry["step"]] == pytest.approx(number)
            else:
                assert series(run, key)[entry["step"]] == pytest.approx(value), (key, entry["step"])
    assert sorted(series(run, "eval/loss")) == [2, 5]
    assert run.config == record["config"]
    assert run.state == "finished" and run.name == "tiny-accelerate" and run.project == "accelerate"


def test_tracker_stores_every_logged_dict_at_its_step_and_the_config(tmp_path: Path) -> None:
    train_natively("accelerate_train.py", tmp_path)
    assert_stored_as_logged(tmp_path, tmp_path / "runs")


def test_log_with_wandb_under_the_environment_variable_stand_in(tmp_path: Path) -> None:
    env = child_env(tmp_path, EXPERTRACK_AS_WANDB="1", EXPERTRACK_DIR=str(tmp_path / "chosen"))
    command = [sys.executable, str(TRAINERS / "accelerate_train.py"), "wandb"]
    check(subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300))
    assert_stored_as_logged(tmp_path, tmp_path / "chosen")
