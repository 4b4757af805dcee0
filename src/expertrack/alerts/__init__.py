"""Alert rules: tell the user when a run goes wrong (NaN, a loss spike that stays, a dead expert, MaxVio too high
for too long, router entropy collapsing, a stalled run), once per episode, without ever slowing training.

The rules run on the writer's thread (``engine.AlertEngine``), fed each key's newly stored points; alerts are stored
with the run (``Store.alerts``), printed once to stderr and optionally POSTed to ``$EXPERTRACK_WEBHOOK``. Settings:
``config.resolve`` (``init(alerts=...)``, a TOML file, ``expertrack run --alert``). See docs/alerts.md.
This package imports NumPy only when a rule first runs, never at ``import expertrack``.
"""

from __future__ import annotations

from expertrack.alerts.config import RULES, AlertSettings, resolve

__all__ = ["RULES", "AlertSettings", "resolve"]
