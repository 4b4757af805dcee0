"""``wandb.sdk.lib.config_util.ConfigError``, which the HF Trainer's W&B callback imports and catches."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """wandb raises it for a config change it refuses; expertrack's config accepts every change, so it is never
    raised here."""
