"""A script written for W&B runs unchanged with ``import expertrack as wandb``; every value lands at its step."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import expertrack_cli, run_python

WANDB_SCRIPT = """
import expertrack as wandb

run = wandb.init(project="compat", name="w-script", config={"lr": 0.001, "layers": 4}, tags=["a", "b"],
                 group="g1", notes="from a wandb script")
wandb.config.update({"batch_size": 32})
wandb.config.dropout = 0.1
wandb.define_metric("val/loss", summary="min")
for i in range(10):                                   # implicit steps 0..9
    wandb.log({"train/loss": 10.0 - i, "lr": 0.001})
for s in (20, 30, 40):                                # explicit steps
    wandb.log({"val/loss": s / 10.0}, step=s)
wandb.log({"val/loss": 1.5}, step=50)
wandb.log({"part/a": 1.0}, commit=False)              # accumulates into step 50
wandb.log({"part/b": 2.0})                            # commits step 50
wandb.log({"after": 7.0})                             # step 51
wandb.summary["final_note"] = "done"
print("RUN_ID", run.id)
wandb.finish()
"""


def test_wandb_script_runs_unchanged(tracking_dir: Path) -> None:
    proc = run_python(WANDB_SCRIPT)
    run_id = proc.stdout.split("RUN_ID ")[1].split()[0]

    import expertrack

    run = expertrack.Api(tracking_dir).run(run_id)
    assert run.state == "finished" and run.exit_code == 0
    assert (run.name, run.project, run.group, run.tags, run.notes) == (
        "w-script",
        "compat",
        "g1",
        ["a", "b"],
        "from a wandb script",
    )
    assert run.config == {"lr": 0.001, "layers": 4, "batch_size": 32, "dropout": 0.1}

    steps, _, values = run.scalars("train/loss")
    assert steps.tolist() == list(range(10))
    assert values.tolist() == [10.0 - i for i in range(10)]
    steps, _, values = run.scalars("val/loss")
    assert steps.tolist() == [20, 30, 40, 50]
    assert values.tolist() == [2.0, 3.0, 4.0, 1.5]
    assert run.scalars("part/a")[0].tolist() == [50]
    assert run.scalars("part/b")[0].tolist() == [50]
    assert run.scalars("after")[0].tolist() == [51]

    assert run.summary["val/loss"] == {"min": 1.5}  # define_metric(summary="min"), as wandb keeps it
    assert run.summary["train/loss"] == 1.0  # last value by default
    assert run.summary["final_note"] == "done"

    history = run.history()
    row = history[history["_step"] == 50].iloc[0]
    assert row["val/loss"] == 1.5 and row["part/a"] == 1.0 and row["part/b"] == 2.0
    assert math.isnan(row["train/loss"])


def test_wandb_script_values_through_show(tracking_dir: Path) -> None:
    proc = run_python(WANDB_SCRIPT)
    run_id = proc.stdout.split("RUN_ID ")[1].split()[0]
    shown = expertrack_cli("show", run_id, "--dir", str(tracking_dir))
    assert shown.returncode == 0, shown.stderr
    for text in ("w-script", "compat", "finished", "batch_size", "32", "val/loss", "1.5", "final_note"):
        assert text in shown.stdout, text


SAME_SCRIPT = """
import json, sys
import numpy as np
import torch
import {module} as wandb

run = wandb.init(project="same", config={{"lr": 0.1, "api_key": "s3cret"}}, config_exclude_keys=["api_key"])
acc = torch.zeros(())
for step in range(3):
    acc += step + 1
    wandb.log({{"acc": acc, "dp_loss": torch.tensor([0.5]), "n1": np.array([1.5]), "n11": np.array([[2.5]])}})
    acc.zero_()                                       # reset right after log(): the logged value must stay
wandb.summary.best = 5                                # attribute style, module-level and on the run
run.summary.best2 = 6
run.summary["loss"] = 99
wandb.log({{"loss": 0.01}})                          # logged after the value set by hand: it wins
keys = ["acc", "dp_loss", "n1", "n11", "best", "best2", "loss"]
print("RESULT", json.dumps({{"summary": {{k: run.summary[k] for k in keys}}, "config": dict(run.config)}}))
wandb.finish()
"""


def test_values_and_summary_match_wandb_offline(tmp_path: Path, tracking_dir: Path) -> None:
    pytest.importorskip("wandb")
    pytest.importorskip("torch")
    results = {}
    for module in ("wandb", "expertrack"):
        env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path), "EXPERTRACK_MIRROR": "off"}
        proc = run_python(SAME_SCRIPT.format(module=module), env=env)
        results[module] = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert results["expertrack"] == results["wandb"]
    assert results["wandb"]["summary"]["acc"] == 3 and results["wandb"]["config"] == {"lr": 0.1}
