"""Lightning: ``ExpertrackLogger``, a ``lightning.pytorch`` logger that records a Trainer's run.

    from expertrack.integrations.lightning import ExpertrackLogger
    trainer = lightning.Trainer(logger=ExpertrackLogger(project="moe"), max_steps=1000)

It behaves as Lightning's own loggers do: ``log_hyperparams`` (``save_hyperparameters()``, the datamodule's)
becomes the run's config, each ``log_metrics(metrics, step)`` is logged at that step (Lightning's
``trainer.global_step``, with its ``epoch`` key), and only global rank zero records anything (other ranks get
Lightning's dummy experiment). ``experiment`` is the ``expertrack.Run``; ``version`` is the run id. ``finalize``
writes what was logged; the run stays open so a later ``trainer.test()`` lands in it, and is finished at exit
(as failed when the process fails) or by ``expertrack.finish()``. The run is the current one when
``expertrack.init()`` was called first, else one per Trainer (see ``integrations._runs.run_for``). Lightning's
``WandbLogger`` also works, unchanged, under the ``import wandb`` stand-in (docs/integrations.md). Importing this
module imports lightning.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from lightning.fabric.utilities.logger import _add_prefix, _convert_params, _sanitize_callable_params
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

import expertrack
from expertrack.integrations._runs import run_for

__all__ = ["ExpertrackLogger"]


class ExpertrackLogger(Logger):  # type: ignore[misc]
    """Records a Lightning Trainer's hyperparameters and metrics into expertrack (see the module docstring).

    ``project`` defaults to "lightning_logs" (as Lightning's loggers name their directory); ``prefix`` is put
    before every metric key (joined with "-", as in Lightning's loggers). Other keyword arguments go to
    ``expertrack.init`` (``name``, ``group``, ``tags``, ``dir``, ``id``, ``mirror``, ...).
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(self, project: str | None = None, prefix: str = "", **init_kwargs: Any) -> None:
        super().__init__()
        self._project = project or "lightning_logs"
        self._prefix = prefix
        self._init_kwargs = init_kwargs
        self._run: expertrack.Run | None = None

    @property
    def name(self) -> str:
        """The project (Lightning uses it, with ``version``, to name the checkpoint directory)."""
        return self._project

    @property
    def version(self) -> str | None:
        """The run id once the run exists (on rank zero), else the ``id`` asked for, if any."""
        return self._run.id if self._run is not None else self._init_kwargs.get("id")

    @property
    def save_dir(self) -> str | None:
        """None: checkpoints go under the Trainer's ``default_root_dir``; runs go to the tracking directory."""
        return None

    @property
    @rank_zero_experiment
    def experiment(self) -> expertrack.Run:
        """The ``expertrack.Run``: the user's current run, else one started on first use (a run that another
        ExpertrackLogger started, for an earlier Trainer, is finished first: one run per training)."""
        self._run = run_for(self._run, lambda: expertrack.init(project=self._project, **self._init_kwargs))
        return self._run

    @rank_zero_only  # type: ignore[misc]
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Hyperparameters become the run's config (callables by name, as Lightning's loggers keep them)."""
        values = _sanitize_callable_params(_convert_params(params))
        self.experiment.config.update(values)

    @rank_zero_only  # type: ignore[misc]
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log ``metrics`` at ``step`` (the Trainer's global step; without one, the run's next step)."""
        values = _add_prefix(dict(metrics), self._prefix, self.LOGGER_JOIN_CHAR)
        self.experiment.log(values, step=step)

    @rank_zero_only  # type: ignore[misc]
    def finalize(self, status: str) -> None:
        """End of ``fit``/``test``: write what was logged (the run stays open; see the module docstring)."""
        if self._run is not None:
            self._run.flush(timeout=10.0)
