"""``expertrack import wandb DIR``: W&B offline run directories (their .wandb logs) into the local store.

Each run keeps its W&B id, project, name, group, tags, notes, config, define_metric settings, every numeric
history value at its step with the wall time it was logged at, and its start and end times. Values that are
not numbers (images, tables, histograms, text) are counted and left out. Several directories of one run id
(an offline run resumed) become one run, in the order they were written.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expertrack.config import dumps
from expertrack.mirror.wandb_log import WandbRun, read_run
from expertrack.records import Batch, End, MetricDefs, NewRun, RunUpdate
from expertrack.store.chunks import SeriesBuffer
from expertrack.summary import SummaryState

_STAMP = re.compile(r"\d{8}_\d{6}")
_SUMMARY_MODES = {"min", "max", "mean", "last", "first", "none"}  # the ones expertrack's define_metric knows


@dataclass
class ImportResult:
    """What was imported for one W&B run id."""

    run_id: str
    name: str
    project: str
    steps: int = 0
    keys: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # key -> values left out (not numbers)
    repeated: int = 0  # rows left out because an earlier piece of the run already had their step
    files: list[Path] = field(default_factory=list)
    note: str | None = None  # why nothing was imported, when nothing was


def find_logs(path: str | os.PathLike[str]) -> list[Path]:
    """The .wandb logs under ``path`` (a .wandb file, a run directory, or a directory of runs), oldest first."""
    root = Path(path)
    if root.is_file():
        return [root]
    logs = sorted(root.glob("run-*.wandb")) or sorted(root.glob("*/run-*.wandb"))
    if not logs:
        logs = sorted(root.glob("wandb/*/run-*.wandb"))
    # W&B links latest-run to the newest run directory: each log once, by its real directory's name
    real: dict[Path, Path] = {}
    for log in logs:
        if log.resolve() not in real or not log.parent.is_symlink():
            real[log.resolve()] = log
    logs = list(real.values())
    # Run directories are named like offline-run-YYYYMMDD_HHMMSS-ID: their time stamp orders them in time.
    return sorted(logs, key=lambda p: (_STAMP.findall(p.parent.name)[-1:], str(p)))


def import_runs(path: str | os.PathLike[str], dir: str | os.PathLike[str] | None = None) -> Iterator[ImportResult]:
    """Import every W&B run found under ``path`` into the store in ``dir``; one result per run id."""
    stored = _stored_runs(dir)
    groups: dict[str, list[WandbRun]] = {}
    for log in find_logs(path):
        file_id = log.stem.removeprefix("run-")  # W&B names the log after its run id
        if file_id in stored:  # already imported: not read again (a long run's log takes seconds to read)
            name, project = stored[file_id]
            yield ImportResult(file_id, name, project, files=[log], note=_already_there(file_id, dir))
            continue
        run = read_run(log)
        groups.setdefault(run.run_id or file_id, []).append(run)
    for run_id, parts in groups.items():
        yield import_run(run_id, parts, dir)


def _stored_runs(dir: str | os.PathLike[str] | None) -> dict[str, tuple[str, str]]:
    """id -> (name, project) of the runs already in the store in ``dir`` (none when there is no store yet)."""
    from expertrack.errors import StoreError
    from expertrack.paths import store_path
    from expertrack.store import SQLiteStore

    path = store_path(dir)
    if not path.exists():
        return {}
    try:
        with SQLiteStore(path, readonly=True) as store:
            return {r.id: (r.name, r.project) for r in store.runs()}
    except (StoreError, sqlite3.Error):  # not a usable store yet: import_run's own open says what is wrong
        return {}


def _already_there(run_id: str, dir: str | os.PathLike[str] | None) -> str:
    from expertrack.paths import store_path

    return f"a run with id {run_id} is already in {store_path(dir).parent}; not imported again"


def import_run(run_id: str, parts: list[WandbRun], dir: str | os.PathLike[str] | None = None) -> ImportResult:
    """Import the pieces (one per .wandb file, in order) of one W&B run as one expertrack run.

    The run is made through the store's interface: its row, then every point, its metric definitions, summary
    and end in one batch, with the W&B run's own start and end times and each point's logged time.
    """
    import numpy as np

    from expertrack.paths import store_path
    from expertrack.store import SQLiteStore

    head = parts[0]
    config: dict[str, Any] = {}
    for part in parts:
        config.update(part.config)
    name = next((p.name for p in reversed(parts) if p.name), "") or run_id
    project = head.project or "uncategorized"
    result = ImportResult(run_id, name, project, files=[p.path for p in parts])
    defs = _metric_defs(parts)
    series = _series(parts, result)
    started, ended = _wall_times(parts)
    last = parts[-1]
    exit_code = last.exit_code if last.exit_code is not None else 1
    with SQLiteStore(store_path(dir)) as store:
        new = NewRun(run_id, project, name, head.group or None, json.dumps(head.tags or []), head.notes or None,
                     dumps(config), started, socket.gethostname(), os.getpid())  # fmt: skip
        if not store.create_run(new):
            result.note = _already_there(run_id, dir)
            return result
        summary = SummaryState()
        summary.set_defs(defs)
        for key, buffer in series.items():
            summary.update(key, np.frombuffer(buffer.values, dtype=np.float64))
        for key, value in _summary_overrides(parts).items():
            summary.set_override(key, value)
        end = End("failed" if exit_code else "finished", exit_code, None, ended)
        store.write_batch(
            Batch(
                run_id=run_id,
                update=RunUpdate(time.time(), 0, json.dumps(summary.snapshot())),
                series=list(series.values()),
                seal=True,
                records=[MetricDefs(defs), end],
            )
        )
    result.keys = len(series)
    return result


def _metric_defs(parts: list[WandbRun]) -> list[dict[str, Any]]:
    """The runs' define_metric settings, in expertrack's shape (the summary modes it knows)."""
    defs = []
    for part in parts:
        for metric in part.metrics:
            if not (metric.name or metric.glob_name):
                continue
            modes = [m for m in metric.summary if m in _SUMMARY_MODES]
            defs.append(
                {
                    "name": metric.name or metric.glob_name,
                    "step_metric": metric.step_metric or None,
                    "summary": ",".join(modes) or None,
                    "goal": None,
                    "hidden": metric.hidden,
                }
            )
    return defs


def _series(parts: list[WandbRun], result: ImportResult) -> dict[str, SeriesBuffer]:
    """Every numeric history value as scalar series, at its step, with the time it was logged at (now, when the
    row has none); a later piece's rows at steps an earlier piece had are left out (counted)."""
    series: dict[str, SeriesBuffer] = {}
    last_step = -1
    now = time.time()
    for part in parts:
        for row in part.history:
            step = int(row["_step"])
            if step <= last_step:  # a later piece that repeats steps (the same run sent twice): keep the first
                result.repeated += 1
                continue
            values = _numbers(row, result.skipped)
            if not values:
                continue
            timestamp = row.get("_timestamp")
            logged_at = float(timestamp) if isinstance(timestamp, (int, float)) and math.isfinite(timestamp) else now
            for key, value in values.items():
                buffer = series.get(key)
                if buffer is None:
                    buffer = series[key] = SeriesBuffer(key)
                buffer.append(step, logged_at, value)
            result.steps += 1
            last_step = step
    return series


