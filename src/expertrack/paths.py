"""Where runs live: one tracking directory holding one SQLite store, found the same way by every entry point."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DIR_NAME = "expertrack-runs"  # a hyphen: cannot be mistaken for (or shadow) the importable package
STORE_FILE = "store.db"
ENV_DIR = "EXPERTRACK_DIR"
SNAPSHOT_DIR_ENV = "EXPERTRACK_SNAPSHOT_DIR"  # expertrack.snapshots: where each run's snapshots go


def tracking_dir(dir: str | os.PathLike[str] | None = None) -> Path:
    """The tracking directory: ``dir`` if given, else ``$EXPERTRACK_DIR``, else ``./expertrack-runs``.

    Resolved against the current working directory at call time, never at import time.
    """
    if dir is not None and str(dir) != "":
        return Path(dir).expanduser().resolve()
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser().resolve()
    return (Path.cwd() / DEFAULT_DIR_NAME).resolve()


def store_path(dir: str | os.PathLike[str] | None = None) -> Path:
    """The store file inside the tracking directory."""
    return tracking_dir(dir) / STORE_FILE
