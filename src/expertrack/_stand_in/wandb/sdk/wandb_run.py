"""``wandb.sdk.wandb_run.Run``: expertrack's run."""

from __future__ import annotations

from expertrack.tracking import Run

__all__ = ["Run"]
