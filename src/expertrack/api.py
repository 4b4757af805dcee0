"""The read side: ``Api(dir).runs(...)`` and per-run history, arrays and files, as pandas and NumPy.

Opens the store read-only, so it is safe beside running trainers and never changes what they write.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from expertrack.errors import RunNotFoundError, StoreError
from expertrack.paths import store_path
from expertrack.store.alerts import AlertRecord
from expertrack.store.downsample import minmax_indices
from expertrack.store.interface import Store
from expertrack.store.location import describe, open_store, reading_location
from expertrack.store.sql import ArrayOverview, RankRecord, RunRecord, ScalarOverview


class Api:
    """Query the runs of one tracking directory (``dir``, else ``$EXPERTRACK_DIR``, else ./expertrack-runs), or of
    a PostgreSQL store (``dir`` a ``postgresql://`` URL; the ``postgres`` extra)."""

    def __init__(self, dir: str | os.PathLike[str] | None = None) -> None:
        where = reading_location(dir)  # a URL (given, or $EXPERTRACK_DIR), else the tracking directory
        self.location: Path | str = where if isinstance(where, str) else store_path(where)  # store file or URL
        self._store: Store | None = None

    @property
    def path(self) -> Path:
        """The SQLite store file; a PostgreSQL location has none (``StoreError``)."""
        if isinstance(self.location, str):
            raise StoreError(f"{describe(self.location)} is a PostgreSQL store, not a tracking directory")
        return self.location

    def _where(self) -> str:
        return str(self.location.parent) if isinstance(self.location, Path) else describe(self.location)

    @property
    def store(self) -> Store | None:
        """The read-only store, or None while no run has been written to this directory (or database)."""
        if self._store is None and (isinstance(self.location, str) or self.location.exists()):
            store = open_store(self.location, readonly=True)
            if store.version == 0:  # another process is creating it right now (or an empty database): no runs yet
                store.close()
                return None
            self._store = store
        return self._store

    def runs(self, project: str | None = None, filters: dict[str, Any] | None = None) -> list[ApiRun]:
        """Runs, oldest first. ``filters`` maps field to wanted value (an exact match): ``id``, ``project``,
        ``state``, ``name``, ``group``, ``tags`` (the run has that tag), ``config.<key>`` and ``summary.<key>``
        (dotted paths into nested dicts). wandb's query operators (``$gt``, ``$or``, ...) are refused with a
        ``ValueError`` rather than matching nothing. ``project`` may be wandb's "entity/project" path."""
        _check_filters(filters or {})
        store = self.store
        if store is None:
            return []
        if project is not None:
            project = project.rsplit("/", 1)[-1]  # wandb's "entity/project": entities are W&B's, not ours
        records = store.runs(project)
        return [ApiRun(store, r) for r in records if _matches(r, filters or {})]

    def run(self, ref: str) -> ApiRun:
        """One run by id, name, or unique id prefix (tried in that order); wandb's "entity/project/id" path
        names the run by its last part."""
        store = self.store
        if store is None:
            raise RunNotFoundError(f"no runs in {self._where()} (no store there yet)")
        if "/" in ref:
            try:
                return ApiRun(store, store.find_run(ref))
            except RunNotFoundError:
                ref = ref.rsplit("/", 1)[-1]
        return ApiRun(store, store.find_run(ref))

    def projects(self) -> list[str]:
        """Project names that have runs."""
        store = self.store
        if store is None:
            return []
        return store.projects()

    def delete_run(self, run_id: str) -> None:
        """Delete a run and all it recorded (opens the store for writing just for this)."""
        with open_store(self.location) as writable:
            writable.delete_run(run_id)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class ApiRun:
    """A stored run. Attributes mirror the runs table; methods read its series."""

    def __init__(self, store: Store, record: RunRecord) -> None:
        self._store = store
        self._record = record
        self.id, self.name, self.project = record.id, record.name, record.project
        self.group, self.tags, self.notes = record.group, record.tags, record.notes
        self.state, self.config, self.summary = record.state, record.config, record.summary
        self.environment, self.metric_defs = record.environment, record.metric_defs
        self.created_at, self.ended_at = record.created_at, record.ended_at
        self.exit_code, self.exit_signal = record.exit_code, record.exit_signal
        self.heartbeat_at = record.heartbeat_at
        self.dropped_points = record.dropped_points  # logged but not kept: the writer's bound was reached
        self.rank = 0  # whose series the reads return when they are given no rank= (see at_rank)

    def __repr__(self) -> str:
        return f"<ApiRun {self.name!r} id={self.id} project={self.project!r} state={self.state}>"

    def ranks(self) -> list[int]:
        """The ranks whose series the run holds: ``[0]`` for a run of one process (or of rank 0 alone), every
        writing rank for a ``ranks="all"`` run (docs/distributed.md); ``[]`` before anything is logged."""
        return self._store.ranks(self.id)

    def rank_states(self) -> dict[int, RankRecord]:
        """Each rank's own state under ``ranks="all"`` (``state``, ``node``, ``pid``, ``ended_at``, ...; a killed
        rank reads ``crashed``); empty for other runs, whose state is the run's."""
        return self._store.rank_states(self.id)

    def at_rank(self, rank: int) -> ApiRun:
        """The same run read as ``rank`` wrote it: every read without ``rank=`` returns that rank's series (what
        ``expertrack export --rank`` and the dashboard's rank choice use). ValueError for a rank it does not have."""
        view = copy.copy(self)
        view.rank = self._rank(rank)
        return view

    def _rank(self, rank: int | None) -> int:
        """``rank`` checked: None is this view's rank (0: a single writer's, or the default of ``ranks="all"``)."""
        if rank is None:
            return self.rank
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise TypeError(f"rank= takes a rank number, not {rank!r}")
        if rank != 0 and rank not in self.ranks():
            raise ValueError(f"run {self.name!r} ({self.id}) has no series of rank {rank}; its ranks: {self.ranks()}")
        return rank

    def metric_keys(self, rank: int | None = None) -> list[str]:
        """Scalar metric names, sorted (of ``rank``; rank 0's by default)."""
        return self._store.scalar_keys(self.id, self._rank(rank))

    def array_keys(self, rank: int | None = None) -> list[str]:
        """Array metric names, sorted (of ``rank``; rank 0's by default)."""
        return self._store.array_keys(self.id, self._rank(rank))

    def point_count(self, key: str, rank: int | None = None) -> int:
        """How many points a scalar series holds."""
        return self._store.point_counts(self.id, key, self._rank(rank)).get(key, 0)

    def scalar_overview(self, rank: int | None = None) -> dict[str, ScalarOverview]:
        """Every scalar key with its points, last step and value, min and max, in one pass (what `show` lists)."""
        return self._store.scalar_overview(self.id, self._rank(rank))

    def array_overview(self) -> dict[str, ArrayOverview]:
        """Every array key with its steps, last step, and last shape and dtype, without reading any array."""
        return self._store.array_overview(self.id)

    def last_step(self) -> int | None:
        """The highest step logged, or None."""
        return self._store.last_step(self.id)

    def scalars(
        self, key: str, after_step: int | None = None, times: bool = True, rank: int | None = None
    ) -> tuple[Any, Any, Any]:
        """(steps, times, values) NumPy arrays: every point of one scalar series (after ``after_step`` if given);
        ``times=False`` skips reading the times (a third of the bytes) and gives None for them. ``rank``'s series
        under ``ranks="all"`` (this view's rank, 0 by default: see ``at_rank``)."""
        return self._store.read_scalars(self.id, key, after_step, times, rank=self._rank(rank))

    def scalar_envelope(self, key: str) -> Any:
        """The first, min, max, last and first NaN point of every 64-point block of a scalar series, with each
        point's block number (``expertrack.store.levels.Envelope``): enough to chart it with every spike kept,
        read mostly from precomputed levels. None when the key is unknown or the points must be read whole.
        This view's rank's series (see ``at_rank``)."""
        return self._store.read_envelope(self.id, key, self.rank)

    def arrays(self, key: str, rank: int | None = None) -> tuple[Any, Any]:
        """(steps [n], values [n, *shape]) of one array series; raises KeyError when the run has no such key."""
        import numpy as np

        items = self._store.read_arrays(self.id, key, rank=self._rank(rank))
        if not items:
            raise KeyError(f"run {self.name!r} has no array {key!r}; it has {self.array_keys()}")
        steps = np.array([s for s, _t, _a in items], dtype=np.int64)
        shapes = {a.shape for _s, _t, a in items}
        if len(shapes) > 1:  # shapes changed over the run (e.g. experts added): return a list, not a stack
            return steps, [a for _s, _t, a in items]
        return steps, np.stack([a for _s, _t, a in items])

    def array_steps(self, key: str, rank: int | None = None) -> list[int]:
        """The steps at which array ``key`` was logged, without reading any array (empty when it never was)."""
        return self._store.array_steps(self.id, key, self._rank(rank))

    def array(self, key: str, step: int, rank: int | None = None) -> Any:
        """The array ``key`` as logged at exactly ``step``; KeyError when it was not logged there."""
        value = self._store.read_array(self.id, key, step, self._rank(rank))
        if value is None:
            raise KeyError(f"run {self.name!r} has no array {key!r} at step {step}")
        return value

    def history(
        self,
        keys: list[str] | None = None,
        samples: int | None = None,
        stream: str = "default",
        rank: int | None = None,
    ) -> Any:
        """A pandas DataFrame with ``_step``, ``_timestamp`` and one column per scalar key, one row per step.

        Every point by default. With ``samples``, each key is reduced to about that many points keeping each
        bucket's first, min, max and last value, so spikes survive (never random sampling). System metrics
        (``system/...``, whose step is the sample's number, not a training step) are left out unless named in
        ``keys`` or asked for with ``stream="system"``, as wandb keeps them apart. ``rank`` picks one rank's
        series of a ``ranks="all"`` run; without it, rank 0's (every run has them: a run of one process is rank 0).
        """
        import numpy as np
        import pandas as pd

        if stream not in ("default", "system"):
            raise ValueError(f"history(stream=...) is 'default' or 'system', not {stream!r}")
        rank = self._rank(rank)
        system = [k for k in self.metric_keys(rank) if k.startswith("system/")] if stream == "system" else None
        wanted = system if system is not None else list(keys) if keys is not None else self._training_keys(rank)
        columns: dict[str, Any] = {}
        stamps = []
        for key in wanted:
            steps, times, values = self.scalars(key, rank=rank)
            if samples is not None and steps.size > samples:
                keep = minmax_indices(values, max(1, samples // 4))
                steps, times, values = steps[keep], times[keep], values[keep]
            columns[key] = pd.Series(values, index=steps)
            stamps.append(pd.Series(times, index=steps))
        if not columns:
            return pd.DataFrame({"_step": np.empty(0, np.int64), "_timestamp": np.empty(0)})
        frame = pd.DataFrame(columns)
        frame.index.name = "_step"
        timestamp = pd.concat(stamps, axis=1).min(axis=1)
        frame.insert(0, "_timestamp", timestamp.reindex(frame.index))
        return frame.sort_index().reset_index()

    def alerts(self) -> list[AlertRecord]:
        """The alerts raised for the run, oldest first: ``rule``, ``key``, ``step``, ``value``, ``time`` (unix
        seconds) and ``message`` of each (docs/alerts.md)."""
        return self._store.alerts(self.id)

    def _training_keys(self, rank: int = 0) -> list[str]:
        return [k for k in self.metric_keys(rank) if not k.startswith("system/")]

    def file(self, name: str) -> bytes | None:
        """A file stored with the run (for wrapped programs, "console.log"), or None."""
        return self._store.read_file(self.id, name)

    def file_names(self) -> list[str]:
        """Names of the files stored with the run."""
        return self._store.file_names(self.id)


_FILTER_FIELDS = ("id", "project", "state", "name", "group", "tags", "config", "summary")


def scalars_of_runs(runs: Sequence[ApiRun], key: str, times: bool = True) -> dict[str, tuple[Any, Any, Any]]:
    """``run.scalars(key, times=times)`` of each run (at its view's rank), by run id: one store query for all of
    them (``Store.read_scalars_many``), where run by run cost one each (on a database server, a round trip)."""
    out: dict[str, tuple[Any, Any, Any]] = {}
    for store, rank, ids in _by_store(runs):
        out.update(store.read_scalars_many(ids, key, times=times, rank=rank))
    return out


def envelopes_of_runs(runs: Sequence[ApiRun], key: str) -> dict[str, Any]:
    """``run.scalar_envelope(key)`` of each run, by run id, in one store query for all of them."""
    out: dict[str, Any] = {}
    for store, rank, ids in _by_store(runs):
        out.update(store.read_envelopes_many(ids, key, rank=rank))
    return out


def _by_store(runs: Sequence[ApiRun]) -> list[tuple[Store, int, list[str]]]:
    groups: dict[tuple[int, int], tuple[Store, int, list[str]]] = {}
    for run in runs:
        groups.setdefault((id(run._store), run.rank), (run._store, run.rank, []))[2].append(run.id)
    return list(groups.values())


def _check_filters(filters: dict[str, Any]) -> None:
    """Refuse what ``_matches`` cannot answer, so a wandb-style query fails loudly instead of matching nothing."""
    for field, wanted in filters.items():
        operators = [k for k in (wanted if isinstance(wanted, dict) else {}) if str(k).startswith("$")]
        if str(field).startswith("$") or operators:
            raise ValueError(
                f"runs(filters=...): query operators such as {field if str(field).startswith('$') else operators[0]}"
                " are not supported; give field: value pairs (exact matches) and filter the runs in Python"
            )
        head, _, rest = str(field).partition(".")
        if head not in _FILTER_FIELDS or (head in ("config", "summary") and not rest):
            raise ValueError(
                f"runs(filters=...): unknown field {field!r}; use id, project, state, name, group, tags, "
                "config.<key> or summary.<key>"
            )


def _matches(record: RunRecord, filters: dict[str, Any]) -> bool:
    for field, wanted in filters.items():
        if field == "tags":
            if wanted not in record.tags:
                return False
            continue
        head, _, rest = field.partition(".")
        value: Any = getattr(record, head, _MISSING) if head != "group" else record.group
        for part in rest.split(".") if rest else []:
            value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
        if value != wanted:
            return False
    return True


_MISSING = object()
