"""What the dashboard reads from the store, shaped for the page.

Every function here takes an ``expertrack.ApiRun`` read through a store opened read-only for one request (a
fresh SQLite WAL reader always sees the latest committed rows) and returns plain dicts for ``encode.JSON``.
Nothing here writes. Numeric series are reduced with the store's own ``minmax_indices`` so each bucket keeps
its first, min, max and last point: a spike is never averaged or sampled away.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.exceptions import HTTPException

from expertrack.dashboard.cache import SeriesCache
from expertrack.dashboard.encode import flatten, pack, timestamp
from expertrack.errors import AmbiguousRunError
from expertrack.store.downsample import minmax_indices

# Arrays on a step slider are sent whole per request; beyond this many steps the slider thins them evenly.
MAX_ARRAY_STEPS = 2000
# Console output sent on first load: the last this-many bytes (the page asks for more from an offset).
CONSOLE_TAIL_BYTES = 512 * 1024


def find_run(api: Any, ref: str) -> Any:
    """The run ``ref`` names (id, unique id prefix or name): 404 when none, 400 when several match."""
    try:
        return api.run(ref)
    except AmbiguousRunError as exc:
        raise HTTPException(400, str(exc)) from None
    except LookupError:
        raise HTTPException(404, f"no run {ref!r} in this store (by id, id prefix or name)") from None


def best_goal(key: str, metric_defs: Sequence[Mapping[str, Any]] | None) -> str:
    """'min' or 'max': what "best" means for ``key``: define_metric's summary if it says, else a name guess."""
    for spec in reversed(list(metric_defs or [])):
        name, summary = str(spec.get("name", "")), str(spec.get("summary") or "")
        if name == key or fnmatch.fnmatchcase(key, name):
            for goal in summary.split(","):
                if goal.strip() in ("min", "max"):
                    return goal.strip()
    lowered = key.lower()
    if any(word in lowered for word in ("acc", "f1", "score", "bleu", "auc", "precision", "recall", "reward")):
        return "max"
    return "min"


def signature(run: Any) -> tuple[Any, ...]:
    """What changes whenever a run gains data: its heartbeat and summary, and while it runs its last step (the
    writer rewrites the run's row at most every 2 s but stores points every flush: without the last step the
    table, and the live charts that follow its last step, lagged the store by up to 2 s)."""
    live = run.last_step() if run.state == "running" else None
    return (run.state, run.ended_at, run.heartbeat_at, json.dumps(run.summary, sort_keys=True, default=str), live)


