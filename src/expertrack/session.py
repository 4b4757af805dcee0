"""``init()`` and the current run: opening the store, creating or resuming the run row, starting the writer.

A store that cannot be written (read-only or missing permissions, a file that is not a database) never stops
training: the run is kept in a fresh temporary directory instead, and the message says where.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertrack import allranks, lifecycle, replicate
from expertrack import ranks as rank_info
from expertrack.alerts.config import AlertSettings
from expertrack.alerts.config import resolve as resolve_alerts
from expertrack.config import Config, dumps, to_jsonable
from expertrack.errors import ExpertrackError, NoRunError, StoreError
from expertrack.notify import Notifier, say
from expertrack.paths import SNAPSHOT_DIR_ENV, STORE_FILE, tracking_dir
from expertrack.records import NewRun
from expertrack.run import Run
from expertrack.store import SQLiteStore, Store
from expertrack.stream import ENV_VAR as STREAM_ENV_VAR
from expertrack.summary import SummaryState
from expertrack.system import SYSTEM_PREFIX, SystemSampler, sampling_interval
from expertrack.writer import Writer, queue_bound

DEFAULT_PROJECT = "uncategorized"
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


def tracking_mode(mode: str | None = None) -> str | None:
    """The mode a run starts in: ``mode`` if given, else ``$EXPERTRACK_MODE``; ``"disabled"`` stores nothing.

    ``$WANDB_MODE`` is not read here: it governs the W&B mirror only (docs/wandb.md), so a W&B script run with
    ``WANDB_MODE=disabled`` is still tracked locally.
    """
    return mode or os.environ.get("EXPERTRACK_MODE") or None


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
    config_exclude_keys: Sequence[str] | None = None,
    config_include_keys: Sequence[str] | None = None,
    alerts: Any = None,
    rank: int | None = None,
    world_size: int | None = None,
    ranks: str | int | None = None,
    system_metrics: bool | float | str | None = None,
    replicate_to: str | os.PathLike[str] | None = None,
    **_wandb_only: Any,
) -> Run:
    """Start (or resume) a run and make it current. Arguments follow ``wandb.init``; extra wandb-only ones are ignored.

    ``mode="disabled"`` (or ``$EXPERTRACK_MODE=disabled``) returns a run that accepts every call and stores
    nothing; ``mode="offline"`` makes the mirror write W&B offline directories; ``$WANDB_MODE`` only governs the
    mirror. ``mirror`` is ``"auto"``,
    ``"wandb"`` or ``"off"`` (default: ``$EXPERTRACK_MIRROR``, else ``"auto"``; see docs/wandb.md).
    ``config_exclude_keys`` leaves those top-level keys of ``config`` out; ``config_include_keys`` keeps only those
    (one or the other, as in wandb; later ``run.config`` changes are not filtered). Resuming (``id`` of a stored
    run and ``resume="allow"``) keeps the run's project, and its tags, group and notes unless new ones are given.
    ``alerts`` configures the alert rules: None for the defaults (or ``$EXPERTRACK_ALERTS``), False for none, a dict
    of rule tables, a TOML file's path, or a list of ``--alert`` specs (docs/alerts.md).

    Under a launcher (torchrun, SLURM, torch.distributed) only rank 0 records by default; the other ranks get a
    run that accepts every call and stores nothing. ``rank``/``world_size`` override what the launcher says;
    ``ranks`` (default ``$EXPERTRACK_RANKS``, else ``"zero"``) may name another recording rank, or be ``"all"``:
    every rank writes one run, its points labelled with its rank, rank 0 owning the run's row (expertrack.allranks,
    docs/distributed.md). ``system_metrics`` (default ``$EXPERTRACK_SYSTEM_METRICS``, else on) samples CPU,
    memory and GPUs every 10 s, or every given number of seconds; False turns it off.

    ``replicate_to`` (default ``$EXPERTRACK_REPLICATE_TO``) names another store (a ``postgresql://`` URL or a
    directory) that a background process keeps up to date with the run while it trains (expertrack.replicate);
    ``dir`` given as such a URL writes the local store as usual and replicates to it.
    """
    global _current
    config_dict = _filter_config(_config_mapping(config), config_exclude_keys, config_include_keys)
    alert_settings = resolve_alerts(alerts)  # a bad rule is refused here, before anything starts
    if _current is not None and not _current._finished:
        _current.finish()
    mode = tracking_mode(mode)
    mirror = mirror or os.environ.get("EXPERTRACK_MIRROR") or "auto"
    project = project or os.environ.get("EXPERTRACK_PROJECT") or os.environ.get("WANDB_PROJECT")
    tag_list = None if tags is None else [str(t) for t in tags]
    notifier = Notifier()
    dir, replicate_location = replicate.local_first(dir, replicate_to)
    directory = tracking_dir(dir)
    # ---- distributed jobs (issue 15): which rank records; see expertrack.ranks and docs/distributed.md ----
    where = rank_info.detect(rank, world_size)
    ranks = _ranks_setting(ranks)
    writing_rank: int | None = None  # ranks="all": this process's rank, its points' dimension
    if ranks == "all" and where.distributed and mode != "disabled":
        id, ranks = _shared_run_id(id, where, project, notifier)
        writing_rank = where.rank if ranks == "all" else None
    recording = rank_info.records(where, ranks)
    interval = sampling_interval(system_metrics)
    # ---- end of distributed jobs ----
    if mode == "disabled" or not recording:
        run = Run(
            id=id or _new_id(),
            name=name or ("disabled" if recording else f"rank-{where.rank}"),
            project=project or DEFAULT_PROJECT,
            group=group,
            tags=tag_list or [],
            notes=notes,
            dir=directory,
            config=config_dict,
            writer=None,
            notifier=notifier,
        )
    else:
        environment = _with_ranks(where.as_dict(str(ranks))) if where.distributed else _environment_json
        run = _start(
            project,
            name,
            config_dict,
            tag_list,
            group,
            notes,
            directory,
            id,
            resume,
            notifier,
            environment,
            system_interval=interval,
            alert_settings=alert_settings,
            max_queued_points=queue_bound(_wandb_only.get("settings")),
            rank=writing_rank,
        )
        if not writing_rank:  # one mirror per run: rank 0's
            _start_mirror(run, mode, mirror, notifier)
        if replicate_location and (not writing_rank or not where.local_rank):  # one per node's store
            replicate.start(run.id, run.dir / STORE_FILE, replicate_location)
    _current = run
    lifecycle.install(run)
    run._on_finish.append(_clear_current)
    return run


def _start(
    project: str | None,
    name: str | None,
    config: dict[str, Any],
    tags: list[str] | None,
    group: str | None,
    notes: str | None,
    directory: Path,
    run_id: str | None,
    resume: bool | str | None,
    notifier: Notifier,
    environment: Callable[[], str],
    system_interval: float | None = None,
    alert_settings: AlertSettings | None = None,
    max_queued_points: int | None = None,
    rank: int | None = None,
) -> Run:
    store = _open_store(directory)
    directory = store.path.parent
    summary = SummaryState()
    fields = _RunFields(project or DEFAULT_PROJECT, name, group, tags, notes, config)
    existing: bool | None = None
    if rank:  # ranks="all", a rank other than 0: it joins the run rank 0 owns (expertrack.allranks)
        assert run_id is not None
        if allranks.wrote_before(store, run_id, rank) and resume in (None, False, "never"):
            store.close()  # as rank 0 refuses the id: this rank already wrote a run of that id
            raise ExpertrackError(
                f"rank {rank} already wrote a run with id {run_id!r} in {directory}; pass resume='allow' "
                "to continue it, or choose another id"
            )
        start_step = allranks.join(store, run_id, rank, fields.project)
        fields.name = fields.name or run_id
    else:
        run_id, fields, start_step, existing = _open_run(store, run_id, resume, fields, summary, rank)
    first_sample = _next_system_sample(store, run_id, rank or 0) if existing is not None else 0  # before the writer
    engine = None
    if alert_settings is not None:
        from expertrack.alerts.engine import AlertEngine, RunIdentity

        shown = fields.name or run_id
        if rank:  # the alerts table has no rank: another rank's alert says whose series it is in its run name
            shown = f"{shown} (rank {rank})"
        engine = AlertEngine(alert_settings, RunIdentity(run_id, shown, fields.project), notifier)
    writer = Writer(
        store,
        run_id,
        notifier,
        summary=summary,
        environment=environment,
        alerts=engine,
        max_queued_points=max_queued_points or queue_bound(),
        rank=rank,
    )
    if os.environ.get(STREAM_ENV_VAR):  # issue 14: the records also go to stdout as tagged lines
        from expertrack.stream.encode import attach_if_asked

        header = {**vars(fields), "id": run_id, "created_at": store.run(run_id).created_at, "start_step": start_step}
        attach_if_asked(writer, header)
    writer.start()
    run = Run(
        id=run_id,
        name=fields.name or run_id,
        project=fields.project,
        group=fields.group,
        tags=fields.tags or [],
        notes=fields.notes,
        dir=directory,
        config=fields.config,
        writer=writer,
        notifier=notifier,
        start_step=start_step,
        resumed=existing is not None,
    )
    if system_interval is not None:  # issue 15: system metrics, on their own thread (expertrack.system)
        sampler = SystemSampler(run, system_interval, first_sample).start()
        run._on_finish.append(lambda _run: sampler.stop())
    if os.environ.get(SNAPSHOT_DIR_ENV):  # issue 14: snapshots of the run to a Volume or a network disk
        from expertrack.snapshots import attach_if_enabled

        attach_if_enabled(run)
    return run


def _open_run(
    store: Store,
    run_id: str | None,
    resume: bool | str | None,
    fields: _RunFields,
    summary: SummaryState,
    rank: int | None,
) -> tuple[str, _RunFields, int, bool | None]:
    """Create or resume the run's row: (id, fields, first step, whether it existed). ``rank`` is 0 under
    ``ranks="all"`` (the owner: it fills in a placeholder row another rank made first), else None."""
    existing = _existing(store, run_id)
    claimed = rank == 0 and existing is not None and run_id is not None and allranks.placeholder(store, run_id)
    if claimed:
        existing = None
    if existing is not None and resume in (None, False, "never"):
        store.close()
        raise ExpertrackError(
            f"a run with id {run_id!r} already exists in {store.path.parent}; pass resume='allow' "
            "to continue it, or choose another id"
        )
    if existing is None and resume == "must" and not claimed:
        store.close()
        raise ExpertrackError(f"resume='must' but there is no run with id {run_id!r} in {store.path.parent}")
    if existing is None:
        given_id = run_id
        run_id = run_id or _new_id()
        fields.name = fields.name or _default_name(store, fields.project)
        start_step = 0
        if not _insert(store, run_id, fields, claim=rank == 0):
            # another process created this id between our look and our insert (several processes started at
            # once with init(id=X, resume="allow")): it is now a run that exists, resumed like any other
            if given_id is None or _existing(store, run_id) is None:
                store.close()
                raise ExpertrackError(f"could not create run {run_id!r} in {store.path.parent}")
            existing = True
            if resume in (None, False, "never"):
                store.close()
                raise ExpertrackError(
                    f"a run with id {run_id!r} was created in {store.path.parent} by another process just now; "
                    "pass resume='allow' to write to it too, or choose another id"
                ) from None
    assert run_id is not None
    if existing is not None:
        fields, start_step = _resume(store, run_id, fields, summary)
    if rank == 0:
        store.register_rank(run_id, 0)
    return run_id, fields, start_step, existing


def _next_system_sample(store: Store, run_id: str, rank: int = 0) -> int:
    """A resumed run's system series go on after their last sample (their step is the sample's number)."""
    keys = [k for k in store.scalar_keys(run_id, rank) if k.startswith(SYSTEM_PREFIX)]
    last = [store.read_scalars(run_id, k, rank=rank)[0][-1:] for k in keys]
    return max((int(steps[0]) + 1 for steps in last if len(steps)), default=0)


@dataclass
class _RunFields:
    """What ``init()`` was given for a run's row; on resume, what the run row holds where nothing was given."""

    project: str
    name: str | None
    group: str | None
    tags: list[str] | None
    notes: str | None
    config: dict[str, Any]


