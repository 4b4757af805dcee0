"""One mirror per run at a time: an advisory file lock per run, released by the OS when its process dies.

The live mirror holds it while it follows a run, ``sync`` while it replays one, so a ``sync`` started while the
live mirror is still catching up skips that run instead of sending its steps twice. Lock files (and the live
mirror's log) live in ``<tracking dir>/mirror/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the cursor alone prevents most double sends
    fcntl = None  # type: ignore[assignment]


def mirror_dir(store_path: str | os.PathLike[str]) -> Path:
    """``<tracking dir>/mirror``, created when missing."""
    path = Path(store_path).parent / "mirror"
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_held(store_path: str | os.PathLike[str], run_id: str) -> bool:
    """Whether some live process holds the run's mirror lock (creates nothing)."""
    path = Path(store_path).parent / "mirror" / f"{_safe(run_id)}.lock"
    if fcntl is None or not path.exists():
        return False
    try:
        with open(path, "rb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    return False


def _safe(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)


class RunLock:
    """A non-blocking exclusive lock on ``<tracking dir>/mirror/<run id>.lock``."""

    def __init__(self, store_path: str | os.PathLike[str], run_id: str) -> None:
        self.path = mirror_dir(store_path) / f"{_safe(run_id)}.lock"
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another process holds it."""
        handle = open(self.path, "a+b")  # noqa: SIM115 (held open for the lock's lifetime)
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
        self._file = handle
        return True

    def release(self) -> None:
        """Drop the lock (closing the file releases it)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
