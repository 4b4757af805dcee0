"""``init()`` and the current run: opening the store, creating or resuming the run row, starting the writer.

A store that cannot be written (read-only or missing permissions, a file that is not a database) never stops
training: the run is kept in a fresh temporary directory instead, and the message says where.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from expertrack import lifecycle
from expertrack.errors import ExpertrackError, NoRunError, StoreError
from expertrack.notify import Notifier, say
from expertrack.paths import STORE_FILE, tracking_dir
from expertrack.runconfig import Config, dumps, to_jsonable
from expertrack.store import Store
from expertrack.summary import SummaryState
from expertrack.tracking import Run
from expertrack.writer import Writer

_current: Run | None = None
_ADJECTIVES = [
    "amber",
    "brisk",
    "calm",
    "deft",
    "eager",
    "fair",
    "gentle",
    "hardy",
    "keen",
    "lucid",
    "mellow",
    "nimble",
    "quiet",
    "rapid",
    "steady",
    "vivid",
]
_NOUNS = [
    "brook",
    "cedar",
    "dune",
    "ember",
    "fjord",
    "grove",
    "harbor",
    "island",
    "lagoon",
    "meadow",
    "orbit",
    "prairie",
    "ridge",
    "summit",
    "tundra",
    "vale",
]


def current_run() -> Run | None:
    """The run started by the last ``init()`` in this process, or None."""
    return _current


def require_run(what: str) -> Run:
    """The current run, or a clear ``NoRunError`` naming the call that needed it."""
    if _current is None:
        raise NoRunError(f"expertrack.{what}() was called before expertrack.init(); call init() first")
    return _current


def init(
    project: str | None = None,
    name: str | None = None,
    config: Any = None,
    tags: Sequence[str] | None = None,
    group: str | None = None,
    notes: str | None = None,
    dir: str | os.PathLike[str] | None = None,
    id: str | None = None,
    resume: bool | str | None = None,
    mode: str | None = None,
    mirror: str | None = None,
    **_wandb_only: Any,
) -> Run:
    """Start (or resume) a run and make it current. Arguments follow ``wandb.init``; extra wandb-only ones are ignored.

    ``mode="disabled"`` returns a run that accepts every call and stores nothing. ``mirror`` is ``"auto"``,
    ``"wandb"`` or ``"off"`` (default: ``$EXPERTRACK_MIRROR``, else ``"auto"``; see docs/wandb.md).
    """
    global _current
    if _current is not None and not _current._finished:
        _current.finish()
    mode = mode or os.environ.get("EXPERTRACK_MODE") or os.environ.get("WANDB_MODE")
    mirror = mirror or os.environ.get("EXPERTRACK_MIRROR") or "auto"
    project = project or os.environ.get("EXPERTRACK_PROJECT") or os.environ.get("WANDB_PROJECT") or "uncategorized"
    tag_list = [str(t) for t in (tags or [])]
    config_dict = _config_mapping(config)
    notifier = Notifier()
    directory = tracking_dir(dir)
    if mode == "disabled":
        run = Run(
            id=id or _new_id(),
            name=name or "disabled",
            project=project,
            group=group,
            tags=tag_list,
            notes=notes,
            dir=directory,
            config=config_dict,
            writer=None,
            notifier=notifier,
        )
    else:
        run = _start(project, name, config_dict, tag_list, group, notes, directory, id, resume, notifier)
        _start_mirror(run, mode, mirror, notifier)
    _current = run
    lifecycle.install(run)
    return run


def _start(
    project: str,
    name: str | None,
    config: dict[str, Any],
    tags: list[str],
    group: str | None,
    notes: str | None,
    directory: Path,
    run_id: str | None,
    resume: bool | str | None,
    notifier: Notifier,
) -> Run:
    store = _open_store(directory)
    directory = store.path.parent
    existing = _existing(store, run_id)
    if existing is not None and resume in (None, False, "never"):
        store.close()
        raise ExpertrackError(
            f"a run with id {run_id!r} already exists in {directory}; pass resume='allow' "
            "to continue it, or choose another id"
        )
    if existing is None and resume == "must":
        store.close()
        raise ExpertrackError(f"resume='must' but there is no run with id {run_id!r} in {directory}")
    summary = SummaryState()
    if existing is not None:
        assert run_id is not None
        name, config, start_step = _resume(store, run_id, name, config, summary)
    else:
        run_id = run_id or _new_id()
        name = name or _default_name(store, project)
        start_step = 0
        _insert(store, run_id, project, name, group, tags, notes, config)
    writer = Writer(store, run_id, notifier, summary=summary, environment=_environment_json)
    writer.start()
    run = Run(
        id=run_id,
        name=name,
        project=project,
        group=group,
        tags=tags,
        notes=notes,
        dir=directory,
        config=config,
        writer=writer,
        notifier=notifier,
        start_step=start_step,
    )
    return run


def _open_store(directory: Path) -> Store:
    """The store in ``directory``, or, when that cannot be used, one in a new temporary directory (said once)."""
    try:
        return Store(directory / STORE_FILE)
    except (StoreError, OSError) as exc:
        fallback = Path(tempfile.mkdtemp(prefix="expertrack-"))
        say(
            f"cannot use the store in {directory} ({exc}); this run is kept in {fallback} instead "
            f"(read it with --dir {fallback})"
        )
        return Store(fallback / STORE_FILE)


def _existing(store: Store, run_id: str | None) -> bool | None:
    if run_id is None:
        return None
    row = store.conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()
    return True if row else None


def _insert(
    store: Store,
    run_id: str,
    project: str,
    name: str,
    group: str | None,
    tags: list[str],
    notes: str | None,
    config: dict[str, Any],
) -> None:
    now = time.time()
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO runs (id, project, name, run_group, tags, notes, state, created_at, heartbeat_at, config,"
            " hostname, pid) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
            (
                run_id,
                project,
                name,
                group,
                json.dumps(tags),
                notes,
                now,
                now,
                dumps(config),
                socket.gethostname(),
                os.getpid(),
            ),
        )


def _resume(
    store: Store, run_id: str, name: str | None, config: dict[str, Any], summary: SummaryState
) -> tuple[str, dict[str, Any], int]:
    """Reopen a run: merged config, summary statistics rebuilt from its points, the step after its last."""
    record = store.run(run_id)
    merged = {**record.config, **config}
    for key in store.scalar_keys(run_id):
        values = store.read_scalars(run_id, key)[2]
        if values.size:
            summary.update(key, values)
    summary.set_defs(record.metric_defs)
    last = store.last_step(run_id)
    with store.transaction() as conn:
        conn.execute(
            "UPDATE runs SET state = 'running', ended_at = NULL, exit_code = NULL, exit_signal = NULL,"
            " name = ?, config = ?, hostname = ?, pid = ?, heartbeat_at = ? WHERE id = ?",
            (name or record.name, dumps(merged), socket.gethostname(), os.getpid(), time.time(), run_id),
        )
    return name or record.name, merged, (last + 1 if last is not None else 0)


def _environment_json() -> str:
    from expertrack.environment import collect_environment

    return dumps(collect_environment())


def _start_mirror(run: Run, mode: str | None, mirror: str, notifier: Notifier) -> None:
    """Hand the run to the W&B mirror (a separate process that follows the store; see docs/wandb.md)."""
    if mirror == "off":
        return
    from expertrack.mirror import start  # light: wandb is imported only by the mirror's own process

    start(run.id, run.dir / STORE_FILE, mirror, mode)  # returns at once and never raises


def _config_mapping(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Config):
        return config.as_dict()
    if isinstance(config, Mapping):
        return dict(to_jsonable(dict(config)))
    if hasattr(config, "__dict__"):  # argparse.Namespace, simple objects
        return dict(to_jsonable(vars(config)))
    raise TypeError(f"init(config=...) takes a dict or an argparse.Namespace, not {type(config).__name__}")


def _new_id() -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _default_name(store: Store, project: str) -> str:
    count = store.conn.execute("SELECT COUNT(*) FROM runs WHERE project = ?", (project,)).fetchone()[0]
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{count + 1}"


def _clear_current(run: Run) -> None:
    global _current
    if _current is run:
        _current = None
