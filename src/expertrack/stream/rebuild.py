"""Rebuilding streamed runs in the local store, from tagged lines (the format: expertrack.stream).

Each run a stream announces (its ``run`` record, on line 0 of a session) gets a row with the same id and a writer
of its own, fed the same records the remote writer was fed, so the local run holds the same points, at the same
steps and wall times, with the same summary. What this promises against hostile or damaged input:

- a line is applied whole or not at all: every record is checked before any is queued;
- a line that cannot be used (malformed, checksum, too long, unannounced run, too many runs) is dropped and said
  once per kind of problem, with the count at the end;
- a stream never writes to a run that was in the local store before it announced it (a forged header cannot
  change your runs; pull the run's snapshots instead), and creates at most ``MAX_RUNS`` runs;
- a sequence number already applied is a replay (a launcher that reconnects and repeats its log): dropped
  silently; a gap is said once (lines lost on the way);
- a run whose remote ended without its ``end`` record (the container was preempted or killed, the launcher lost)
  is left as it stopped: readers show it crashed, and ``pull`` of its snapshots completes it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expertrack.notify import Notifier, say
from expertrack.records import (
    ConfigSet,
    End,
    Environment,
    FileChunk,
    MetricDefs,
    Record,
    Row,
    SummaryDeleted,
    SummarySet,
)
from expertrack.stream.lines import Batch, StreamError, decode_line

MAX_RUNS = 100
CLOSE_TIMEOUT_S = 30.0
_END_STATES = ("finished", "failed", "killed")


@dataclass(frozen=True)
class Header:
    """A stream's announcement of a run: its id, name, project, group, tags, notes, config, creation time."""

    fields: dict[str, Any]


@dataclass
class _Rebuilt:
    """A run this stream created: its writer while the remote streams it."""

    writer: Any  # expertrack.writer.Writer; None once its end record is stored
    sessions: dict[str, int] = field(default_factory=dict)  # session -> last sequence number applied


