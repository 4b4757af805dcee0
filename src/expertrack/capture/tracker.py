"""From the child's output bytes to a run's records: lines, the parser (given or detected), metrics, config, and
the saved console.

``LineFeeder`` is the pure part, shared with ``reparse``: bytes in, parser items out. ``OutputTracker`` runs it on
its own thread for a live child: the reader thread only enqueues chunks (``on_output``), so parsing and storing
never slow the child down unless the queue fills (then the reader waits, which is back-pressure, not loss).

Nothing a parser reads waits long here (issue 18): the format is chosen within DETECT_VALUE_SECONDS of the first
line holding a value, the run's open row is published within POLL_S, and a quiet output wakes the writer.

Saved with the run: ``console.log``, every byte of stdout and stderr in the order they arrived, a whole line
at a time (see ``Console``), and ``stdout.log``, stdout alone (what the parser read, so ``reparse`` sees exactly
the same lines). Both are appended about once a second, not per line.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from expertrack.capture.child import STDERR, STDOUT
from expertrack.capture.parsers import ConfigItems, Item, Metrics, Parser, detect, get_parser, parser_names
from expertrack.capture.parsers.base import MAX_LINE_CHARS, finished_line
from expertrack.capture.parsers.generic import generic_metrics
from expertrack.stream.lines import TaggedLineFilter
from expertrack.stream.rebuild import StreamRebuilder

if TYPE_CHECKING:
    from expertrack.run import Run

CONSOLE_FILE = "console.log"
STDOUT_FILE = "stdout.log"
CONSOLE_FLUSH_S = 1.0
# When to stop holding lines and choose (checked as lines arrive, and while idle): a known format is trusted
# after a few lines or seconds (its first signature line alone can be ambiguous, e.g. llm.c's table border); the
# fallback only after many, since a known format's first metric line may follow a long start-up. But a line that
# some parser reads a value from is held only DETECT_VALUE_SECONDS (the lines printed with it, usually in the
# same burst, still count): every value must reach the store within a second of its line (issue 18), and the
# writer adds up to half a second of its own.
DETECT_MIN_LINES, DETECT_MIN_SECONDS = 20, 2.0
DETECT_MAX_LINES, DETECT_MAX_SECONDS = 50, 15.0
DETECT_VALUE_SECONDS = 0.15
# How often the tracker thread looks at a quiet output (held lines to release, the run's open row to publish),
# and how long an open row may wait before it is published while output keeps coming.
POLL_S = 0.1
MAX_LINE_BYTES = 4 * MAX_LINE_CHARS  # longer lines are never metrics (parsers skip them); not even buffered
# Output waiting to be parsed, bounded in bytes (not chunks: a read is often one short line). A burst this large
# is absorbed at once, so a child that prints faster than we parse keeps its speed; past it, the child waits.
QUEUE_BYTES = 256 << 20
# Terminal escape sequences (ECMA-48): CSI (colours, cursor moves: ESC [ ... final byte), OSC (window titles,
# hyperlinks: ESC ] ... BEL or ESC \), and the two-byte ones (ESC and one byte).
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


class LineFeeder:
    """Splits stdout bytes into lines and feeds them to the parser, choosing it from the first lines if needed.

    Lines are decoded as UTF-8 with ``errors="replace"``, lose their trailing "\\n" (a "\\r" stays: parsers
    read it as a progress bar drawn over) and their terminal escape sequences (colours, cursor moves: a
    coloured ``step 4: ...`` is read as the plain text on screen). A line over MAX_LINE_BYTES is cut to the text
    after its last "\\r" (a progress bar redrawn thousands of times: parsers read only its last drawing) and
    skipped only when that is still too long. Until a parser is chosen, lines are held and fed once it is.

    ``live``: the output of a running program, whose values must show within a second (``Parser.go_live``).
    """

    def __init__(self, parser: str | None, announce: Callable[[str], None], live: bool = False) -> None:
        self._live = live
        self._parser: Parser | None = self._ready(get_parser(parser)) if parser else None
        self._announce = announce
        self._held: list[str] = []
        self._first_line_at: float | None = None
        self._value_at: float | None = None  # when the first held line that holds a value came
        self._partial = b""
        self._skipping = False  # inside an overlong line, until its newline
        self.lines = 0  # complete lines seen

    @property
    def parser_name(self) -> str | None:
        """The chosen parser's name, or None while it is still being detected."""
        return self._parser.name if self._parser is not None else None

    def feed(self, data: bytes) -> list[Item]:
        """Items completed by this chunk of stdout."""
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                return []
            data, self._skipping = data[newline + 1 :], False
            self.lines += 1
        lines = (self._partial + data).split(b"\n") if self._partial else data.split(b"\n")
        partial = lines.pop()
        if len(partial) > MAX_LINE_BYTES:
            partial = _drawn_last(partial)
            if len(partial) > MAX_LINE_BYTES:
                partial, self._skipping = b"", True
        self._partial = partial
        self.lines += len(lines)
        items: list[Item] = []
        parser = self._parser
        feed = self._line if parser is None else parser.feed  # the hot path: one call per line, nothing else
        for raw in lines:
            if len(raw) > MAX_LINE_BYTES:
                raw = _drawn_last(raw)
                if len(raw) > MAX_LINE_BYTES:
                    continue
            items += feed(_text(raw))
        return items

    def poll(self) -> list[Item]:
        """Items released because a waiting time ran out while no new line came (call when idle): detection's,
        or the parser's own (step-less lines waiting for a first step)."""
        if self._parser is None:
            return self._choose(final=False) if self._held else []
        return self._parser.poll()

    def finish(self) -> list[Item]:
        """Items from the last, unterminated line and whatever the parser held back."""
        items: list[Item] = []
        if self._partial and not self._skipping:
            self.lines += 1
            items += self._line(_text(self._partial))
        self._partial = b""
        if self._parser is None:
            items += self._choose(final=True)
        assert self._parser is not None
        return items + self._parser.finish()

    def _line(self, line: str) -> list[Item]:
        if self._parser is not None:
            return self._parser.feed(line)
        self._held.append(line)
        now = time.monotonic()
        if self._first_line_at is None:
            self._first_line_at = now
        if self._live and self._value_at is None and holds_value(line):
            self._value_at = now
        return self._choose(final=False)

    def _choose(self, final: bool) -> list[Item]:
        """Pick the parser when the held lines show a known format, or when waiting longer would not help."""
        name = detect(self._held)
        if not final:
            now = time.monotonic()
            waited = now - (self._first_line_at or now)
            lines, seconds = (
                (DETECT_MAX_LINES, DETECT_MAX_SECONDS) if name == "generic" else (DETECT_MIN_LINES, DETECT_MIN_SECONDS)
            )
            if self._value_at is not None:
                seconds = min(seconds, self._value_at - (self._first_line_at or now) + DETECT_VALUE_SECONDS)
            if len(self._held) < lines and waited < seconds:
                return []
        self._parser = self._ready(get_parser(name))
        if self._held:  # nothing printed, nothing to say
            self._announce(f"parsing output as {name}")
        held, self._held = self._held, []
        items: list[Item] = []
        for line in held:
            items += self._parser.feed(line)
        return items

    def _ready(self, parser: Parser) -> Parser:
        if self._live:
            parser.go_live()
        return parser