@dataclass
class Stats:
    """Last and best value of one key of one run, foldable with newer points."""

    goal: str
    last: float
    last_step: int
    best: float | None = None
    best_step: int | None = None

    def fold(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Take in points logged after ``last_step``."""
        if not len(values):
            return
        self.last, self.last_step = float(values[-1]), int(steps[-1])
        finite = np.flatnonzero(np.isfinite(values))
        if not finite.size:
            return
        pick = finite[np.argmin(values[finite]) if self.goal == "min" else np.argmax(values[finite])]
        better = self.best is None or (values[pick] < self.best if self.goal == "min" else values[pick] > self.best)
        if better:
            self.best, self.best_step = float(values[pick]), int(steps[pick])

    def as_dict(self) -> dict[str, Any]:
        return {
            "last": self.last,
            "last_step": self.last_step,
            "best": self.best,
            "best_step": self.best_step,
            "goal": self.goal,
        }


class RowCache:
    """Parts of runs-table rows that cost queries, kept while the run's ``signature`` stands still.

    The page polls the table every second; a finished run's keys, last step and metric stats never change, and
    a running run's stats are folded forward from the points after the last step seen, not re-read whole.
    """

    def __init__(self) -> None:
        self.facts: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self.stats: dict[tuple[str, str], tuple[tuple[Any, ...], Stats | None]] = {}

    def row(self, run: Any, metrics: Sequence[str]) -> dict[str, Any]:
        """One row of the runs table: identity, state, times, last step, keys, flattened config, stats."""
        sig = signature(run)
        cached = self.facts.get(run.id)
        if cached is None or cached[0] != sig:
            last_step = sig[-1] if run.state == "running" else run.last_step()  # the signature read it already
            facts = {"last_step": last_step, "metric_keys": run.metric_keys(), "array_keys": run.array_keys()}
            self.facts[run.id] = (sig, facts)
        else:
            facts = cached[1]
        keys = set(facts["metric_keys"])
        stats = {key: self.key_stats(run, key, sig) for key in metrics if key in keys}
        return {
            "id": run.id,
            "name": run.name,
            "project": run.project,
            "group": run.group,
            "tags": list(run.tags or []),
            "state": run.state,
            "created_at": timestamp(run.created_at),
            "ended_at": timestamp(run.ended_at),
            "heartbeat_at": timestamp(run.heartbeat_at),  # a crashed run's last sign of life
            **facts,
            "config": flatten(dict(run.config or {})),
            "metrics": {k: s.as_dict() for k, s in stats.items() if s is not None},
        }

    def key_stats(self, run: Any, key: str, sig: tuple[Any, ...]) -> Stats | None:
        cached = self.stats.get((run.id, key))
        if cached is not None and cached[0] == sig:
            return cached[1]
        old = cached[1] if cached is not None else None
        # A running run: only the points from the last step seen on, since a value logged again at that step
        # replaces it; read whole when the best was that point (the replaced value may have been the best).
        if old is not None and run.state == "running" and old.best_step != old.last_step:
            steps, _times, values = run.scalars(key, after_step=old.last_step - 1)
            stats: Stats | None = Stats(**old.__dict__)
        else:
            steps, _times, values = run.scalars(key)
            stats = None
        if len(values):
            stats = stats or Stats(best_goal(key, run.metric_defs), float(values[0]), int(steps[0]))
            stats.fold(steps, values)
        self.stats[(run.id, key)] = (sig, stats)
        return stats

    def forget_except(self, run_ids: set[str]) -> None:
        """Drop entries of runs no longer in the store."""
        for run_id in [r for r in self.facts if r not in run_ids]:
            del self.facts[run_id]
        for pair in [p for p in self.stats if p[0] not in run_ids]:
            del self.stats[pair]


def run_detail(run: Any, with_env: bool = False) -> dict[str, Any]:
    """Everything the run page shows except the console: config, summary, environment, keys.

    The environment's variables (``environment["env"]``) are left out unless ``with_env``, as ``expertrack
    show`` leaves them out unless given ``--env``: a page shared on screen should not list them by default.
    ``env_count`` says how many there are.
    """
    environment = dict(run.environment or {})
    variables = environment.get("env")
    count = len(variables) if isinstance(variables, Mapping) else 0
    if not with_env:
        environment.pop("env", None)
    return {
        **RowCache().row(run, ()),
        "notes": run.notes,
        "config": run.config or {},
        "summary": run.summary or {},
        "environment": environment,
        "env_count": count,
        "metric_defs": run.metric_defs or [],
        "exit_code": run.exit_code,
        "exit_signal": run.exit_signal,
        "dropped_points": run.dropped_points,
        "files": run.file_names(),
    }


def _window(steps: np.ndarray, times: Any, lo: float | None, hi: float | None, x: str) -> np.ndarray:
    """Indices of the points inside [lo, hi] on the ``x`` axis ("step" or "time")."""
    axis = steps if x == "step" else times
    keep = np.ones(len(axis), dtype=bool)
    if lo is not None:
        keep &= axis >= lo
    if hi is not None:
        keep &= axis <= hi
    return np.flatnonzero(keep)


def series(
    run: Any,
    key: str,
    buckets: int,
    after: int | None = None,
    lo: float | None = None,
    hi: float | None = None,
    x: str = "step",
    with_times: bool = True,
    cache: SeriesCache | None = None,
) -> dict[str, Any] | None:
    """One run's points of one scalar key after step ``after``, in [lo, hi], reduced to <= ~4 x ``buckets``.

    None when the run never logged ``key``. ``times`` is left out unless ``with_times``: a chart on a step axis
    draws steps and values only, and the times were a third of every answer. A whole series is read through
    ``cache`` when given (a live update, ``after``, reads only the new points from the store).
    """
    if after is None and lo is None and hi is None and x == "step" and not with_times:
        answer = _from_levels(run, key, buckets, cache)
        if answer is not None:
            return answer
    need_times = with_times or x == "time"
    if cache is not None and after is None:
        steps, times, values = cache.scalars(run, key, times=need_times)
    else:
        steps, times, values = run.scalars(key, after_step=after, times=need_times)
    if after is None and not len(steps):
        return None
    total = len(steps)
    last_step = int(steps[-1]) if total else after
    if lo is not None or hi is not None:
        chosen = _window(steps, times, lo, hi, x)
        steps, values = steps[chosen], values[chosen]
        times = None if times is None else times[chosen]
    matched = len(steps)
    if matched > 4 * buckets:
        keep = minmax_indices(values, buckets)
        steps, values = steps[keep], values[keep]
        times = None if times is None else times[keep]
    answer = {"matched": matched, "count": len(steps), "last_step": last_step, "steps": pack(steps)}
    if with_times:
        answer["times"] = pack(times)
    answer["values"] = pack(values)
    return answer


def series_of_runs(
    runs: Sequence[Any],
    key: str,
    buckets: int,
    afters: Sequence[int | None],
    lo: float | None = None,
    hi: float | None = None,
    x: str = "step",
    with_times: bool = True,
    cache: SeriesCache | None = None,
) -> dict[str, dict[str, Any]]:
    """``series`` of each run (after its own step of ``afters``), by run id, leaving out runs that never logged
    ``key``. Through ``cache``, the whole series the runs need (levels, else every point) are first read for all
    of them together: one store query, where run by run cost one each (a round trip each on a database server)."""
    if cache is not None:
        whole = [run for run, after in zip(runs, afters, strict=True) if after is None]
        if whole and lo is None and hi is None and x == "step" and not with_times:
            envelopes = cache.envelopes_many(whole, key)
            short = LEVEL_BLOCKS_PER_BUCKET * buckets
            whole = [run for run, env in zip(whole, envelopes, strict=True) if env is None or env.block_count < short]
        if len(whole) > 1:
            cache.scalars_many(whole, key, times=with_times or x == "time")
    out = {}
    for run, after in zip(runs, afters, strict=True):
        answer = series(run, key, buckets, after, lo, hi, x, with_times, cache)
        if answer is not None:
            out[run.id] = answer
    return out


# A whole series is charted from its block picks (store/levels.py) when it spans this many blocks per bucket:
# a bucket is then made of whole 64-point blocks, and its edges barely differ from equal-count buckets.
LEVEL_BLOCKS_PER_BUCKET = 4


def _from_levels(run: Any, key: str, buckets: int, cache: SeriesCache | None) -> dict[str, Any] | None:
    """``series``'s answer for a whole long series, from the precomputed levels (every bucket's first, min, max,
    last and first NaN, exactly as from its points); None when the series is short or must be read whole."""
    envelope = cache.envelope(run, key) if cache is not None else run.scalar_envelope(key)
    if envelope is None or envelope.block_count < LEVEL_BLOCKS_PER_BUCKET * buckets:
        return None
    keep = envelope.chart(buckets)
    return {
        "matched": envelope.points,
        "count": len(keep),
        "last_step": int(envelope.steps[-1]),
        "steps": pack(envelope.steps[keep]),
        "values": pack(envelope.values[keep]),
    }


def _thin(count: int, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` evenly spaced items out of ``count``, always keeping the first and last."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))


def _read_arrays(run: Any, key: str) -> tuple[np.ndarray, Any]:
    try:
        return run.arrays(key)
    except KeyError:
        raise HTTPException(404, f"run {run.id!r} has no array {key!r}") from None


def array_at(run: Any, key: str, step: int | None) -> dict[str, Any]:
    """The array ``key`` as logged at ``step`` (the latest at or before it; the last when None). Steps come from
    the arrays' index and only that one array is read: other steps of a huge array cost nothing."""
    steps = np.asarray(run.array_steps(key), dtype=np.int64)
    if not steps.size:
        raise HTTPException(404, f"run {run.id!r} has no array {key!r}")
    index = len(steps) - 1 if step is None else int(np.searchsorted(steps, step, side="right")) - 1
    if index < 0:
        raise HTTPException(404, f"run {run.id!r} logged {key!r} first at step {int(steps[0])}, after step {step}")
    value = np.asarray(run.array(key, int(steps[index])), dtype=np.float64)
    return {
        "key": key,
        "steps": steps[_thin(len(steps), MAX_ARRAY_STEPS)].tolist(),
        "step": int(steps[index]),
        "shape": list(value.shape),
        "values": value.tolist(),
        "domains": moe_domains(run),
    }


