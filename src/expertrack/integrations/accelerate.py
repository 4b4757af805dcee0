"""Accelerate: ``ExpertrackTracker``, a ``GeneralTracker`` for ``Accelerator(log_with=[...])``.

    from expertrack.integrations.accelerate import ExpertrackTracker
    accelerator = Accelerator(log_with=[ExpertrackTracker("moe")])
    accelerator.init_trackers("moe", config={"lr": 3e-4})       # starts the run, stores the config
    accelerator.log({"train/loss": loss}, step=step)            # at that step (or the next one without it)
    accelerator.end_training()                                  # finishes the run

Only the main process records (``main_process_only``, as Accelerate's own trackers): other processes start no
run. ``tracker`` is the ``expertrack.Run``. Accelerate's ``log_with="wandb"`` also works, unchanged, under the
``import wandb`` stand-in (docs/integrations.md). Importing this module imports accelerate.
"""

from __future__ import annotations

from typing import Any

from accelerate.tracking import GeneralTracker, on_main_process

import expertrack

__all__ = ["ExpertrackTracker"]


class ExpertrackTracker(GeneralTracker):  # type: ignore[misc]
    """Records an Accelerate run into expertrack. ``run_name`` is the project, as for Accelerate's trackers
    (``init_trackers(project_name)`` does not reach a tracker built by hand); other keyword arguments go to
    ``expertrack.init`` (``name``, ``group``, ``tags``, ``dir``, ...)."""

    name = "expertrack"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self, run_name: str, **init_kwargs: Any) -> None:
        super().__init__()
        self.run_name = run_name
        self.init_kwargs = init_kwargs
        self.run: expertrack.Run | None = None

    @on_main_process  # type: ignore[misc]
    def start(self) -> None:
        """Start the run (Accelerate calls this from ``init_trackers``, on the main process)."""
        if self.run is None:
            self.run = expertrack.init(project=self.run_name, **self.init_kwargs)

    @property
    def tracker(self) -> expertrack.Run | None:
        """The ``expertrack.Run`` (None on other processes, or before ``init_trackers``)."""
        return self.run

    @on_main_process  # type: ignore[misc]
    def store_init_configuration(self, values: dict[str, Any]) -> None:
        """``init_trackers(config=...)``: the run's config."""
        self._started().config.update(values)

    @on_main_process  # type: ignore[misc]
    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """``accelerator.log(values, step=...)``: logged at ``step`` (nested dicts flattened with "/")."""
        self._started().log(values, step=step)

    @on_main_process  # type: ignore[misc]
    def finish(self) -> None:
        """``accelerator.end_training()``: finish the run."""
        if self.run is not None:
            self.run.finish()

    def _started(self) -> expertrack.Run:
        if self.run is None:  # used without init_trackers(): start on first use rather than lose values
            self.start()
        assert self.run is not None
        return self.run
