"""An in-process stand-in for the ``wandb`` module: records every call, and can raise or hang on cue.

Used by the fast replay tests; the end-to-end tests use real wandb in offline mode.
"""

from __future__ import annotations

import threading
from typing import Any


class FakeHistogram:
    def __init__(self, sequence: Any = None, np_histogram: Any = None, num_bins: int = 64) -> None:
        self.np_histogram = np_histogram


class FakeImage:
    def __init__(self, data: Any, caption: str | None = None) -> None:
        self.data = data
        self.caption = caption


class FakeTable:
    def __init__(self, columns: list[str], data: list[list[Any]]) -> None:
        self.columns = columns
        self.data = data


class _Config(dict):  # a dict with wandb's config.update signature
    def update(self, data: Any = (), allow_val_change: bool = False, **kw: Any) -> None:  # type: ignore[override]
        super().update(data, **kw)


class FakeRun:
    def __init__(self, wandb: FakeWandb, kwargs: dict[str, Any]) -> None:
        self.wandb = wandb
        self.kwargs = kwargs
        self.logged: list[tuple[int, dict[str, Any]]] = []
        self.summary: dict[str, Any] = {}
        self.config = _Config(kwargs.get("config") or {})
        self.defined: list[tuple[str, dict[str, Any]]] = []
        self.exit_code: int | None = None
        self.path = f"entity/{kwargs['project']}/{kwargs['id']}"
        self.settings = None

    def log(self, row: dict[str, Any], step: int | None = None) -> None:
        assert step is not None
        self.wandb.before_log(step)
        self.logged.append((step, dict(row)))
        self.wandb.logged.append((step, dict(row)))

    def define_metric(self, name: str, **kwargs: Any) -> None:
        self.defined.append((name, kwargs))

    def finish(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code


class FakeWandb:
    """``init`` returns a :class:`FakeRun`; ``fail_at``/``failure`` make ``log`` raise or hang from a step on."""

    Histogram = FakeHistogram
    Image = FakeImage
    Table = FakeTable

    def __init__(self, fail_at: int | None = None, failure: str = "raise", fail_init: bool = False) -> None:
        self.fail_at = fail_at
        self.failure = failure
        self.fail_init = fail_init
        self.runs: list[FakeRun] = []
        self.logged: list[tuple[int, dict[str, Any]]] = []  # across every run: what W&B would hold
        self.release = threading.Event()  # set to let a hung call return

    @staticmethod
    def Settings(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    def init(self, **kwargs: Any) -> FakeRun:
        if self.fail_init:
            raise ConnectionError("injected: W&B unreachable at init")
        run = FakeRun(self, kwargs)
        self.runs.append(run)
        return run

    def before_log(self, step: int) -> None:
        if self.fail_at is None or step < self.fail_at:
            return
        if self.failure == "raise":
            raise RuntimeError(f"injected: W&B failed at step {step}")
        self.release.wait()  # hang until the test lets go
