"""The sending side: the writer's committed records as tagged lines on stdout (the format: expertrack.stream).

``attach(writer, header)`` is called by ``init()`` when ``EXPERTRACK_STREAM=stdout``. The writer then keeps the
records it takes from its queue (``Writer.tap``) and hands them, after each commit, to ``StdoutSink.emit`` on its
own thread: one batch of lines per flush (every 0.5 s at most), never on the training thread. A value that cannot
be encoded, or a record larger than a line, is said once and left out of the stream (it is in the store).

Records, as JSON lists (tuples of the writer's queue, values made JSON-safe):
``["run", {id, name, project, group, tags, notes, config, created_at, start_step}]``,
``["m", step, time, {key: value}]`` (a value is a number, or ``{"$a": [dtype, shape, base64]}`` for an array),
``["rows", [key...], steps, times, values]`` (consecutive rows of plain numbers with the same keys, as base64 of
little-endian int64, float64 and row-major float64 arrays),
``["config", json]``, ``["defs", [definition...]]``, ``["summary", key, value]``, ``["summary-deleted", key]``,
``["environment", json]``, ``["file", name, {"$b": base64}, replace]``, ``["end", state, exit_code, signal, time]``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import threading
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
from expertrack.stream import ENV_VAR, MARKER, MAX_LINE_BYTES, SEND_RAW_BYTES

if TYPE_CHECKING:
    from expertrack.notify import Notifier
    from expertrack.writer import Writer

END_DRAIN_S = 5.0  # how long the run's end waits for its lines to reach stdout (finish() has its deadline)
MAX_PENDING_BYTES = 16 << 20  # lines waiting for a stdout nobody reads (seconds of a fast run), then dropped
ROWS_VALUES = 4096  # values in one "rows" record (32 KiB of float64, 44 KiB as base64)
MAX_PAYLOAD_BYTES = MAX_LINE_BYTES - 256  # room for the marker, run id, session, number and checksum


def attach_if_asked(writer: Writer, header: dict[str, Any]) -> StdoutSink | None:
    """``attach`` when ``$EXPERTRACK_STREAM`` is ``stdout``; another value is said once and ignored."""
    asked = os.environ.get(ENV_VAR, "").strip().lower()
    if asked == "stdout":
        return attach(writer, header)
    if asked not in ("", "off", "0", "no"):
        writer.notifier.once("stream-env", f"{ENV_VAR}={asked!r} is not known (use 'stdout'); nothing is streamed")
    return None


def attach(writer: Writer, header: dict[str, Any], write: Callable[[bytes], None] | None = None) -> StdoutSink:
    """Stream what ``writer`` commits, starting with ``header`` (the run's fields); call before the writer starts."""
    sink = StdoutSink(writer.run_id, writer.notifier, write)
    sink.pending.append(["run", header])
    writer.tap = []
    writer.after_commit = sink.emit
    return sink


class StdoutSink:
    """Turns batches of records into tagged lines and writes them, whole, to file descriptor 1."""

    def __init__(self, run_id: str, notifier: Notifier, write: Callable[[bytes], None] | None = None) -> None:
        self.run_id = run_id
        self.session = secrets.token_hex(8)
        self.notifier = notifier
        self.seq = 0
        self.pending: list[list[Any]] = []  # the header, before the first batch
        self._outbox: _Outbox | None = None
        if write is None:  # stdout: written on a thread of its own
            self._outbox = _Outbox(notifier)
            write = self._outbox.put
        self._write = write
        self._lock = threading.Lock()

    def emit(self, records: list[Row | Record]) -> None:
        """Encode one committed batch and hand its lines over for writing (the writer's thread; never raises).
        The batch with the run's end waits, a few seconds at most, until its lines are written."""
        try:
            batch = self.pending + self._records(records)
            self.pending = []
            if batch:
                self._write(b"".join(self.lines(batch)))
            if self._outbox is not None and any(isinstance(record, End) for record in records):
                self._outbox.drain(END_DRAIN_S)
        except Exception as exc:  # the tracker's outer boundary: the stream is a copy, the store has it all
            self.notifier.once("stream-write", f"could not write the stream to stdout ({type(exc).__name__}: {exc})")

    def lines(self, batch: list[Any]) -> list[bytes]:
        """``batch`` as lines of about ``SEND_RAW_BYTES`` of JSON each, every record encoded once."""
        lines: list[bytes] = []
        texts: list[str] = []
        size = 0
        for record in batch:
            text = json.dumps(record, separators=(",", ":"), default=_json_default)
            if texts and size + len(text) > SEND_RAW_BYTES:
                lines += self._lines_of(texts)
                texts, size = [], 0
            texts.append(text)
            size += len(text) + 1
        return lines + self._lines_of(texts) if texts else lines

    def _lines_of(self, texts: list[str]) -> list[bytes]:
        """One line of these encoded records, or two halves when it would be too long for the receiver (a record
        alone that is too long is left out, said once)."""
        payload = base64.b64encode(zlib.compress(("[" + ",".join(texts) + "]").encode(), 1))
        if len(payload) <= MAX_PAYLOAD_BYTES:
            return [self._line(payload)]
        if len(texts) == 1:
            kind = json.loads(texts[0])[0]
            self.notifier.once(
                f"stream-large:{kind}",
                f"a {kind!r} record of run {self.run_id} is too large for the stream ({len(payload):,} bytes "
                "encoded); it is left out of the stream (it is in the store, and in snapshots)",
            )
            return []
        half = len(texts) // 2
        return self._lines_of(texts[:half]) + self._lines_of(texts[half:])

    def _line(self, payload: bytes) -> bytes:
        with self._lock:
            seq = self.seq
            self.seq += 1
        body = b"%s %s %d" % (self.run_id.encode(), self.session.encode(), seq)
        crc = zlib.crc32(payload, zlib.crc32(body + b" "))
        return MARKER + body + b" %08x " % crc + payload + b"\n"

    def _records(self, records: list[Row | Record]) -> list[list[Any]]:
        """The batch as JSON-ready records: runs of rows of plain numbers with the same keys as ``rows`` columns
        (about 10x cheaper to encode than a dict per row), everything else one by one."""
        out: list[list[Any]] = []
        rows: list[Row] = []
        keys: tuple[str, ...] = ()
        for record in records:
            if type(record) is Row and _plain(record.values):
                row_keys = tuple(record.values)
                if rows and (row_keys != keys or len(rows) * len(keys) >= ROWS_VALUES):
                    out.append(_rows(keys, rows))
                    rows = []
                keys = row_keys
                rows.append(record)
                continue
            if rows:
                out.append(_rows(keys, rows))
                rows = []
            encoded = self._record(record)
            if encoded is not None:
                out.append(encoded)
        if rows:
            out.append(_rows(keys, rows))
        return out

    def _record(self, record: Row | Record) -> list[Any] | None:
        """One record in the stream's JSON form; None for those the stream does not carry."""
        if type(record) is Row:
            values = {k: e for k, v in record.values.items() if (e := self._value(k, v)) is not None}
            return ["m", record.step, record.time, values]
        if isinstance(record, ConfigSet):
            return ["config", record.config]
        if isinstance(record, MetricDefs):
            return ["defs", record.defs]
        if isinstance(record, SummarySet):
            return ["summary", record.key, record.value]
        if isinstance(record, SummaryDeleted):
            return ["summary-deleted", record.key]
        if isinstance(record, Environment):
            return ["environment", record.environment]
        if isinstance(record, FileChunk):
            return ["file", record.name, {"$b": base64.b64encode(record.data).decode()}, record.replace]
        if isinstance(record, End):
            return ["end", record.state, record.exit_code, record.signal, record.ended_at]
        return None  # the writer's own (arrays it split out, alerts it raised) never reach the queue

    def _value(self, key: str, value: Any) -> Any:
        if type(value) in (float, int):
            return value
        try:
            return encode_value(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            self.notifier.once(f"stream-value:{key}", f"stream: could not encode {key!r} ({exc}); not streamed")
            return None


def _plain(values: dict[str, Any]) -> bool:
    """Whether a row holds only floats (and ints a float holds exactly), as training loops log them."""
    return all(type(v) is float or (type(v) is int and -(2**53) <= v <= 2**53) for v in values.values())


def _rows(keys: tuple[str, ...], rows: list[Row]) -> list[Any]:
    """``["rows", keys, steps, times, values]``: little-endian int64, float64 and float64 (row-major) arrays as
    base64 (NaN and infinities kept bit for bit)."""
    import numpy as np

    steps = np.array([row.step for row in rows], dtype="<i8")
    times = np.array([row.time for row in rows], dtype="<f8")
    values = np.array([v for row in rows for v in row.values.values()], dtype="<f8")
    return ["rows", list(keys), *(base64.b64encode(a.tobytes()).decode() for a in (steps, times, values))]


def encode_value(value: Any) -> Any:
    """A logged value as JSON: numbers as they are, arrays and tensors as ``{"$a": [dtype, shape, base64]}``."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu()
        value = value.float().numpy() if value.is_floating_point() else value.numpy()
        if value.ndim == 0:
            return float(value)
    import numpy as np

    array = np.ascontiguousarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"a {array.dtype} array cannot be streamed")
    if array.ndim == 0:
        return float(array)
    return {"$a": [array.dtype.str, list(array.shape), base64.b64encode(array.tobytes()).decode()]}


def _json_default(value: Any) -> Any:
    """Values JSON does not know (a NumPy number set as a summary value): as ``encode_value`` makes them, else
    their text."""
    try:
        return encode_value(value)
    except (TypeError, ValueError, RuntimeError):
        return str(value)


class _Outbox:
    """Writes the stream's lines to stdout on a thread of its own, so a reader that stops reading (a launcher
    gone, a full pipe) holds only this thread, never the writer and its store; past ``MAX_PENDING_BYTES`` waiting,
    lines are dropped, said once (the snapshots and ``pull`` still have the run)."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._pending: list[bytes] = []
        self._bytes = 0
        self._busy = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="expertrack-stream", daemon=True)
        self._thread.start()

    def put(self, data: bytes) -> None:
        with self._ready:
            if self._bytes + len(data) > MAX_PENDING_BYTES:
                self.notifier.once(
                    "stream-unread",
                    f"stdout is not being read: more than {MAX_PENDING_BYTES >> 20} MiB of the stream wait, so "
                    "stream lines are dropped (the store, snapshots and pull have everything)",
                )
                return
            self._pending.append(data)
            self._bytes += len(data)
            self._ready.notify()

    def drain(self, timeout: float) -> bool:
        """Wait until every line handed over is written; False when ``timeout`` passed first."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _loop(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._pending))
                data, self._pending = b"".join(self._pending), []
                self._busy = True
            try:
                _write_stdout(data)
            except OSError as exc:  # the reader is gone (EPIPE): the stream ends, training goes on
                self.notifier.once("stream-write", f"could not write the stream to stdout ({exc}); it stops here")
            with self._ready:
                self._bytes -= len(data)
                self._busy = False
                self._ready.notify_all()


def _write_stdout(data: bytes) -> None:
    """Whole lines to fd 1, after whatever ``print()`` buffered, so our lines do not cut into the program's."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):  # stdout closed or replaced: fd 1 is still the stream
        pass
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]