class StreamRebuilder:
    """Applies tagged lines to the runs they announce in the store of ``directory``; never raises."""

    def __init__(self, directory: Path, announce: Callable[[str], None] = say) -> None:
        self.directory = directory
        self.notifier = Notifier()
        self._announce = announce
        self.runs: dict[str, _Rebuilt] = {}
        self.refused: set[str] = set()  # runs already in the store: their lines are dropped
        self.applied = 0  # lines applied
        self.dropped = 0  # lines dropped for a problem (replays not counted)

    def feed(self, line: bytes) -> None:
        """One tagged line: decoded, checked, applied to its run; a problem is said once by kind."""
        try:
            batch = decode_line(line)
            queued = self._check(batch)
            if queued is not None:
                self._apply(batch, queued)
        except StreamError as err:
            self._drop(err)
        except Exception as exc:  # the outer boundary: a store problem costs this line, never the command
            self._drop(StreamError("store", f"a tagged line that could not be stored ({type(exc).__name__}: {exc})"))

    def cut_short(self, partial: bytes) -> None:
        """The output ended inside a tagged line (the remote died mid-line)."""
        self._drop(StreamError("truncated", "a tagged line cut short at the end of the output (the remote died)"))

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Store what is queued and stop every writer; say how many lines were dropped."""
        for rebuilt in self.runs.values():
            if rebuilt.writer is not None:
                rebuilt.writer.close(timeout)
                rebuilt.writer = None
        if self.dropped:
            self._announce(f"stream: {self.dropped:,} tagged line(s) were dropped in all ({self.applied:,} applied)")

    # ---- checking ---------------------------------------------------------------------------------------------

    def _check(self, batch: Batch) -> list[Header | Row | Record] | None:
        """The batch's records as the writer's queue tuples, or None for a line already applied (a launcher that
        reconnects and repeats its log: skipped silently); ``StreamError`` if any record is not usable."""
        if batch.run_id in self.refused:
            raise StreamError("refused", f"lines of run {batch.run_id}, which was in the local store already")
        rebuilt = self.runs.get(batch.run_id)
        known = rebuilt is not None and batch.session in rebuilt.sessions
        if rebuilt is not None and known and batch.seq <= rebuilt.sessions[batch.session]:
            return None
        announced = batch.seq == 0 and bool(batch.records) and batch.records[0][0] == "run"
        if not known and not announced:
            raise StreamError("unannounced", f"lines of run {batch.run_id} that came before its announcement")
        queued: list[Header | Row | Record] = []
        for i, record in enumerate(batch.records):
            if record[0] == "rows":
                queued += _rows(record)
            else:
                queued.append(_queued(record, first=not known and i == 0))
        return queued

    def _apply(self, batch: Batch, queued: list[Header | Row | Record]) -> None:
        rebuilt = self.runs.get(batch.run_id)
        if rebuilt is not None and batch.seq > rebuilt.sessions.get(batch.session, batch.seq) + 1:
            self.notifier.once(
                f"gap:{batch.run_id}", f"stream: lines of run {batch.run_id} were lost on the way (a gap)"
            )
        for record in queued:
            if isinstance(record, Header):
                rebuilt = self._open(batch.run_id, record.fields)
                continue
            assert rebuilt is not None
            writer = rebuilt.writer
            if writer is None:  # the run has ended; only a new session (its run resumed) reopens it
                continue
            if isinstance(record, tuple):  # a Row; the writer's bound holds as in log(): past it, points are dropped
                if writer.logged_points - writer.settled_points >= writer.max_queued_points:
                    writer.drop(len(record[2]))
                    continue
                writer.logged_points += len(record[2])
            elif isinstance(record, SummaryDeleted):  # as Run does: what came before is in the summary, then delete
                writer.flush(CLOSE_TIMEOUT_S)
                writer.summary.delete(record.key)
            writer.queue.append(record)
        assert rebuilt is not None
        if rebuilt.writer is not None and any(isinstance(record, End) for record in queued):
            # the end's line may hold points logged while the remote finished (system metrics): stored with it
            rebuilt.writer.close(CLOSE_TIMEOUT_S)
            rebuilt.writer = None
        elif rebuilt.writer is not None:
            # stored now, not at the writer's next cadence flush (up to 0.5 s away): the remote already waited
            # for its own flush; does not wait for the write
            rebuilt.writer.flush(timeout=0)
        rebuilt.sessions[batch.session] = batch.seq
        self.applied += 1

    def _open(self, run_id: str, header: dict[str, Any]) -> _Rebuilt:
        rebuilt = self.runs.get(run_id)
        if rebuilt is None:
            if len(self.runs) >= MAX_RUNS:
                raise StreamError("too-many-runs", f"an announcement of a {MAX_RUNS + 1}th run ({run_id})")
            rebuilt = _Rebuilt(self._writer(run_id, header, resume=False))
            self.runs[run_id] = rebuilt
            self._announce(f"stream: rebuilding run {header.get('name') or run_id} ({run_id}) from the output")
        elif rebuilt.writer is None:
            rebuilt.writer = self._writer(run_id, header, resume=True)
        return rebuilt

    def _writer(self, run_id: str, header: dict[str, Any] | None, resume: bool) -> Any:
        """A started writer for the run's row, created now (or reopened, ``resume``)."""
        from expertrack import session
        from expertrack.paths import STORE_FILE
        from expertrack.store import SQLiteStore
        from expertrack.summary import SummaryState
        from expertrack.writer import Writer

        header = header or {}
        config = header.get("config")
        store = SQLiteStore(self.directory / STORE_FILE)
        try:
            if not resume and session._existing(store, run_id):
                self.refused.add(run_id)
                raise StreamError("refused", f"an announcement of run {run_id}, which is in the local store already")
            fields = session._RunFields(
                project=_text(header.get("project")) or "uncategorized",
                name=_text(header.get("name")),
                group=_text(header.get("group")),
                tags=[str(t) for t in header.get("tags") or []] or None,
                notes=_text(header.get("notes")),
                config=config if isinstance(config, dict) else {},
            )
            summary = SummaryState()
            session._open_run(store, run_id, "allow" if resume else None, fields, summary, None)
            created = header.get("created_at")
            if not resume and isinstance(created, (int, float)) and math.isfinite(created):
                store.set_run_times(run_id, float(created), None)  # the remote run's: pull matches runs by it
        except BaseException:
            store.close()
            raise
        writer = Writer(store, run_id, self.notifier, summary=summary)
        writer.start()
        return writer

    def _drop(self, err: StreamError) -> None:
        self.dropped += 1
        self.notifier.once(
            f"stream:{err.kind}", f"stream: dropped {err} (further lines with this problem are dropped silently)"
        )


