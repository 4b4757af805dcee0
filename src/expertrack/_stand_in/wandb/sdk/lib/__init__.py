"""``wandb.sdk.lib.RunDisabled``, which Lightning's ``WandbLogger`` imports beside ``Run``."""

from __future__ import annotations

__all__ = ["RunDisabled"]


class RunDisabled:
    """wandb's type for a run made with ``mode="disabled"``. expertrack's disabled runs are ``Run`` objects
    (they accept every call and store nothing), so no object is ever of this type; it exists to be imported."""
