"""``wandb.wandb_run.Run``: expertrack's run (Lightning checks ``isinstance(experiment, Run)``)."""

from __future__ import annotations

from expertrack.tracking import Run

__all__ = ["Run"]
