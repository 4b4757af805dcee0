"""``expertrack reparse``: rebuild a wrapped run's scalar metrics from the console saved with it.

The saved stdout (``stdout.log``; ``console.log`` for runs that have no separate stdout) is fed through the same
``LineFeeder`` as a live run, and its items go through the same step rule as ``Run.log`` with explicit steps
(values at one step merge; a step lower than the current one is refused). Each point keeps the time its console
chunk was saved (within about a second of when it was printed), not the time of the reparse. The run's state,
exit code and environment are untouched; its config gains what the parser reads; its summary is recomputed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expertrack.capture.parsers import ConfigItems, Item, Metrics
from expertrack.capture.tracker import CONSOLE_FILE, STDOUT_FILE, LineFeeder
from expertrack.notify import Notifier
from expertrack.runconfig import dumps
from expertrack.store import Store
from expertrack.summary import SummaryState
from expertrack.writer import Writer

WRITE_DEADLINE_S = 300.0


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
    """Parser items as the writer's metric records, with ``Run.log``'s rule for explicit steps."""

    step: int = 0
    pending: dict[str, float] = field(default_factory=dict)
    pending_time: float = 0.0
    records: list[tuple[Any, ...]] = field(default_factory=list)
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
            self.records.append(("m", self.step, self.pending_time, self.pending))
            self.keys.update(self.pending)
            self.points += len(self.pending)
            self.pending = {}


def reparse_run(store_path: Path, run_id: str, parser: str | None, announce: Callable[[str], None]) -> ReparseReport:
    """Replace the run's scalars with those parsed from its saved console (``parser`` None: detect again)."""
    store = Store(store_path)
    try:
        record = store.run(run_id)
        if record.state == "running":
            raise ReparseError(f"run {record.name} ({run_id}) is still running; reparse it once it has ended")
        chunks = file_chunks(store, run_id, STDOUT_FILE) or file_chunks(store, run_id, CONSOLE_FILE)
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
    """Delete the run's scalars, then write the new points, config and summary through a writer."""
    store.delete_scalars(run_id)
    summary = SummaryState()
    summary.set_defs(metric_defs)
    # the writer owns the connection from here and closes it; reparse_run's close is then a no-op
    writer = Writer(store, run_id, Notifier(), summary=summary)
    writer.queue.extend(rows.records)
    writer.queue.append(("config", dumps(config)))
    writer.queue.append(("summary",))  # rewrite the summary even when no point was found
    writer.start()
    if not writer.close(WRITE_DEADLINE_S):
        raise ReparseError(f"the store did not finish writing within {WRITE_DEADLINE_S:.0f} s")
    if writer.errors:
        raise ReparseError("writing the rebuilt metrics failed (see the message above)")


def file_chunks(store: Store, run_id: str, name: str) -> list[tuple[float, bytes]]:
    """A run file's chunks with the time each was saved, in order (``Store.read_file`` joins them, timeless)."""
    rows = store.conn.execute(
        "SELECT created_at, data FROM files WHERE run_id = ? AND name = ? ORDER BY seq", (run_id, name)
    ).fetchall()
    return [(float(created_at), zlib.decompress(data)) for created_at, data in rows]
