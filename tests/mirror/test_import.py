"""``expertrack import wandb DIR`` then ``expertrack sync``: the history comes back the same (a round trip)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from expertrack.mirror.wandb_log import read_run
from expertrack.paths import store_path
from expertrack.store import SQLiteStore

from ..conftest import expertrack_cli
from .wandb_offline import offline_env, run_wandb_script, wandb_logs

pytest.importorskip("wandb")

SOURCE = """
import numpy as np, wandb
run = wandb.init(project="imported", name="from-wandb", id="wb42", group="grp", tags=["a", "b"], notes="n",
                 config={"lr": 0.01, "arch": {"layers": 2}})
run.define_metric("val/*", summary="max")
for s in range(60):
    row = {"loss": 1.0 / (s + 1), "count": s, "flag": s % 3 == 0, "nested": {"x": s * 0.5}}
    if s % 10 == 0:
        row["val/acc"] = s / 100
        row["label"] = "text"
        row["img"] = wandb.Image(np.zeros((4, 4)))
    if s == 30:
        row["loss"] = float("nan")
    run.log(row, step=s * 2)
run.summary["best"] = 0.5
run.finish()
"""


def numeric_history(path: Path) -> dict[tuple[int, str], float]:
    out: dict[tuple[int, str], float] = {}
    for row in read_run(path, strict=True).history:
        for key, value in row.items():
            if not key.startswith("_") and isinstance(value, (int, float)):
                out[(row["_step"], key)] = float(value)
    return out


def assert_same(a: dict[tuple[int, str], float], b: dict[tuple[int, str], float]) -> None:
    assert set(a) == set(b)
    for point, value in a.items():
        assert value == b[point] or (math.isnan(value) and math.isnan(b[point])), point


def test_import_then_sync_round_trip(tmp_path: Path, tracking_dir: Path) -> None:
    source_dir = tmp_path / "source"
    run_wandb_script(SOURCE, source_dir)
    (source_log,) = wandb_logs(source_dir)
    original = numeric_history(source_log)
    assert (2, "loss") in original and (60, "nested/x") in original and (0, "flag") in original

    env = offline_env(tmp_path / "out", EXPERTRACK_DIR=str(tracking_dir))
    imported = expertrack_cli("import", "wandb", str(source_dir / "wandb"), env=env)
    assert imported.returncode == 0, imported.stderr
    assert "wb42  from-wandb: imported 60 steps, 5 keys into project 'imported'" in imported.stdout
    assert "left out values that are not numbers: img (6), label (6)" in imported.stdout
    assert (source_dir / "wandb" / "latest-run").is_symlink()
    assert "whose step an earlier directory" not in imported.stdout  # latest-run is not read as a second piece

    with SQLiteStore(store_path(tracking_dir), readonly=True) as store:
        record = store.run("wb42")
        assert (record.project, record.name, record.group, record.notes) == ("imported", "from-wandb", "grp", "n")
        assert record.tags == ["a", "b"] and record.config == {"lr": 0.01, "arch": {"layers": 2}}
        assert record.summary["best"] == 0.5 and record.summary["val/acc"] == {"max": 0.5}  # define_metric's max
        local = {}
        for key in store.scalar_keys("wb42"):
            steps, _, values = store.read_scalars("wb42", key)
            local.update({(int(s), key): float(v) for s, v in zip(steps, values)})
    assert_same(local, original)
    # wall times are the W&B run's, not the import's
    source = read_run(source_log, strict=True)
    logged_at = {row["_step"]: row["_timestamp"] for row in source.history}
    with SQLiteStore(store_path(tracking_dir), readonly=True) as store:
        steps, times, _ = store.read_scalars("wb42", "loss")
        record = store.run("wb42")
    assert times.tolist() == pytest.approx([logged_at[int(s)] for s in steps], abs=1e-6)
    assert source.start_time is not None and record.created_at == pytest.approx(source.start_time)
    assert record.ended_at is not None and source.start_time <= record.ended_at <= max(logged_at.values()) + 60

    again = expertrack_cli("import", "wandb", str(source_dir / "wandb"), env=env)
    # importing twice does not duplicate the run, and says so once
    assert again.stdout.count("wb42  from-wandb: skipped: a run with id wb42 is already in") == 1

    synced = expertrack_cli("sync", "wb42", env=env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    (round_trip,) = wandb_logs(tmp_path / "out")
    assert_same(numeric_history(round_trip), original)
    back = read_run(round_trip, strict=True)
    assert (back.run_id, back.project, back.name, back.tags) == ("wb42", "imported", "from-wandb", ["a", "b"])
    assert back.config == {"lr": 0.01, "arch": {"layers": 2}} and back.summary["best"] == 0.5


def test_import_rejects_a_directory_without_runs(tmp_path: Path, tracking_dir: Path) -> None:
    result = expertrack_cli("import", "wandb", str(tmp_path), env={"EXPERTRACK_DIR": str(tracking_dir)})
    assert result.returncode == 1
    assert "no W&B run log (run-*.wandb) found" in result.stderr