def holds_value(line: str) -> bool:
    """Whether any built-in parser could read a metric or config value from this line (while detecting)."""
    if "\r" in line:
        line = finished_line(line)
    if len(line) > MAX_LINE_CHARS:
        return False
    return bool(generic_metrics(line)[1]) or any(parser.feed(line) for parser in _value_readers())


def _value_readers() -> list[Parser]:
    """Fresh live parsers of the families: each line is read on its own, and a value held for a step counts."""
    readers = [get_parser(name) for name in parser_names() if name != "generic"]
    for reader in readers:
        reader.go_live()
    return readers


def _drawn_last(raw: bytes) -> bytes:
    """An overlong line cut to its last drawing: the text after its last "\\r" (kept, with any trailing ones).

    A progress bar redrawn thousands of times before its newline grows past MAX_LINE_BYTES, yet parsers read
    only what follows the last "\\r" (``finished_line``); trailing "\\r"s are line-ending noise, not a redraw.
    """
    cut = raw.rstrip(b"\r").rfind(b"\r")
    return raw if cut < 0 else raw[cut:]


def _text(raw: bytes) -> str:
    """A line as the parsers read it: UTF-8 (bad bytes as U+FFFD), without terminal escape sequences."""
    line = raw.decode("utf-8", errors="replace")
    return _ESCAPES.sub("", line) if "\x1b" in line else line


