"""The relay: a small process, forked from the wrapper, that drains the child's output, passes every chunk
through to the wrapper's stdout/stderr at once, and forwards it, framed, over a 1 MiB pipe to the wrapper.

Why a process and not a thread: a pty holds only ~4 KiB, a fraction of a millisecond of a program that prints
fast, and a thread in the wrapper must take the GIL after every read, which the parsing thread holds for up to
the switch interval. Everything the child waits on (reading its output and showing it to you) therefore lives
in a process that does nothing else, at full priority. The wrapper drains the frame pipe into memory with one
thread, so the relay rarely waits either; if tracking falls far behind, the waits are back-pressure, never loss.

When the child writes into pipes (no pty) and floods them (output again within ``NAP_S`` of the last), the relay
reads in batches: it naps ``NAP_S`` before the next read, unless that read found the pipe well filled. A
program printing 400,000 lines a second then costs a few hundred reads a second instead of one per line, and
that CPU stays with the program; the pipe (1 MiB) holds far more than a nap's worth of output. Within a nap the
order of stdout lines against stderr lines is lost (each stream stays in order); a program that prints a line
now and then is read at once, so its warnings stay exactly between its step lines. A pty holds ~4 KiB, so it is
always read at once.

Frames are ``HEADER`` (stream id, length) followed by that many bytes. The relay ends when every channel has
reached end-of-file, or, once told that the child exited (a byte on the "exited" pipe), when the channels have
been silent for ``QUIET_AFTER_EXIT_S`` (something the child started still holds them open). It ignores the
signals the wrapper forwards (the wrapper decides what reaches the child).

If the wrapper dies without cleaning up (``kill -9``), the "exited" pipe closes without that byte (or, once the
child has exited, the relay finds itself re-parented). The relay then sends SIGTERM, once, to the child's
whole process group (what it started too), keeps passing output through, and sends SIGKILL to whatever is left
after ``ORPHAN_GRACE_S``, time enough for a trainer to save a checkpoint. So nothing keeps training unseen.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import time
from dataclasses import dataclass

from expertrack.stream.lines import TaggedLineFilter

STDOUT = "stdout"
STDERR = "stderr"
STREAMS = (STDOUT, STDERR)  # index = stream id in a frame
HEADER = struct.Struct("<BI")
READ_SIZE = 1 << 18
PIPE_SIZE = 1 << 20  # F_SETPIPE_SZ: capped by /proc/sys/fs/pipe-max-size (1 MiB by default)
NAP_S = 0.002
QUIET_AFTER_EXIT_S = 1.0
HOLD_S = 0.05  # how long one stream's output may wait for the other to finish its line (unnoticeable on screen)
ORPHAN_GRACE_S = 30.0
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032  # Linux, <linux/fcntl.h>
_IGNORED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


@dataclass(frozen=True)
class Relay:
    """The wrapper's handles on a running relay."""

    pid: int
    frames: int  # read end of the frame pipe
    exited: int  # write end of the "child exited" pipe: a byte then end-of-file tells the relay


def start_relay(channels: dict[int, str], child_pid: int, *, coalesce: bool = False) -> Relay:
    """Fork the relay for ``channels`` (read end -> stream name) of the child ``child_pid`` (its group leader).
    ``coalesce``: the channels are pipes, read in batches (see the module docstring) if they hold 1 MiB.

    Call with no other thread running: the forked process runs Python code.
    """
    nap_s = NAP_S if coalesce and all(_pipe_size(fd) >= PIPE_SIZE for fd in channels) else 0.0
    frames_read, frames_write = os.pipe()
    exited_read, exited_write = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(frames_write, F_SETPIPE_SZ, PIPE_SIZE)
    pid = os.fork()
    if pid == 0:  # the relay
        status = 1
        try:
            os.close(frames_read)
            os.close(exited_write)
            _become_relay()
            _pump(channels, frames_write, exited_read, _Orphaning(child_pid), nap_s)
            status = 0
        finally:
            os._exit(status)  # never return into the wrapper's code, never run its atexit hooks
    os.close(frames_write)
    os.close(exited_read)
    return Relay(pid, frames_read, exited_write)


class FrameReader:
    """Splits the frame pipe's bytes back into (stream, chunk) pairs; frames may arrive cut anywhere."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        buffer = self._buffer
        buffer += data
        chunks = []
        offset = 0
        while len(buffer) - offset >= HEADER.size:
            stream_id, length = HEADER.unpack_from(buffer, offset)
            end = offset + HEADER.size + length
            if end > len(buffer):
                break
            chunks.append((STREAMS[stream_id], bytes(buffer[offset + HEADER.size : end])))
            offset = end
        del buffer[:offset]
        return chunks


def _become_relay() -> None:
    for signum in _IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    for signum in (signal.SIGTSTP, signal.SIGCONT):
        signal.signal(signum, signal.SIG_DFL)  # stop and continue with the wrapper's group (Ctrl-Z, fg)


class _Orphaning:
    """What the relay does when the wrapper is gone: SIGTERM to the child's group, SIGKILL after the grace.

    The wrapper's death shows as end-of-file on the "exited" pipe while the child runs, or, once the child has
    exited (something it started may still print), as this process being re-parented.
    """

    def __init__(self, child_group: int) -> None:
        self.child_group = child_group
        self.parent = os.getppid()  # the wrapper
        self.since: float | None = None
        self.killed = False

    def start(self, now: float) -> None:
        """SIGTERM to the group, once: both signs of the wrapper's death may be seen."""
        if self.since is None:
            self.since = now
            self._signal(signal.SIGTERM)

    def tick(self, now: float) -> bool:
        """True once the grace has run out and the group was killed."""
        if self.since is None and os.getppid() != self.parent:
            self.start(now)
        if self.since is not None and not self.killed and now - self.since > ORPHAN_GRACE_S:
            self._signal(signal.SIGKILL)
            self.killed = True
        return self.killed

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child_group, signum)


