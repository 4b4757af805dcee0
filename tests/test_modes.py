"""WANDB_MODE governs the W&B mirror only; init(mode="disabled") and EXPERTRACK_MODE=disabled turn tracking off,
and then nothing claims to track."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import expertrack
from tests.conftest import expertrack_cli

TRAINER = "print('step 1/1: train loss 2.500000 (1.0 ms, 100 tok/s)')\nraise SystemExit(3)\n"


def test_wandb_mode_disabled_keeps_local_tracking(
    tracking_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run = expertrack.init(project="p", mirror="wandb")
    run.log({"loss": 0.5})
    run.finish()
    stored = expertrack.Api(tracking_dir).run(run.id)
    assert stored.scalars("loss")[2].tolist() == [0.5] and stored.state == "finished"
    assert "WANDB_MODE=disabled: not mirroring to W&B" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_disabled_mode_stores_nothing(tracking_dir: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "environment":
        monkeypatch.setenv("EXPERTRACK_MODE", "disabled")
    run = expertrack.init(project="p", mode="disabled" if how == "argument" else None)
    run.log({"loss": 0.5})
    run.finish()
    assert not tracking_dir.exists()


def test_expertrack_run_under_wandb_mode_disabled_tracks(tmp_path: Path, tracking_dir: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    proc = expertrack_cli("run", "--", sys.executable, str(script), env={"WANDB_MODE": "disabled"})
    assert proc.returncode == 3
    assert "tracking run" in proc.stderr
    (stored,) = expertrack.Api(tracking_dir).runs()
    assert stored.scalars("train_loss")[2].tolist() == [2.5] and stored.exit_code == 3


def test_expertrack_run_disabled_says_so_and_stores_nothing(tmp_path: Path, tracking_dir: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    proc = expertrack_cli("run", "--", sys.executable, str(script), env={"EXPERTRACK_MODE": "disabled"})
    assert proc.returncode == 3 and "step 1/1" in proc.stdout
    assert "tracking run" not in proc.stderr
    assert "EXPERTRACK_MODE=disabled: running the command untracked (nothing is stored)" in proc.stderr
    assert not tracking_dir.exists()