def _text(value: Any) -> str | None:
    return str(value)[:1000] if isinstance(value, (str, int, float)) and value != "" else None


def _queued(record: list[Any], first: bool) -> Header | Row | Record:
    """One streamed record as the writer's record; ``StreamError`` when its shape or types are wrong."""
    kind = record[0]
    try:
        if kind == "run" and first and isinstance(record[1], dict):
            return Header(record[1])
        if kind == "m":
            _, step, t, values = record
            if _is_int(step) and step >= 0 and _is_number(t) and isinstance(values, dict):
                return (step, float(t), {str(k): _value(v) for k, v in values.items()})
        elif kind in ("config", "environment") and isinstance(record[1], str):
            if isinstance(json.loads(record[1]), dict):
                return ConfigSet(record[1]) if kind == "config" else Environment(record[1])
        elif kind == "defs" and isinstance(record[1], list):
            if all(isinstance(d, dict) and isinstance(d.get("name"), str) for d in record[1]):
                return MetricDefs(record[1])
        elif kind == "summary" and len(record) == 3 and isinstance(record[1], str):
            return SummarySet(record[1], record[2])
        elif kind == "summary-deleted" and len(record) == 2 and isinstance(record[1], str):
            return SummaryDeleted(record[1])
        elif kind == "file":
            _, name, data, replace = record
            if isinstance(name, str) and name and isinstance(data, dict) and isinstance(replace, bool):
                return FileChunk(name, base64.b64decode(data["$b"], validate=True), replace)
        elif kind == "end":
            _, state, code, signal, ended = record
            if state in _END_STATES and _is_int(code) and (signal is None or _is_int(signal)) and _is_number(ended):
                return End(state, code, signal, float(ended))
    except (ValueError, TypeError, KeyError, binascii.Error):
        pass
    raise StreamError("record", f"a tagged line with a malformed {str(kind)[:20]!r} record")


def _rows(record: list[Any]) -> list[Row]:
    """A ``rows`` record as the writer's rows; ``StreamError`` when its shape or types are wrong."""
    import numpy as np

    try:
        _, keys, steps, times, values = record
        if isinstance(keys, list) and keys and all(isinstance(k, str) for k in keys):
            step_array, time_array, value_array = (
                np.frombuffer(base64.b64decode(data, validate=True), dtype=dtype)
                for data, dtype in ((steps, "<i8"), (times, "<f8"), (values, "<f8"))
            )
            n = len(step_array)
            shaped = len(time_array) == n and len(value_array) == n * len(keys)
            if shaped and (n == 0 or step_array.min() >= 0) and np.isfinite(time_array).all():
                table = value_array.reshape(n, len(keys)).tolist()
                return [
                    (step, t, dict(zip(keys, row, strict=True)))
                    for step, t, row in zip(step_array.tolist(), time_array.tolist(), table, strict=True)
                ]
    except (ValueError, TypeError, binascii.Error):
        pass
    raise StreamError("record", "a tagged line with a malformed 'rows' record")


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _value(value: Any) -> Any:
    """A streamed value: a number (NaN and infinities pass, as log() takes them), or an array."""
    if type(value) in (int, float):
        return value
    if isinstance(value, dict) and isinstance(value.get("$a"), list) and len(value["$a"]) == 3:
        import numpy as np

        dtype, shape, data = value["$a"]
        array = np.frombuffer(base64.b64decode(data, validate=True), dtype=np.dtype(dtype))
        if np.dtype(dtype).kind in "biuf" and isinstance(shape, list) and all(_is_int(n) for n in shape):
            return array.reshape(shape)
    raise ValueError("not a number or an array")
