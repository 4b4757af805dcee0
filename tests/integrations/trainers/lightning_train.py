"""A few steps of a Lightning Trainer on a tiny regression model, random data, with a CSVLogger beside the
logger under test.

    python lightning_train.py native|wandb [--ddp] [--log-model]

native: ``ExpertrackLogger``; wandb: Lightning's ``WandbLogger`` (run it under the stand-in). ``--ddp``: the DDP
strategy, for a launch by torchrun (gloo). Writes ``logged.json``: the CSVLogger's rows and hyperparameters.
"""

import csv
import json
import sys

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

mode, ddp, log_model = sys.argv[1], "--ddp" in sys.argv, "--log-model" in sys.argv


class Tiny(L.LightningModule):
    def __init__(self, lr: float = 0.05, width: int = 4):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(width, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def data(n):
    torch.manual_seed(n)
    x = torch.randn(n, 4)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


if mode == "native":
    from expertrack.integrations.lightning import ExpertrackLogger

    logger = ExpertrackLogger(project="lightning", name="tiny-lightning")
else:
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(project="lightning", name="tiny-lightning", log_model=log_model)
csv_logger = CSVLogger("csv")
trainer = L.Trainer(
    max_steps=6,
    val_check_interval=3,
    limit_val_batches=2,
    log_every_n_steps=1,
    logger=[logger, csv_logger],
    accelerator="cpu",
    devices=2 if ddp else 1,
    strategy="ddp" if ddp else "auto",
    enable_checkpointing=log_model,
    default_root_dir="ckpt",
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(Tiny(), data(32), data(8))
if trainer.is_global_zero:
    with open(f"{csv_logger.log_dir}/metrics.csv") as f:
        rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    with open("logged.json", "w") as f:
        json.dump({"rows": rows, "hparams": dict(trainer.lightning_module.hparams)}, f)