def _pipe_size(fd: int) -> int:
    try:
        return fcntl.fcntl(fd, F_GETPIPE_SZ)
    except OSError:  # not a pipe, or not Linux
        return 0


def _pump(channels: dict[int, str], frames: int, exited: int, orphaning: _Orphaning, nap_s: float) -> None:
    poller = select.poll()
    for fd in (*channels, exited):
        poller.register(fd, select.POLLIN)
    open_fds = dict(channels)
    output = _LineMerger(frames)
    last_data = time.monotonic()
    exited_at: float | None = None
    ready_since = last_data  # when the relay last came back to wait for output
    while open_fds:
        ready = poller.poll(output.timeout_ms(time.monotonic()))
        now = time.monotonic()
        output.tick(now)
        if orphaning.tick(now) and exited_at is None:
            exited_at = now
        if exited_at is not None and not ready and now - max(exited_at, last_data) > QUIET_AFTER_EXIT_S:
            break
        # which of two ready streams wrote first is unknowable; the one inside a line most likely continues it
        ready.sort(key=lambda event: open_fds.get(event[0]) != output.inside_line)
        flooding = now - ready_since < nap_s  # output was waiting already, or came at once
        largest_read = 0
        for fd, _event in ready:
            if fd == exited:  # a byte: the wrapper has seen the child exit; end-of-file alone: it died
                poller.unregister(fd)
                if _read(fd):
                    exited_at = now
                else:
                    orphaning.start(now)
                continue
            last_data = now
            data = _read(fd)
            largest_read = max(largest_read, len(data))
            if data:
                output.add(open_fds[fd], data, now)
            else:
                poller.unregister(fd)
                output.ended(open_fds.pop(fd))
        if flooding and 0 < largest_read < READ_SIZE // 2:  # let output gather (a well-filled pipe: hurry on)
            time.sleep(nap_s)
        ready_since = time.monotonic()
    output.release()


class _LineMerger:
    """Passes chunks on to our stdout/stderr and the frame pipe, keeping lines whole across the two streams.

    Programs write a line in pieces (Python writes ``print()``'s text, then "\n"), and two ptys deliver
    asynchronously, so the other stream's next line can arrive between the pieces. While one stream is inside a
    line, the other's chunks wait for its "\n", at most ``HOLD_S`` (a progress bar never sends one).
    """

    def __init__(self, frames: int) -> None:
        self.frames: int | None = frames
        self.echo = {STDOUT: 1, STDERR: 2}
        self.hidden = TaggedLineFilter()  # a remote run's tagged lines never reach the terminal (issue 14)
        self.inside_line: str | None = None  # the stream whose last chunk ended inside a line
        self.held: list[tuple[str, bytes]] = []
        self.hold_until = 0.0

    def timeout_ms(self, now: float) -> int:
        return 200 if not self.held else max(0, int((self.hold_until - now) * 1000) + 1)

    def add(self, stream: str, data: bytes, now: float) -> None:
        if self.inside_line not in (None, stream):
            if not self.held:
                self.hold_until = now + HOLD_S
            self.held.append((stream, data))
            return
        self._emit(stream, data)
        if self.inside_line is None:
            self.release()

    def tick(self, now: float) -> None:
        if self.held and now >= self.hold_until:
            self.release()

    def ended(self, stream: str) -> None:
        if stream == STDOUT:
            self._echo(stream, self.hidden.end()[0])
        if self.inside_line == stream:
            self.inside_line = None
            self.release()

    def release(self) -> None:
        held, self.held = self.held, []
        for stream, data in held:
            self._emit(stream, data)

    def _emit(self, stream: str, data: bytes) -> None:
        self.inside_line = None if data.endswith(b"\n") else stream
        self._echo(stream, self.hidden.feed(data)[0] if stream == STDOUT else data)
        if self.frames is not None:
            try:
                _write_all(self.frames, HEADER.pack(STREAMS.index(stream), len(data)) + data)
            except OSError:  # the wrapper is gone: keep showing the output while the child winds down
                self.frames = None

    def _echo(self, stream: str, data: bytes) -> None:
        if stream in self.echo and data:
            try:
                _write_all(self.echo[stream], data)
            except OSError:  # our reader left (`expertrack run ... | head`): keep draining and tracking
                del self.echo[stream]


def _read(fd: int) -> bytes:
    """One chunk, or b"" at end of output (a pty master reports the end with EIO once the child closed it)."""
    try:
        return os.read(fd, READ_SIZE)
    except OSError:
        return b""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:  # a terminal someone set non-blocking: wait until it takes more
            select.select([], [fd], [])
            continue
        view = view[written:]
