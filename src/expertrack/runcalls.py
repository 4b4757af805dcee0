"""The rest of wandb's ``Run`` methods that training libraries call on the run object, mixed into ``Run``.

Found by running the libraries under the ``import wandb`` stand-in (docs/integrations.md): the HF Trainer's W&B
callback calls ``run._label(code=...)`` on every run, and Lightning's ``WandbLogger`` calls ``watch``,
``log_artifact`` and ``use_artifact`` when asked to. What has no local meaning does nothing; what expertrack
cannot honour says so once (artifacts: keep model files on disk), or raises where pretending would mislead
(``use_artifact`` would have to hand back files W&B holds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from expertrack.errors import ExpertrackError

if TYPE_CHECKING:
    from expertrack.notify import Notifier


class WandbRunCalls:
    """wandb ``Run`` methods beyond logging; ``Run`` inherits them (it provides ``notifier``)."""

    notifier: Notifier

    @property
    def url(self) -> None:
        """wandb's link to the run's page: runs here have none (the HF Trainer puts it in a model card badge)."""
        return None

    def _label(self, *args: Any, **kwargs: Any) -> None:
        """wandb's telemetry label (which library made the run): nothing to record here."""

    def watch(self, models: Any = None, *args: Any, **kwargs: Any) -> None:
        """``run.watch(model)``: as ``expertrack.watch`` (said once; see ``expertrack.moe.watch``)."""
        from expertrack.compat import watch

        watch(models, *args, **kwargs)

    def unwatch(self, *args: Any, **kwargs: Any) -> None:
        """The counterpart of ``watch``: nothing to undo."""

    def log_artifact(self, artifact: Any, *args: Any, **kwargs: Any) -> Any:
        """W&B artifacts (model checkpoints, datasets) are not stored by expertrack: said once, nothing kept."""
        self.notifier.once(
            "artifact",
            "log_artifact(): W&B artifacts are not stored by expertrack (checkpoints stay where the trainer wrote "
            "them; `expertrack.save()` keeps small files with the run); training goes on",
        )
        return artifact

    def use_artifact(self, artifact: Any, *args: Any, **kwargs: Any) -> Any:
        """Fetching a W&B artifact needs W&B itself: raises, since returning nothing would only pretend."""
        raise ExpertrackError(
            f"use_artifact({artifact!r}): W&B artifacts are kept by W&B, not by expertrack; "
            "download the files with the real wandb (or read them from disk) before training"
        )
