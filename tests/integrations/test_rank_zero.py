"""Rank zero only: under a 2-process launch (torchrun, gloo on CPU) each integration makes one run, holding rank
zero's values, not one run per process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import expertrack

from .training import TRAINERS, check, child_env, series

pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pytest.importorskip("lightning")
pytestmark = pytest.mark.e2e


def launch(workdir: Path, script: str, *args: str) -> None:
    """``torchrun --standalone --nproc_per_node 2 SCRIPT native ARGS`` (no network: a local rendezvous)."""
    env = child_env(workdir, EXPERTRACK_DIR=str(workdir / "runs"))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(TRAINERS / script), *args]
    check(subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300))


def test_trainer_callback_and_accelerate_tracker_record_one_run_each_from_rank_zero(tmp_path: Path) -> None:
    launch(tmp_path, "ranks_train.py")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2
    stored = expertrack.Api(tmp_path / "runs").runs()
    assert sorted(run.name for run in stored) == ["ranks-accelerate", "ranks-hf"]  # not one per process
    runs = {run.name: run for run in stored}
    assert all(run.state == "finished" for run in runs.values())
    assert series(runs["ranks-accelerate"], "rank_value") == dict(enumerate(ranks[0]["accelerate"]))
    losses = {entry["step"]: entry["loss"] for entry in ranks[0]["hf"] if "loss" in entry}
    assert series(runs["ranks-hf"], "train/loss") == pytest.approx(losses)


def test_lightning_logger_records_one_run_from_rank_zero_under_ddp(tmp_path: Path) -> None:
    launch(tmp_path, "lightning_train.py", "native", "--ddp")
    (run,) = expertrack.Api(tmp_path / "runs").runs()
    rows = json.loads((tmp_path / "logged.json").read_text())["rows"]
    assert run.state == "finished"
    assert series(run, "train_loss") == pytest.approx(
        {int(r["step"]): r["train_loss"] for r in rows if "train_loss" in r}
    )
