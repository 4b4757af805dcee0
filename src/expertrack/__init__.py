"""expertrack: local-first experiment tracking for dense and MoE language-model training.

The public surface mirrors wandb's, so ``import expertrack as wandb`` works for the common calls::

    import expertrack
    run = expertrack.init(project="moe", config={"lr": 3e-4})
    for step in range(100):
        expertrack.log({"train/loss": 1.0 / (step + 1)})
    expertrack.finish()

Importing this package loads no torch, matplotlib, wandb or web server (DESIGN.md, rule 4).
"""

from __future__ import annotations

from typing import Any

from expertrack.api import Api, ApiRun
from expertrack.compat import (
    AlertLevel,
    Audio,
    Histogram,
    Html,
    Image,
    Settings,
    Table,
    Video,
    alert,
    login,
    save,
    unwatch,
    watch,
)
from expertrack.errors import AmbiguousRunError, ExpertrackError, NoRunError, RunNotFoundError, StoreError
from expertrack.run import Run
from expertrack.session import current_run, init, require_run

# Importing the module run.py bound ``expertrack.run`` to it; as in wandb, ``expertrack.run`` is the current run
# (``__getattr__`` at the end), so the name is given back to it. ``from expertrack.run import Run`` still works.
globals().pop("run", None)

__version__ = "0.1.0"

__all__ = [
    "AlertLevel",
    "AmbiguousRunError",
    "Api",
    "ApiRun",
    "Audio",
    "ExpertrackError",
    "Histogram",
    "Html",
    "Image",
    "NoRunError",
    "Run",
    "RunNotFoundError",
    "Settings",
    "StoreError",
    "Table",
    "Video",
    "alert",
    "config",
    "current_run",
    "define_metric",
    "finish",
    "init",
    "log",
    "login",
    "save",
    "summary",
    "unwatch",
    "watch",
]


def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """Log to the current run (see ``Run.log``); raises ``NoRunError`` before ``init()``."""
    require_run("log").log(data, step=step, commit=commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the current run, if any."""
    run = current_run()
    if run is not None:
        run.finish(exit_code=exit_code)


def define_metric(
    name: str, step_metric: str | None = None, summary: str | None = None, **kwargs: Any
) -> dict[str, Any]:
    """``define_metric`` on the current run."""
    return require_run("define_metric").define_metric(name, step_metric=step_metric, summary=summary, **kwargs)


class _CurrentRunAttribute:
    """``expertrack.config`` / ``expertrack.summary``: forwards to the current run's object, like wandb's."""

    def __init__(self, attribute: str) -> None:
        object.__setattr__(self, "_attribute", attribute)

    def _target(self) -> Any:
        return getattr(require_run(self._attribute), self._attribute)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target(), name, value)

    def __getitem__(self, key: str) -> Any:
        return self._target()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._target()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._target()[key]

    def __delattr__(self, name: str) -> None:
        delattr(self._target(), name)

    def __contains__(self, key: str) -> bool:
        return key in self._target()

    def __iter__(self) -> Any:
        return iter(self._target())

    def __len__(self) -> int:
        return len(self._target())

    def __repr__(self) -> str:
        return repr(self._target()) if current_run() is not None else f"<expertrack.{self._attribute}: no run>"


config: Any = _CurrentRunAttribute("config")
summary: Any = _CurrentRunAttribute("summary")


def __getattr__(name: str) -> Any:
    if name == "run":  # wandb.run: the current run or None
        return current_run()
    raise AttributeError(f"module 'expertrack' has no attribute {name!r}")