def _open_store(directory: Path) -> Store:
    """The store in ``directory``, or, when that cannot be used, one in a new temporary directory (said once)."""
    try:
        return SQLiteStore(directory / STORE_FILE)
    except (StoreError, OSError) as exc:
        fallback = Path(tempfile.mkdtemp(prefix="expertrack-"))
        say(
            f"cannot use the store in {directory} ({exc}); this run is kept in {fallback} instead "
            f"(read it with --dir {fallback})"
        )
        return SQLiteStore(fallback / STORE_FILE)


def _existing(store: Store, run_id: str | None) -> bool | None:
    if run_id is None:
        return None
    return True if store.run_exists(run_id) else None


def _insert(store: Store, run_id: str, fields: _RunFields, claim: bool = False) -> bool:
    """The run's row; False when a run of that id exists already. ``claim`` (rank 0 under ranks="all"): a
    placeholder row another rank made first, even a moment ago, is filled in instead (expertrack.allranks); a row
    that is no placeholder (it has a pid) stays."""
    new = NewRun(
        id=run_id,
        project=fields.project,
        name=fields.name or run_id,
        group=fields.group,
        tags=json.dumps(fields.tags or []),
        notes=fields.notes,
        config=dumps(fields.config),
        created_at=time.time(),
        hostname=socket.gethostname(),
        pid=os.getpid(),
    )
    return store.create_run(new, claim=claim)


