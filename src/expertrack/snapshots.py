"""Snapshots of each run's store to a directory that outlives the machine: a Modal Volume's mount, a network disk.

Why snapshots and not the store itself on the Volume: SQLite must not be written on a Volume (last writer wins,
changes are published only by an explicit commit, no locks), nor in WAL mode on any network file system. So the
live store stays on the container's local disk, and every ``every`` seconds (default 30), at ``finish()``, and
when a SIGTERM ends the run (Modal's preemption: lifecycle.py finishes the run on its finisher thread, which
calls the run's after-end callbacks before the process ends), a helper thread copies a consistent snapshot of the
run (SQLite's backup API: a read transaction, so the writer never waits) to its own file::

    DIRECTORY/runs/RUN_ID/CONTAINER.sqlite

``CONTAINER`` is ``$MODAL_TASK_ID`` under Modal, else host and process id: one file per run and container, so two
writers never share a file. The file holds that run only, and is replaced whole (written aside, then renamed), so
a reader never sees half a snapshot. Then ``commit()`` (``modal.Volume.commit`` under Modal) publishes it.

Switched on for every run a process (and the processes it starts) creates, by ``enable(directory)`` or
``$EXPERTRACK_SNAPSHOT_DIR`` (``$EXPERTRACK_SNAPSHOT_EVERY`` seconds). ``expertrack pull --from DIRECTORY`` (or
``modal://VOLUME``) merges the snapshots into a local store: the newest snapshot of each run is a superset of the
older ones (a resumed run starts from its last snapshot), so pull copies that one.

Preemption and resume: ``resume_id(directory, key)`` returns the id of the run kept under ``key`` (Modal's function
call id: a retry of the same call keeps it) after restoring its newest snapshot into the local store, so that
``init(id=run_id, resume="allow")`` continues it at the step after the last one snapshotted; ``keep_id`` records a
new run's id under the key. What a preemption can lose: the points logged after the last snapshot (at most
``every`` seconds; none when the SIGTERM's snapshot completes) unless a live stream (expertrack.stream) saw them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expertrack.notify import say
from expertrack.paths import SNAPSHOT_DIR_ENV as DIR_ENV
from expertrack.paths import STORE_FILE

if TYPE_CHECKING:
    from expertrack.tracking import Run

EVERY_ENV = "EXPERTRACK_SNAPSHOT_EVERY"
DEFAULT_EVERY_S = 30.0
SUFFIX = ".sqlite"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_commit: list[Callable[[], None]] = []  # the in-process publisher (a Volume's commit), set by enable()


def enable(
    directory: str | os.PathLike[str], every: float = DEFAULT_EVERY_S, commit: Callable[[], None] | None = None
) -> None:
    """Snapshot every run started from now on, in this process and those it starts, to ``directory``;
    ``commit`` (a Volume's ``commit``) is called after each snapshot of this process."""
    if not every > 0:
        raise ValueError(f"snapshots: every must be a positive number of seconds, not {every!r}")
    os.environ[DIR_ENV] = str(Path(directory).absolute())
    os.environ[EVERY_ENV] = str(float(every))
    _commit[:] = [commit] if commit is not None else []


def attach_if_enabled(run: Run) -> Snapshotter | None:
    """Start snapshotting ``run`` when ``$EXPERTRACK_SNAPSHOT_DIR`` is set (``init()`` calls this)."""
    directory = os.environ.get(DIR_ENV)
    if not directory:
        return None
    try:
        every = float(os.environ.get(EVERY_ENV) or DEFAULT_EVERY_S)
    except ValueError:
        run.notifier.once("snapshot-every", f"{EVERY_ENV} must be a number of seconds; using {DEFAULT_EVERY_S:g}")
        every = DEFAULT_EVERY_S
    snapshotter = Snapshotter(run, Path(directory), every if every > 0 else DEFAULT_EVERY_S)
    snapshotter.start()
    return snapshotter


def container_tag() -> str:
    """This container's (or process's) part of a snapshot's file name."""
    task = os.environ.get("MODAL_TASK_ID")
    return _SAFE.sub("_", task or f"{socket.gethostname()}-{os.getpid()}")


class Snapshotter:
    """Copies one run to its snapshot file every ``every`` seconds, and once more when the run has ended."""

    def __init__(self, run: Run, directory: Path, every: float) -> None:
        self.run = run
        self.source = run.dir / STORE_FILE
        self.target = directory / "runs" / _SAFE.sub("_", run.id) / (container_tag() + SUFFIX)
        self.every = every
        self.taken = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one snapshot at a time: the periodic one and the last may meet
        self._thread = threading.Thread(target=self._loop, name="expertrack-snapshots", daemon=True)

    def start(self) -> None:
        self.run._after_end.append(self._ended)
        self._thread.start()

    def snapshot(self) -> bool:
        """Take one snapshot now and publish it; False (said once) when it failed. Never raises."""
        try:
            with self._lock:
                write_snapshot(self.source, self.run.id, self.target)
                self.taken += 1
            for commit in _commit:
                commit()
            return True
        except Exception as exc:  # the tracker's outer boundary: a snapshot is a copy; training goes on
            self.run.notifier.once(
                "snapshot", f"could not snapshot run {self.run.id} to {self.target} ({type(exc).__name__}: {exc})"
            )
            return False

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.snapshot()

    def _ended(self, run: Run) -> None:
        """After-end callback: the store holds the run's end; the last snapshot carries it."""
        self._stop.set()
        self.snapshot()


def write_snapshot(source: Path, run_id: str, target: Path) -> None:
    """Copy run ``run_id`` of the store ``source`` to ``target``, replacing it whole (expertrack.store.snapshot)."""
    from expertrack.store.snapshot import write_run_snapshot

    write_run_snapshot(source, run_id, target)


def snapshot_files(directory: Path) -> dict[str, list[Path]]:
    """The snapshot files anywhere under ``directory``, by the run each holds, the most advanced last."""
    found: dict[str, list[tuple[tuple[float, float], Path]]] = {}
    for path in sorted(directory.rglob(f"*{SUFFIX}")):
        held = _held_run(path)
        if held is not None:
            found.setdefault(held[0], []).append(((held[1], path.stat().st_mtime), path))
    return {run_id: [path for _, path in sorted(paths)] for run_id, paths in found.items()}


def _held_run(path: Path) -> tuple[str, float] | None:
    """The run a snapshot holds and its heartbeat; None (said) for a file that is not one."""
    from expertrack.store.snapshot import held_run

    try:
        return held_run(path)
    except ValueError as exc:
        say(f"{exc}; skipped")
        return None


def pull(location: str, target: Any, run_ids: list[str] | None = None) -> tuple[int, Any]:
    """Merge the newest snapshot of each run under ``location`` (a directory, or ``modal://VOLUME[/PATH]``,
    downloaded first into a temporary directory) into the open store ``target``; returns (runs pulled, the copy's
    report). ``run_ids`` (ids or id prefixes) limits it to those runs. Idempotent: a second pull adds nothing, and
    a run already there (seen live) is completed."""
    from expertrack.store import SQLiteStore
    from expertrack.store.copy import CopyReport, copy_runs

    total = CopyReport()
    with tempfile.TemporaryDirectory(prefix="expertrack-pull-") as scratch:
        directory = Path(location)
        if location.startswith("modal://"):
            from expertrack.integrations.modal import download

            directory = Path(scratch)
            download(location, directory)
        elif not directory.is_dir():
            raise ValueError(f"{location!r} is neither a directory of snapshots nor modal://VOLUME[/PATH]")
        found = snapshot_files(directory)
        if run_ids is not None:
            found = {k: v for k, v in found.items() if any(k.startswith(ref) for ref in run_ids)}
        for run_id, paths in found.items():
            with SQLiteStore(paths[-1], readonly=True) as source:
                report = copy_runs(source, target, [run_id])
            for name, value in vars(report).items():
                setattr(total, name, getattr(total, name) + value)
    return len(found), total


def keep_id(directory: str | os.PathLike[str], key: str, run_id: str) -> None:
    """Record ``run_id`` under ``key`` on the snapshot directory, for ``resume_id`` after a restart."""
    path = Path(directory) / "resume" / (_SAFE.sub("_", key) + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(path.name + ".partial")
    aside.write_text(json.dumps({"run_id": run_id}))
    os.replace(aside, path)
    for commit in _commit:
        commit()


def resume_id(directory: str | os.PathLike[str], key: str, dir: str | os.PathLike[str] | None = None) -> str | None:
    """The run kept under ``key``, its newest snapshot restored into the local store (``dir``, as for ``init``),
    or None when there is none (a first start): then start a run and ``keep_id`` it."""
    from expertrack.paths import store_path

    path = Path(directory) / "resume" / (_SAFE.sub("_", key) + ".json")
    try:
        run_id = str(json.loads(path.read_text())["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from expertrack.store.snapshot import store_holds

    snapshots = snapshot_files(Path(directory)).get(run_id)
    store = store_path(dir)
    if snapshots and not store_holds(store, run_id):
        restore(snapshots[-1], store, run_id)
    return run_id


def restore(snapshot: Path, store: Path, run_id: str) -> None:
    """Put a snapshot's run into the local store ``store``: the snapshot becomes the store when there is none
    (a fresh container), else the run is merged into it."""
    from expertrack.store.snapshot import store_from_snapshot

    if not store.exists():
        store_from_snapshot(snapshot, store)
        return
    merge_runs(snapshot, store, [run_id])


def merge_runs(source: Path, target: Path, run_ids: list[str] | None = None) -> Any:
    """Copy runs from the store file ``source`` into the store file ``target`` (idempotent; expertrack.store.copy)."""
    from expertrack.store import SQLiteStore
    from expertrack.store.copy import copy_runs

    with SQLiteStore(source, readonly=True) as src, SQLiteStore(target) as dst:
        return copy_runs(src, dst, run_ids)
