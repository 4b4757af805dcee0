"""``wandb.sdk.wandb_run.Run``: expertrack's run."""

from __future__ import annotations

from expertrack.run import Run

__all__ = ["Run"]
