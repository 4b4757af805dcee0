"""The rest of wandb's module-level surface, so a W&B training script runs unchanged under ``import expertrack as
wandb``: calls with a local meaning do it (``save`` keeps small files with the run, ``alert`` raises an alert
stored with the run), calls that only make sense for W&B's service do nothing (``login``), and calls expertrack
does not support say so once and go on (``watch``; media objects such as ``Image`` can be built, and ``log``
reports them once as not stored).
"""

from __future__ import annotations

import contextlib
import enum
import glob
import io
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

from expertrack.notify import Notifier, say
from expertrack.session import current_run

__all__ = [
    "AlertLevel",
    "Artifact",
    "Audio",
    "Histogram",
    "Html",
    "Image",
    "Settings",
    "Table",
    "Video",
    "alert",
    "log_artifact",
    "login",
    "require",
    "save",
    "termerror",
    "termlog",
    "termwarn",
    "unwatch",
    "use_artifact",
    "watch",
]

SAVE_MAX_BYTES = 16 << 20  # save() keeps files up to this size in the store; checkpoints belong on disk
_notifier = Notifier()


def login(*args: Any, **kwargs: Any) -> bool:
    """Nothing to log in to: runs are stored locally (the W&B mirror uses wandb's own login). Returns True."""
    return True


def watch(models: Any = None, *args: Any, **kwargs: Any) -> None:
    """wandb.watch logs gradient and parameter histograms; expertrack does not (said once). For an MoE model's
    router metrics use ``expertrack.moe.watch``."""
    _notifier.once(
        "watch",
        "watch(): gradient and parameter histograms are not recorded by expertrack (for MoE router metrics "
        "see expertrack.moe.watch); training goes on",
    )


def unwatch(*args: Any, **kwargs: Any) -> None:
    """The counterpart of ``watch``: nothing to undo."""


def save(glob_str: str, base_path: str | None = None, policy: str = "live") -> list[str]:
    """Keep the files matching ``glob_str`` with the current run, as they are now (``policy`` is ignored: no
    later changes are followed). Files over 16 MiB are left out with a message (keep checkpoints on disk).
    Returns the names stored, relative to ``base_path`` (default: the pattern's directory)."""
    run = current_run()
    if run is None:
        _notifier.once("save-no-run", "save(): no run (call init() first); nothing stored")
        return []
    root = base_path if base_path is not None else os.path.dirname(glob_str)
    stored = []
    for path in sorted(glob.glob(glob_str, recursive=True)):
        if not os.path.isfile(path):
            continue
        name = os.path.relpath(path, root) if root else path
        size = os.path.getsize(path)
        if size > SAVE_MAX_BYTES:
            _notifier.once(
                f"save-big:{name}", f"save(): {name} is {size / 2**20:.0f} MiB, over 16 MiB; not stored with the run"
            )
            continue
        with open(path, "rb") as f:
            run.attach_file(name, f.read())
        stored.append(name)
    return stored


class AlertLevel(enum.Enum):
    """``wandb.AlertLevel``: shown in the alert's message as ``[INFO]``, ``[WARN]`` or ``[ERROR]``."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


def alert(title: str, text: str = "", level: Any = None, wait_duration: Any = None) -> None:
    """An alert on the current run, as ``run.alert``: stored with the run, printed on stderr and sent to
    ``$EXPERTRACK_WEBHOOK`` if set (docs/alerts.md). Without a run it is only printed."""
    run = current_run()
    if run is not None:
        run.alert(title, text, level=level, wait_duration=wait_duration)
        return
    shown = f" [{getattr(level, 'name', level)}]" if level is not None else ""
    print(f"expertrack: alert{shown}: {title}" + (f": {text}" if text else ""), file=sys.stderr, flush=True)


class Settings:
    """``wandb.Settings(...)``: accepted so ``init(settings=...)`` works; none of its fields apply here."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


class _Media:
    """W&B media built for ``log``; expertrack keeps numbers and arrays, so ``log`` reports these as not stored."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"<{type(self).__name__} (W&B media, not stored by expertrack)>"


class Image(_Media):
    """``wandb.Image``."""


class Table(_Media):
    """``wandb.Table``."""


class Histogram(_Media):
    """``wandb.Histogram`` (log the values as a NumPy array instead: expertrack stores arrays)."""


class Video(_Media):
    """``wandb.Video``."""


class Audio(_Media):
    """``wandb.Audio``."""


class Html(_Media):
    """``wandb.Html``."""


class Artifact:
    """``wandb.Artifact``: can be built and filled (nothing is copied); logging it says once that it is not
    stored. Libraries build one only when asked to upload models (the Trainer's ``WANDB_LOG_MODEL``, Lightning's
    ``log_model``)."""

    def __init__(self, name: str, type: str, description: str | None = None, metadata: Any = None, **kwargs: Any):
        self.name = name
        self.type = type
        self.description = description
        self.metadata = dict(metadata or {})

    def add_file(self, local_path: str, name: str | None = None, **kwargs: Any) -> None:
        """Accepted; the file stays where it is."""

    def add_dir(self, local_path: str, name: str | None = None, **kwargs: Any) -> None:
        """Accepted; the directory stays where it is."""

    @contextlib.contextmanager
    def new_file(self, name: str, mode: str = "x", encoding: str | None = None) -> Iterator[IO[Any]]:
        """A file to write into the artifact (the HF Trainer writes the model's files so): what is written is
        dropped, since the artifact is never stored."""
        yield io.BytesIO() if "b" in mode else io.StringIO()

    def __repr__(self) -> str:
        return f"<Artifact {self.name!r} (W&B artifact, not stored by expertrack)>"


def log_artifact(artifact: Any, *args: Any, **kwargs: Any) -> Any:
    """``wandb.log_artifact``: said once, not stored (see ``Run.log_artifact``)."""
    run = current_run()
    if run is None:
        _notifier.once("artifact-no-run", "log_artifact(): no run (call init() first); nothing stored")
        return artifact
    return run.log_artifact(artifact, *args, **kwargs)


def use_artifact(artifact: Any, *args: Any, **kwargs: Any) -> Any:
    """``wandb.use_artifact``: raises a clear error (see ``Run.use_artifact``)."""
    from expertrack.session import require_run

    return require_run("use_artifact").use_artifact(artifact, *args, **kwargs)


def require(*args: Any, **kwargs: Any) -> None:
    """``wandb.require("service")`` and the like switch W&B internals; there are none here."""


def termlog(message: str = "", *args: Any, **kwargs: Any) -> None:
    """wandb's console message helpers print on stderr with expertrack's prefix."""
    say(str(message))


def termwarn(message: str = "", *args: Any, repeat: bool = True, **kwargs: Any) -> None:
    """A warning on stderr; ``repeat=False`` says it once per process, as wandb does."""
    if repeat:
        say(f"warning: {message}")
    else:
        _notifier.once(f"termwarn:{message}", f"warning: {message}")


def termerror(message: str = "", *args: Any, **kwargs: Any) -> None:
    """An error message on stderr (nothing is raised)."""
    say(f"error: {message}")
