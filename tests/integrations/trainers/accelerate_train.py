"""A few steps of a plain PyTorch loop under Accelerate, random data, logging through the Accelerator.

    python accelerate_train.py native|wandb

native: ``log_with=[ExpertrackTracker(...)]``; wandb: ``log_with="wandb"`` (run it under the stand-in).
Writes ``logged.json``: every dict passed to ``accelerator.log`` with its step, and the config.
"""

import json
import sys

import torch
from accelerate import Accelerator

mode = sys.argv[1]
if mode == "native":
    from expertrack.integrations.accelerate import ExpertrackTracker

    accelerator = Accelerator(cpu=True, log_with=[ExpertrackTracker("accelerate", name="tiny-accelerate")])
    init_kwargs = {}
else:
    accelerator = Accelerator(cpu=True, log_with="wandb")
    init_kwargs = {"wandb": {"name": "tiny-accelerate"}}
config = {"lr": 0.05, "batch_size": 4, "optimizer": "sgd"}
accelerator.init_trackers("accelerate", config=config, init_kwargs=init_kwargs)
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
model, optimizer = accelerator.prepare(model, optimizer)
logged = []
for step in range(6):
    x = torch.randn(4, 4)
    loss = torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
    values = {"train/loss": loss.item(), "lr": config["lr"]}
    if step % 3 == 2:
        values["eval"] = {"loss": loss.item() / 2}
    accelerator.log(values, step=step)
    logged.append({"step": step, "values": values})
accelerator.end_training()
if accelerator.is_main_process:
    with open("logged.json", "w") as f:
        json.dump({"logged": logged, "config": config}, f)