def array_series(run: Any, key: str) -> dict[str, Any]:
    """Every step of a small array (e.g. a per-layer entropy [L]), thinned to MAX_ARRAY_STEPS, as columns."""
    steps, values = _read_arrays(run, key)
    shown = _thin(len(steps), MAX_ARRAY_STEPS)
    rows = [np.asarray(values[i], dtype=np.float64).ravel() for i in shown]
    width = max((len(r) for r in rows), default=0)
    flat = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):  # a shape that changed mid-run (experts added) leaves NaN gaps
        flat[i, : len(row)] = row
    return {
        "key": key,
        "steps": pack(steps[shown]),
        "shape": list(np.asarray(values[-1]).shape),
        "columns": [pack(flat[:, i]) for i in range(width)],
    }


def moe_domains(run: Any) -> list[str] | None:
    """The domain names of an MoE run (``config["moe"]["domains"]``), or None when it has none."""
    config = run.config or {}
    moe = config.get("moe") if isinstance(config, Mapping) else None
    domains = moe.get("domains") if isinstance(moe, Mapping) else None
    if isinstance(domains, (list, tuple)):
        return [str(d) for d in domains]
    return None


def console(run: Any, offset: int | None) -> dict[str, Any]:
    """The run's console output from byte ``offset`` (the last CONSOLE_TAIL_BYTES when None)."""
    data = run.file("console.log")
    if data is None:
        return {"present": False, "offset": 0, "next_offset": 0, "text": "", "truncated": False}
    size = len(data)
    start = max(0, size - CONSOLE_TAIL_BYTES) if offset is None else min(offset, size)
    return {
        "present": True,
        "offset": start,
        "next_offset": size,
        "text": data[start:].decode("utf-8", errors="replace"),
        "truncated": offset is None and start > 0,
    }