def _wall_times(parts: list[WandbRun]) -> tuple[float, float]:
    """The W&B run's start and end times (from its history's times where its header has none; now at worst)."""
    started = parts[0].start_time
    last = parts[-1]
    times = [t for part in parts for row in part.history if isinstance(t := row.get("_timestamp"), (int, float))]
    if last.start_time is not None and last.runtime is not None:
        ended: float | None = last.start_time + last.runtime
    else:
        ended = max(times, default=None)
    if started is None:
        started = min(times, default=time.time())
    return started, ended if ended is not None and ended >= started else time.time()


def _numbers(row: dict[str, Any], skipped: dict[str, int]) -> dict[str, float]:
    """The row's numeric values (bools as 0/1, NaN and inf kept); the rest counted in ``skipped``."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key.startswith("_"):
            continue
        if isinstance(value, (int, float)):
            out[key] = float(value)
        elif value is not None:
            skipped[key] = skipped.get(key, 0) + 1
    return out


def _summary_overrides(parts: list[WandbRun]) -> dict[str, Any]:
    """Summary values W&B holds that are not simply a key's last logged value (``run.summary[k] = v``)."""
    last: dict[str, Any] = {}
    for part in parts:
        for row in part.history:
            last.update(row)
    summary = parts[-1].summary
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if key.startswith("_") or not isinstance(value, (int, float)):
            continue  # W&B's own bookkeeping, media and aggregate dicts (define_metric recomputes those)
        if key in last and _same(last[key], value):
            continue
        out[key] = value
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)
