"""Modal (issue 14): each run snapshotted to a mounted Volume and committed, a retried call resuming its run, and
snapshots fetched back from a Volume by name. Imports ``modal`` only inside the functions that need it.

Inside a Modal function::

    from expertrack.integrations import modal as et_modal

    et_modal.snapshot_to_volume("/expertrack", volume)      # every run started from now on
    run_id = snapshots.resume_id("/expertrack", et_modal.resume_key())
    run = expertrack.init(id=run_id, resume="allow", ...)

Outside a container (``Function.local()``, tests) the mount is a plain directory and nothing is committed.
See docs/modal.md and examples/modal/.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from expertrack import snapshots

SCHEME = "modal://"


def in_container() -> bool:
    """Whether this process runs a Modal function (``modal.is_local()`` is False there)."""
    import modal

    return not modal.is_local()


def snapshot_to_volume(
    mount: str | os.PathLike[str], volume: Any = None, every: float = snapshots.DEFAULT_EVERY_S
) -> None:
    """Snapshot every run this process (and the processes it starts) creates to ``mount``, the Volume's mount
    path, every ``every`` seconds, at finish and on SIGTERM; ``volume.commit()`` publishes each snapshot when this
    runs in a Modal container."""
    commit = volume.commit if volume is not None and in_container() else None
    snapshots.enable(mount, every=every, commit=commit)


def resume_key(default: str = "local") -> str:
    """Modal's function call id, the same for every retry of one call: a retry after a preemption resumes the run
    of the first attempt, while a new call starts a new run. ``default`` outside a container."""
    import modal

    return modal.current_function_call_id() or default


@contextmanager
def committing(volume: Any, every: float = snapshots.DEFAULT_EVERY_S) -> Iterator[None]:
    """Commit ``volume`` every ``every`` seconds while the block runs, and once at its end: for snapshots written
    by a child process (``expertrack run`` inside the container), which has no handle on the Volume."""
    if volume is None or not in_container():
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            volume.commit()

    thread = threading.Thread(target=loop, name="expertrack-volume-commit", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        volume.commit()


def parse_location(location: str) -> tuple[str, str]:
    """``modal://VOLUME[/PATH]`` as (volume name, path inside it, "/" by default); ValueError when malformed."""
    rest = location[len(SCHEME) :] if location.startswith(SCHEME) else ""
    name, _, path = rest.partition("/")
    if not name:
        raise ValueError(f"{location!r} is not a Modal Volume location (modal://VOLUME or modal://VOLUME/PATH)")
    return name, "/" + path.strip("/")


def download(location: str, destination: Path) -> int:
    """Fetch the snapshot files under ``modal://VOLUME[/PATH]`` into ``destination`` (the same layout below it);
    returns how many. Uses the Modal client's Volume API (your ``modal token``), as ``modal volume get`` does."""
    import modal

    name, path = parse_location(location)
    volume = modal.Volume.from_name(name)
    count = 0
    for entry in volume.listdir(path, recursive=True):
        if not entry.path.endswith(snapshots.SUFFIX):
            continue
        relative = Path(entry.path.lstrip("/")).relative_to(path.lstrip("/") or ".")
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            for chunk in volume.read_file(entry.path):
                out.write(chunk)
        count += 1
    return count
