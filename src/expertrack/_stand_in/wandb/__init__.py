"""expertrack standing in for wandb: ``import wandb`` in a training script run with ``expertrack run --as-wandb``
(or ``EXPERTRACK_AS_WANDB=1``) gets this module, so the Trainer's ``report_to="wandb"``, Lightning's
``WandbLogger``, Accelerate's ``log_with="wandb"`` and scripts that call wandb themselves record into the local
store with no edit. Only the W&B surface those libraries really use is here (docs/integrations.md); the W&B mirror
runs in a separate process with the real wandb.
"""

from __future__ import annotations

import os
from typing import Any

import expertrack
from expertrack import (
    AlertLevel,
    Audio,
    Histogram,
    Html,
    Image,
    Settings,
    Table,
    Video,
    alert,
    config,
    define_metric,
    finish,
    log,
    login,
    save,
    summary,
    unwatch,
    watch,
)
from expertrack.compat import (
    Artifact,
    log_artifact,
    require,
    termerror,
    termlog,
    termwarn,
    use_artifact,
)
from expertrack.run import Run

__all__ = [
    "AlertLevel",
    "Artifact",
    "Audio",
    "Histogram",
    "Html",
    "Image",
    "Run",
    "Settings",
    "Table",
    "Video",
    "alert",
    "config",
    "define_metric",
    "finish",
    "init",
    "log",
    "log_artifact",
    "login",
    "require",
    "save",
    "summary",
    "termerror",
    "termlog",
    "termwarn",
    "unwatch",
    "use_artifact",
    "watch",
]

__version__ = expertrack.__version__  # not a W&B version: this is expertrack (wandb.__file__ says so too)


def init(*args: Any, dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> Run:
    """``wandb.init``: ``expertrack.init`` with the same arguments, except ``dir``.

    wandb's ``dir`` is where W&B keeps its own files (Lightning passes ``dir="."``), not a tracking directory,
    so it never moves the run: the run goes to ``$EXPERTRACK_DIR`` (which ``expertrack run --dir`` sets), else
    ``./expertrack-runs``. See "Where runs go" in docs/integrations.md.
    """
    return expertrack.init(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "run":  # wandb.run: the current run or None
        return expertrack.current_run()
    raise AttributeError(f"module 'wandb' (expertrack's stand-in) has no attribute {name!r}")