def apply_items(run: Run, items: list[Item]) -> None:
    """Log parser items into a live run: metrics at their step, config values merged into the config."""
    for item in items:
        if isinstance(item, Metrics):
            run.log(item.values, step=item.step)
        elif isinstance(item, ConfigItems):
            run.config.update(item.values)


class Console:
    """The saved console: both streams merged a whole line at a time, and stdout alone.

    Programs often write a line in pieces (Python writes ``print(..., file=sys.stderr)`` as the text, then "\n"),
    and the other stream may write in between. The relay keeps lines whole on screen but may wait only
    milliseconds; the saved record can wait longer, so here a stream's unfinished line waits until its newline
    comes, or until the next save (progress bars and prompts have no newline), and then goes in whole.
    """

    def __init__(self) -> None:
        self.merged = bytearray()
        self.stdout = bytearray()
        self._unfinished = {STDOUT: b"", STDERR: b""}

    def add(self, stream: str, data: bytes) -> None:
        if stream == STDOUT:
            self.stdout += data
        pending = self._unfinished[stream] + data if self._unfinished[stream] else data
        cut = pending.rfind(b"\n") + 1
        if cut:
            self.merged += pending[:cut]
            pending = pending[cut:]
        if len(pending) > MAX_LINE_BYTES:
            self.merged += pending
            pending = b""
        self._unfinished[stream] = pending

    def take(self) -> tuple[bytes, bytes]:
        """(merged, stdout) since the last call, unfinished lines included; empties the console."""
        for stream, pending in self._unfinished.items():
            self.merged += pending
            self._unfinished[stream] = b""
        taken = bytes(self.merged), bytes(self.stdout)
        self.merged.clear()
        self.stdout.clear()
        return taken


class ByteQueue:
    """A FIFO of (item, size) bounded by the sum of sizes; ``put`` waits only while the budget is used up."""

    def __init__(self, budget: int) -> None:
        self._items: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self._budget = budget
        self._cond = threading.Condition()

    def put(self, item: Any, size: int) -> None:
        with self._cond:
            while self._bytes and self._bytes + size > self._budget:
                self._cond.wait()
            self._items.append((item, size))
            self._bytes += size
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item; raises ``queue.Empty`` when none came within ``timeout``."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout):
                raise queue.Empty
            item, size = self._items.popleft()
            self._bytes -= size
            self._cond.notify_all()
            return item

    def get_nowait(self) -> Any:
        return self.get(timeout=0)


