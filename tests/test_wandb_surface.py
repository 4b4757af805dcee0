"""The rest of wandb's module-level calls: a script using login, watch, save, alert, Settings and media objects
runs unchanged under ``import expertrack as wandb``, and what has a local meaning is done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import expertrack

SCRIPT = """
import torch
import expertrack as wandb

wandb.login()
run = wandb.init(project="surface", settings=wandb.Settings(start_method="thread", _disable_stats=True))
model = torch.nn.Linear(2, 2)
wandb.watch(model, log="all", log_freq=10)
open("notes.txt", "w").write("lr sweep, seed 0")
open("huge.bin", "wb").write(b"x" * (17 << 20))
saved = wandb.save("*.txt") + wandb.save("*.bin")
for step in range(3):
    wandb.log({"loss": 1.0 / (step + 1), "samples": wandb.Image(None), "table": wandb.Table(columns=["a"])})
wandb.alert(title="loss is low", text="below 0.5")
wandb.unwatch(model)
wandb.finish()
print("saved", saved)
"""


def test_a_wandb_script_with_login_watch_save_alert_and_media_runs_unchanged(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"EXPERTRACK_DIR": str(tmp_path / "runs"), "EXPERTRACK_MIRROR": "off", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "saved ['notes.txt']" in result.stdout
    err = result.stderr
    assert err.count("watch(): gradient and parameter histograms are not recorded") == 1
    assert "save(): huge.bin is 17 MiB, over 16 MiB; not stored with the run" in err
    assert err.count("loss is low: below 0.5") == 1  # an alert: printed once, and stored with the run
    assert err.count("'samples' is a Image") == 1  # media: said once, not stored; the numbers are
    (run,) = expertrack.Api(tmp_path / "runs").runs()
    assert run.state == "finished"
    assert run.scalars("loss")[2].tolist() == [1.0, 0.5, 1.0 / 3]
    assert run.file("notes.txt") == b"lr sweep, seed 0"
    assert "samples" not in run.metric_keys() and "samples" not in run.array_keys()
    (alert,) = run.alerts()
    assert (alert.rule, alert.message, alert.step) == ("wandb", "loss is low: below 0.5", 2)


def test_save_without_a_run_stores_nothing_and_says_so(capsys) -> None:
    assert expertrack.current_run() is None
    assert expertrack.save("*.py") == []
    assert "save(): no run" in capsys.readouterr().err


def test_module_level_summary_keys_can_be_deleted(tmp_path: Path) -> None:
    run = expertrack.init(project="surface", dir=tmp_path, mirror="off")
    expertrack.summary["best"] = 1.0
    expertrack.summary["note"] = "x"
    del expertrack.summary["best"]
    assert "best" not in expertrack.summary and expertrack.summary["note"] == "x"
    run.finish()
    assert "best" not in expertrack.Api(tmp_path).run(run.id).summary
