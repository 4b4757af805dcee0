"""``wandb.sdk``: the submodules training libraries import from (``lib``, ``wandb_run``)."""

from __future__ import annotations

from wandb.sdk import lib, wandb_run

__all__ = ["lib", "wandb_run"]
