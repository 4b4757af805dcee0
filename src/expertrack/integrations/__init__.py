"""Native integrations with the frameworks people train with, each importing its framework only when used:

* ``expertrack.integrations.transformers.ExpertrackCallback``: an HF ``TrainerCallback`` (with router metrics for
  MoE models);
* ``expertrack.integrations.lightning.ExpertrackLogger``: a Lightning ``Logger``;
* ``expertrack.integrations.accelerate.ExpertrackTracker``: an Accelerate ``GeneralTracker``.

Their W&B code paths work unchanged under the ``import wandb`` stand-in instead (``expertrack.standin``).
See docs/integrations.md.
"""
