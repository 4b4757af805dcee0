"""``wandb.wandb_run.Run``: expertrack's run (Lightning checks ``isinstance(experiment, Run)``)."""

from __future__ import annotations

from expertrack.run import Run

__all__ = ["Run"]