def _resume(store: Store, run_id: str, given: _RunFields, summary: SummaryState) -> tuple[_RunFields, int]:
    """Reopen a run: its stored fields (those given replace them, config merged), summary statistics rebuilt from
    its points with the values set by hand restored, and the step after its last."""
    record = store.run(run_id)
    fields = _RunFields(
        project=record.project,  # a run's identity: an id continues its run, whatever project was asked for
        name=given.name or record.name,
        group=given.group if given.group is not None else record.group,
        tags=given.tags if given.tags is not None else record.tags,
        notes=given.notes if given.notes is not None else record.notes,
        config={**record.config, **given.config},
    )
    for key in store.scalar_keys(run_id):
        values = store.read_scalars(run_id, key)[2]
        if values.size:
            summary.update(key, values)
    summary.set_defs(record.metric_defs)
    _restore_overrides(summary, record.summary)
    last = store.last_step(run_id)
    store.reopen_run(run_id, fields.name or run_id, fields.group, json.dumps(fields.tags), fields.notes,
                     dumps(fields.config))  # fmt: skip
    return fields, (last + 1 if last is not None else 0)


def _restore_overrides(summary: SummaryState, stored: dict[str, Any]) -> None:
    """Keys of the stored summary that its points do not explain were set by hand (``run.summary[k] = v``)."""
    rebuilt = summary.snapshot()
    for key, value in stored.items():
        if key not in rebuilt or not _same(rebuilt[key], value):
            summary.set_override(key, value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _environment_json() -> str:
    from expertrack.environment import collect_environment

    return dumps(collect_environment())


def _with_ranks(distributed: dict[str, Any]) -> Callable[[], str]:
    """The environment capture, plus the process's rank, world size and node under ``"distributed"``."""

    def capture() -> str:
        from expertrack.environment import collect_environment

        return dumps({**collect_environment(), "distributed": distributed})

    return capture


def _ranks_setting(ranks: str | int | None) -> str | int:
    """``init(ranks=...)``, else ``$EXPERTRACK_RANKS``, else ``"zero"``."""
    if ranks is None:
        text = os.environ.get("EXPERTRACK_RANKS", "").strip() or "zero"
        ranks = int(text) if text.isdigit() else text
    return ranks


def _shared_run_id(
    run_id: str | None, where: rank_info.RankInfo, project: str | None, notifier: Notifier
) -> tuple[str | None, str]:
    """(the run id every rank writes, ``"all"``), or, when the ranks cannot agree on one, (``run_id``,
    ``"zero"``): rank 0 records alone, as it says once."""
    shared, source = allranks.shared_id(run_id, where, project or DEFAULT_PROJECT, _new_id())
    if shared is not None:
        return shared, "all"
    if where.rank == 0:
        notifier.once(
            "ranks-all",
            f"init(ranks='all'): the ranks cannot agree on one run id ({source}); rank 0 records this run alone "
            "(docs/distributed.md)",
        )
    return run_id, "zero"


def _start_mirror(run: Run, mode: str | None, mirror: str, notifier: Notifier) -> None:
    """Hand the run to the W&B mirror (a separate process that follows the store; see docs/wandb.md)."""
    if mirror == "off":
        return
    from expertrack.mirror import start  # light: wandb is imported only by the mirror's own process

    start(run.id, run.dir / STORE_FILE, mirror, mode)  # returns at once and never raises


def _filter_config(
    config: dict[str, Any], exclude: Sequence[str] | None, include: Sequence[str] | None
) -> dict[str, Any]:
    """wandb's ``config_exclude_keys`` / ``config_include_keys``: top-level keys left out, or the only ones kept."""
    if exclude and include:
        raise ValueError("init(): pass config_exclude_keys or config_include_keys, not both (as in wandb)")
    if exclude:
        return {k: v for k, v in config.items() if k not in set(exclude)}
    if include:
        return {k: v for k, v in config.items() if k in set(include)}
    return config


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
    count = store.count_runs(project)
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{count + 1}"


def _clear_current(run: Run) -> None:
    global _current
    if _current is run:
        _current = None
