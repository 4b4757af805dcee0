"""Lightning, for real (a tiny regression model, random data, six steps on CPU, a CSVLogger beside): with
``ExpertrackLogger``, and through Lightning's ``WandbLogger`` under the ``import wandb`` stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .training import logged, series, the_run, train_as_wandb, train_natively

pytest.importorskip("lightning")
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("lightning-native")
    train_natively("lightning_train.py", workdir)
    return workdir


@pytest.fixture(scope="module")
def through_wandb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("lightning-wandb")
    # log_model=True: the logger also logs checkpoints as artifacts, which expertrack cannot store (said once)
    proc = train_as_wandb("lightning_train.py", workdir, "--log-model")
    (workdir / "stderr.txt").write_text(proc.stderr)
    return workdir


def test_logger_stores_every_csv_logger_row_at_its_step_and_the_hyperparameters(native: Path) -> None:
    run = the_run(native / "runs")
    rows: list[dict[str, Any]] = logged(native)["rows"]
    assert any("val_loss" in row for row in rows) and sum("train_loss" in row for row in rows) == 6
    for row in rows:
        for key, value in row.items():
            if key != "step":
                assert series(run, key)[int(row["step"])] == pytest.approx(value), (key, row["step"])
    assert run.config == logged(native)["hparams"] == {"lr": 0.05, "width": 4}
    assert run.state == "finished" and run.name == "tiny-lightning" and run.project == "lightning"


def test_wandb_logger_under_the_stand_in_stores_every_row_and_keeps_the_chosen_directory(
    through_wandb: Path,
) -> None:
    # WandbLogger passes dir="." to wandb.init: the run must stay in the directory chosen with --dir
    assert not (through_wandb / "store.db").exists() and not (through_wandb / "expertrack-runs").exists()
    run = the_run(through_wandb / "chosen")
    rows: list[dict[str, Any]] = logged(through_wandb)["rows"]
    # one wandb log call per log_metrics, as the CSVLogger writes one row; the x-axis is trainer/global_step
    global_step = series(run, "trainer/global_step")
    assert [global_step[i] for i in range(len(rows))] == [row["step"] for row in rows]
    for i, row in enumerate(rows):
        for key, value in row.items():
            if key != "step":
                assert series(run, key)[i] == pytest.approx(value), (key, i)
    assert run.config == {"lr": 0.05, "width": 4}
    assert run.state == "finished" and run.name == "tiny-lightning" and run.project == "lightning"


def test_checkpoint_artifacts_from_wandb_logger_are_said_once_and_the_files_stay(through_wandb: Path) -> None:
    err = (through_wandb / "stderr.txt").read_text()
    assert err.count("log_artifact(): W&B artifacts are not stored by expertrack") == 1
    assert list(through_wandb.rglob("*.ckpt"))  # where Lightning wrote it


def test_two_trainers_in_one_script_get_a_run_each_with_all_their_steps(tmp_path: Path) -> None:
    import lightning as L
    import torch

    import expertrack
    from expertrack.integrations.lightning import ExpertrackLogger

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = self.layer(batch[0]).pow(2).mean()
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(12, 2)), batch_size=4)
    for name in ("first", "second"):
        logger = ExpertrackLogger(project="lightning", name=name, dir=tmp_path / "runs", mirror="off")
        trainer = L.Trainer(
            max_steps=3,
            log_every_n_steps=1,
            logger=logger,
            accelerator="cpu",
            devices=1,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path / name,
        )
        trainer.fit(Tiny(), data)
    expertrack.finish()
    runs = {run.name: run for run in expertrack.Api(tmp_path / "runs").runs()}
    assert sorted(runs) == ["first", "second"]
    for run in runs.values():
        assert sorted(series(run, "train_loss")) == [0, 1, 2] and run.state == "finished"