class OutputTracker:
    """Consumes the child's output on its own thread: parses stdout into the run, saves the console."""

    def __init__(self, parser: str | None, announce: Callable[[str], None]) -> None:
        self.feeder = LineFeeder(parser, announce, live=True)
        self._announce = announce
        self._queue = ByteQueue(QUEUE_BYTES)
        self._run: Run | None = None
        self._console = Console()
        self._last_save = time.monotonic()
        self._unpublished_since: float | None = None  # when the run's open row got its first unpublished value
        self._failed = False
        self._thread = threading.Thread(target=self._loop, name="expertrack-parse", daemon=True)
        self._tagged = TaggedLineFilter()  # a remote run's records in the output (expertrack.stream)
        self._rebuilder: StreamRebuilder | None = None

    def on_output(self, stream: str, data: bytes) -> None:
        """Called by the reader thread for every chunk: only enqueues (waits only when far behind)."""
        if not self._failed:
            self._queue.put((stream, data), len(data))

    def start(self, run: Run | None) -> None:
        """Start consuming into ``run`` (None: the run could not be created; output is only drained)."""
        self._run = run
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Process everything queued, flush the parser and the console; call after the output has ended."""
        if not self._thread.is_alive():
            return
        self._queue.put(None, 0)
        self._thread.join(timeout)

    def _loop(self) -> None:
        try:
            while True:
                try:
                    chunk = self._queue.get(timeout=POLL_S)
                except queue.Empty:
                    self._track(self.feeder.poll())
                    self._publish(write_now=True)  # output went quiet: store the newest step now, not at the next
                    if time.monotonic() - self._last_save >= CONSOLE_FLUSH_S:
                        self._save_console()
                    continue
                if chunk is None:
                    break
                self._consume(*chunk)
                if self._unpublished_since is not None and time.monotonic() - self._unpublished_since >= POLL_S:
                    self._publish()  # output keeps coming, but the step it belongs to may last a minute
            rest, cut_short = self._tagged.end()
            self._consume(STDOUT, rest)
            if cut_short is not None and self._rebuilder is None and self._run is not None:
                self._rebuilder = StreamRebuilder(self._run.dir, self._announce)
            if self._rebuilder is not None:
                if cut_short is not None:
                    self._rebuilder.cut_short(cut_short)
                self._rebuilder.close()
            self._track(self.feeder.finish())
            self._save_console()
        except Exception as exc:  # outer boundary: a tracker bug must never block or kill the child
            self._fail(exc)

    def _consume(self, stream: str, data: bytes) -> None:
        if stream == STDOUT:
            data, tagged = self._tagged.feed(data)
            if tagged and self._rebuilder is None and self._run is not None:  # the first: a remote run streams
                self._rebuilder = StreamRebuilder(self._run.dir, self._announce)
            for line in tagged:  # the relay hid them from the terminal; they never reach the console file either
                if self._rebuilder is not None:
                    self._rebuilder.feed(line)
        self._console.add(stream, data)
        if stream == STDOUT:
            self._track(self.feeder.feed(data))
        if time.monotonic() - self._last_save >= CONSOLE_FLUSH_S:
            self._save_console()

    def _track(self, items: list[Item]) -> None:
        if items and self._run is not None:
            apply_items(self._run, items)
            if self._unpublished_since is None:
                self._unpublished_since = time.monotonic()

    def _publish(self, write_now: bool = False) -> None:
        """Hand the run's open row to the writer (an explicit step keeps it open until the next step, which a
        slow trainer prints a minute later); values logged later at the same step replace these in place.

        ``write_now`` (the output went quiet) also wakes the writer instead of leaving the values to its next
        flush, up to half a second away: at most one extra write per quiet spell, so a slow trainer's step is in
        the store about as soon as it is printed, and a fast one's writes stay on the writer's cadence.
        """
        if self._unpublished_since is not None and self._run is not None:
            self._run.publish()
            if write_now:
                self._run.flush(timeout=0)  # wakes the writer; does not wait for it
        self._unpublished_since = None

    def _save_console(self) -> None:
        self._last_save = time.monotonic()
        merged, stdout = self._console.take()
        if self._run is not None:
            self._run.append_file(CONSOLE_FILE, merged)  # empty data is not stored
            self._run.append_file(STDOUT_FILE, stdout)

    def _fail(self, exc: Exception) -> None:
        """Stop tracking (the output keeps passing through) and drain the queue so the reader never blocks."""
        self._failed = True
        self._announce(f"tracking stopped ({type(exc).__name__}: {exc}); the command's output still passes through")
        while True:
            try:
                if self._queue.get_nowait() is None:
                    return
            except queue.Empty:
                return
