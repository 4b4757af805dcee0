"""``expertrack reparse``: rebuild a wrapped run's scalar metrics from the console saved with it.

The saved stdout (``stdout.log``; ``console.log`` for runs that have no separate stdout) is fed through the same
``LineFeeder`` as a live run, and its items go through the same step rule as ``Run.log`` with explicit steps
(values at one step merge; a step lower than the current one is refused). Each point keeps the time its console
chunk was saved (within about a second of when it was printed), not the time of the reparse. The run's state,
exit code and environment are untouched; its config gains what the parser reads; its summary is recomputed.
The old points are replaced by the new in one transaction (``Store.replace_scalars``): a reparse that fails, or a
reader looking meanwhile, never finds the run empty.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expertrack.capture.parsers import ConfigItems, Item, Metrics
from expertrack.capture.tracker import CONSOLE_FILE, STDOUT_FILE, LineFeeder
from expertrack.config import dumps
from expertrack.records import Row
from expertrack.store import SQLiteStore, Store
from expertrack.store.chunks import SeriesBuffer
from expertrack.summary import SummaryState


class ReparseError(Exception):
    """The run cannot be reparsed (still running, or no saved console); the message says why."""


@dataclass
class ReparseReport:
    """What a reparse did."""

    parser: str
    lines: int
    points: int
    keys: list[str]
    refused: int


@dataclass
class _Rows:
    """Parser items as rows, with ``Run.log``'s rule for explicit steps."""

    step: int = 0
    pending: dict[str, float] = field(default_factory=dict)
    pending_time: float = 0.0
    records: list[Row] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)
    points: int = 0
    refused: int = 0

    def add(self, items: list[Item], saved_at: float) -> None:
        for item in items:
            if isinstance(item, ConfigItems):
                self.config.update(item.values)
                continue
            assert isinstance(item, Metrics)
            if item.step < self.step:
                self.refused += len(item.values)
                continue
            if item.step > self.step:
                self.commit()
                self.step = item.step
            if not self.pending:
                self.pending_time = saved_at
            self.pending.update(item.values)

    def commit(self) -> None:
        if self.pending:
            self.records.append((self.step, self.pending_time, self.pending))
            self.keys.update(self.pending)
            self.points += len(self.pending)
            self.pending = {}


def reparse_run(store_path: Path, run_id: str, parser: str | None, announce: Callable[[str], None]) -> ReparseReport:
    """Replace the run's scalars with those parsed from its saved console (``parser`` None: detect again)."""
    store = SQLiteStore(store_path)
    try:
        record = store.run(run_id)
        if record.state == "running":
            raise ReparseError(f"run {record.name} ({run_id}) is still running; reparse it once it has ended")
        chunks = store.file_chunks(run_id, STDOUT_FILE) or store.file_chunks(run_id, CONSOLE_FILE)
        if not chunks:
            raise ReparseError(
                f"run {record.name} ({run_id}) has no saved console: only runs started with "
                "`expertrack run` can be reparsed"
            )
        feeder = LineFeeder(parser, announce)
        rows = _Rows()
        for saved_at, data in chunks:
            rows.add(feeder.feed(data), saved_at)
        rows.add(feeder.finish(), chunks[-1][0])
        rows.commit()
        _rewrite(store, run_id, rows, {**record.config, **rows.config}, record.metric_defs)
    finally:
        store.close()
    return ReparseReport(feeder.parser_name or "", feeder.lines, rows.points, sorted(rows.keys), rows.refused)


def _rewrite(store: Store, run_id: str, rows: _Rows, config: dict[str, Any], metric_defs: list[dict[str, Any]]) -> None:
    """Replace the run's scalars with the new points, its config and its summary, in one transaction."""
    import numpy as np

    series: dict[str, SeriesBuffer] = {}
    for step, t, values in rows.records:
        for key, value in values.items():
            buffer = series.get(key)
            if buffer is None:
                buffer = series[key] = SeriesBuffer(key)
            buffer.append(step, t, float(value))
    summary = SummaryState()
    summary.set_defs(metric_defs)
    for key, buffer in series.items():
        summary.update(key, np.frombuffer(buffer.values, dtype=np.float64))
    try:
        store.replace_scalars(run_id, list(series.values()), dumps(config), json.dumps(summary.snapshot()))
    except Exception as exc:  # the command's boundary: any engine's error, said with the run left as it was
        raise ReparseError(
            f"writing the rebuilt metrics failed ({type(exc).__name__}: {exc}); the run's points are as they were"
        ) from exc
