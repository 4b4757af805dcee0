"""Running a wrapped command: its output passed through byte for byte, its signals forwarded, its end reported as
an exit code or a signal.

How stdout is read (the stdout mode, one of ``STDOUT_MODES``), because C stdio (and Python) buffer 4-8 KiB
when stdout is a pipe and flush per line only when it is a terminal. A trainer printing one line per step would
otherwise reach us (and the dashboard) in bursts of ~60 lines, and a crash would lose the unflushed tail. So:

- ``pty``: stdout is a pseudo-terminal. Every program flushes per line, colours, progress bars and terminal width
  work, with no change to the program. Output post-processing is switched off (no OPOST, so no "\\n" ->
  "\\r\\n"): the bytes we read are the bytes written. The price: the kernel's pty path costs microseconds per
  write (one kernel worker hop each), about a third of a flooding program's speed.
- ``lines``: stdout is a pipe, and the program is asked to flush per line: coreutils' ``libstdbuf`` is preloaded
  with ``_STDBUF_O=L`` (what ``stdbuf -oL`` does; C and C++ stdio, dynamically linked programs) and
  ``PYTHONUNBUFFERED=1`` is set (Python). Live like a pty for the programs that matter, at a pipe's cost.
  A statically linked program, or one that sets its own buffering, keeps its own (use ``pty`` for it).
- ``pipe``: a plain pipe; the program buffers as it likes. The fastest; lines come in blocks.
- ``auto`` (the default): ``pty`` when our own stdout is a terminal (what a person watches: colours, widths),
  else ``lines`` (output into a file or another program needs no terminal), or ``pty`` where no libstdbuf exists.

stderr stays a separate channel, so the two streams never mix: a second pty when our own stderr is a terminal
(colours, progress bars), else a pipe (stderr is unbuffered in C and line-buffered in Python anyway).

The child runs in its own session (``setsid``): it has its own process group, which receives every Ctrl-C or
SIGTERM sent to the wrapper exactly once (the terminal sends Ctrl-C to the wrapper's group, not the child's),
and its reads from a terminal on stdin are not subject to job control. If the wrapper dies, its whole group
gets SIGTERM once, then SIGKILL after a grace, from the relay, so nothing is left running unseen. (Not the
kernel's ``PR_SET_PDEATHSIG``: it fires again each time one of the dying wrapper's threads passes the child on
to the next, and a second SIGTERM interrupts a trainer's checkpoint handler.)

A relay process (relay.py) drains both channels and passes each chunk through at once; a thread here hands the
chunks to ``on_output``, which must only enqueue: parsing and storing happen on another thread, off the child's
path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from expertrack.capture.relay import F_SETPIPE_SZ, PIPE_SIZE, READ_SIZE, STDERR, STDOUT, FrameReader, Relay, start_relay
from expertrack.notify import say as _say

__all__ = ["STDERR", "STDOUT", "STDOUT_MODES", "Child", "ChildExit", "SpawnError", "forward_signals", "resolve_mode"]

STDOUT_MODES = ("auto", "pty", "lines", "pipe")
# Where coreutils installs the library behind ``stdbuf`` (Debian/Ubuntu, older Debian and Arch, Fedora/RHEL,
# a source build); also looked for beside the ``stdbuf`` program found on PATH.
_LIBSTDBUF_PLACES = (
    "/usr/libexec/coreutils/libstdbuf.so",
    "/usr/lib/coreutils/libstdbuf.so",
    "/usr/lib64/coreutils/libstdbuf.so",
    "/usr/local/libexec/coreutils/libstdbuf.so",
)

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class SpawnError(Exception):
    """The command could not be started; ``exit_code`` is what a shell would return (127 or 126)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ChildExit:
    """How the child ended: ``code`` when it exited, ``signal`` when a signal killed it."""

    code: int | None
    signal: int | None

    @property
    def status(self) -> int:
        """The wrapper's own exit status: the child's code, or 128 + N for signal N, as a shell reports it."""
        return 128 + self.signal if self.signal else (self.code or 0)


OutputHandler = Callable[[str, bytes], None]


class Child:
    """One wrapped command. ``start()``, then ``wait()`` (on the main thread, inside ``forward_signals``)."""

    def __init__(self, argv: Sequence[str], on_output: OutputHandler, *, stdout_mode: str = "auto") -> None:
        self.argv = list(argv)
        self.on_output = on_output
        self.stdout_mode = resolve_mode(stdout_mode)  # never "auto"
        self.process: subprocess.Popen[bytes] | None = None
        self._channels: dict[int, str] = {}  # our read end -> stream name
        self._ptys: list[int] = []  # our ends that are pty masters (kept here for window sizes)
        self._relay: Relay | None = None
        self._handler_broken = False
        self._reader = threading.Thread(target=self._drain, name="expertrack-reader", daemon=True)

    def start(self) -> None:
        """Start the command; raises ``SpawnError`` (exit code 127/126) when it cannot run."""
        out_read, out_write = self._channel(self.stdout_mode == "pty", STDOUT)
        err_read, err_write = self._channel(_isatty(2), STDERR)
        env = line_buffered_env(os.environ) if self.stdout_mode == "lines" else None

        def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
            return subprocess.Popen(argv, stdout=out_write, stderr=err_write, env=env, start_new_session=True)

        try:
            try:
                self.process = spawn(self.argv)
            except OSError as exc:
                if exc.errno != errno.ENOEXEC:
                    raise
                # an executable text file without a #! line: shells (and execvp) run it with /bin/sh
                self.process = spawn(["/bin/sh", *self.argv])
        except FileNotFoundError as exc:
            self._close_all(out_read, err_read)
            reason = "No such file or directory" if "/" in self.argv[0] else "command not found"
            raise SpawnError(f"{self.argv[0]}: {reason}", 127) from exc
        except (PermissionError, IsADirectoryError) as exc:
            self._close_all(out_read, err_read)
            raise SpawnError(f"{self.argv[0]}: cannot execute: {exc.strerror}", 126) from exc
        except OSError as exc:  # E2BIG, ...: a shell says "cannot execute" too
            self._close_all(out_read, err_read)
            raise SpawnError(f"{self.argv[0]}: cannot execute: {exc.strerror or exc}", 126) from exc
        finally:
            os.close(out_write)  # the child holds its ends; ours must go so we see end-of-file
            os.close(err_write)
        self._relay = start_relay(self._channels, self.process.pid, coalesce=not self._ptys)
        for fd in self._channels:
            if fd not in self._ptys:
                os.close(fd)  # only the relay reads; a pipe with no reader left gives the child EPIPE
        self._reader.start()

    def wait(self) -> ChildExit:
        """Wait for the child to end, then for its output to be drained; return how it ended."""
        assert self.process is not None, "start() first"
        returncode = self.process.wait()  # signal handlers run on this (main) thread while it waits
        assert self._relay is not None
        with contextlib.suppress(BrokenPipeError):  # the relay may have finished already
            os.write(self._relay.exited, b"x")  # tells the relay: stop once the output falls silent
        os.close(self._relay.exited)
        self._reader.join()
        os.waitpid(self._relay.pid, 0)
        for fd in self._ptys:
            os.close(fd)
        if returncode < 0:
            return ChildExit(code=None, signal=-returncode)
        return ChildExit(code=returncode, signal=None)

    @property
    def running(self) -> bool:
        """Whether the command itself (the group's leader) has not exited yet."""
        return self.process is not None and self.process.poll() is None

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the child's whole process group (its session), while any of it is still there:
        the child may have exited while something it started goes on printing, and Ctrl-C must still stop it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def copy_window_size(self) -> None:
        """Give the child's ptys our terminal's size (at start and on SIGWINCH), so widths survive."""
        size = _terminal_size()
        if size is None:
            return
        for fd in self._ptys:
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, termios.TIOCSWINSZ, size)

    # ---- setup ------------------------------------------------------------------------------------------------

    def _channel(self, use_pty: bool, stream: str) -> tuple[int, int]:
        """(our read end, the child's write end) for one stream."""
        if use_pty:
            master, slave = os.openpty()
            attrs = termios.tcgetattr(slave)
            attrs[1] &= ~termios.OPOST  # oflag: no output processing, so "\n" stays "\n" (no ONLCR)
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            self._ptys.append(master)
            self._channels[master] = stream
            self.copy_window_size()
            return master, slave
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):  # capped by /proc/sys/fs/pipe-max-size; the default still works
            fcntl.fcntl(read_end, F_SETPIPE_SZ, PIPE_SIZE)
        self._channels[read_end] = stream
        return read_end, write_end

    def _close_all(self, *fds: int) -> None:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._channels.clear()
        self._ptys.clear()

    # ---- the reader thread ------------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Move the relay's frames into ``on_output`` until the relay ends (its pipe reaches end-of-file)."""
        assert self._relay is not None
        frames = self._relay.frames
        reader = FrameReader()
        while True:
            data = os.read(frames, READ_SIZE)
            if not data:
                break
            for stream, chunk in reader.feed(data):
                self._hand_over(stream, chunk)
        os.close(frames)

    def _hand_over(self, stream: str, data: bytes) -> None:
        if self._handler_broken:
            return
        try:
            self.on_output(stream, data)
        except Exception as exc:  # outer boundary: tracking may fail, the child's output must keep flowing
            self._handler_broken = True
            _say(f"tracking of the output stopped ({type(exc).__name__}: {exc}); the command keeps running")


def resolve_mode(mode: str) -> str:
    """The stdout mode ``auto`` stands for here and now (see the module docstring); other modes as they are."""
    if mode not in STDOUT_MODES:
        raise ValueError(f"stdout mode must be one of {', '.join(STDOUT_MODES)}, not {mode!r}")
    if mode != "auto":
        return mode
    if _isatty(1) or find_libstdbuf() is None:
        return "pty"
    return "lines"


def find_libstdbuf() -> str | None:
    """The path of coreutils' libstdbuf.so (the library ``stdbuf`` preloads), or None where there is none (and
    off Linux: macOS ignores LD_PRELOAD)."""
    if not sys.platform.startswith("linux"):
        return None
    places = list(_LIBSTDBUF_PLACES)
    stdbuf = shutil.which("stdbuf")
    if stdbuf is not None:
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(stdbuf)))
        places += [os.path.join(prefix, sub, "coreutils", "libstdbuf.so") for sub in ("libexec", "lib", "lib64")]
    return next((place for place in places if os.path.isfile(place)), None)


def line_buffered_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus what asks a program to flush its stdout per line: libstdbuf preloaded with ``_STDBUF_O=L``
    (C/C++ stdio, as ``stdbuf -oL`` does) and ``PYTHONUNBUFFERED=1``; a value the user set is kept."""
    env = dict(environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    library = find_libstdbuf()
    if library is not None:
        preloaded = env.get("LD_PRELOAD", "").split()
        if library not in preloaded:
            env["LD_PRELOAD"] = " ".join([library, *preloaded])
        env.setdefault("_STDBUF_O", "L")
    return env


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _terminal_size() -> bytes | None:
    """Our terminal's TIOCGWINSZ record, from the first of stdout, stderr, stdin that is a terminal."""
    for fd in (1, 2, 0):
        if _isatty(fd):
            with contextlib.suppress(OSError):
                return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    return None


class InterruptLadder:
    """What each Ctrl-C sends: SIGINT; a second within ``ESCALATE_WINDOW_S`` of the one before, SIGTERM; a third,
    SIGKILL. Each step up is said on stderr, so a person pressing Ctrl-C at a stuck program knows what happened
    (and that the next press kills it). A pause longer than the window starts again from SIGINT."""

    ESCALATE_WINDOW_S = 3.0

    def __init__(self) -> None:
        self.presses = 0
        self.last_at = -math.inf

    def next_signal(self, now: float) -> int:
        """The signal to forward for a Ctrl-C at monotonic time ``now`` (said when it is not SIGINT)."""
        self.presses = self.presses + 1 if now - self.last_at <= self.ESCALATE_WINDOW_S else 1
        self.last_at = now
        if self.presses == 1:
            return signal.SIGINT
        if self.presses == 2:
            _say("Ctrl-C again: sent SIGTERM to the command (a third Ctrl-C kills it)")
            return signal.SIGTERM
        _say("Ctrl-C a third time: killed the command (SIGKILL)")
        return signal.SIGKILL


@contextlib.contextmanager
def forward_signals(child: Child) -> Iterator[None]:
    """While inside, forward SIGINT, SIGTERM, SIGHUP, ... to the child's process group instead of dying, keep
    its window size in step with ours (SIGWINCH), and stop/continue it with us (Ctrl-Z, ``fg``).

    Repeated Ctrl-C escalates, for a program that ignores SIGINT (see ``InterruptLadder``).

    A signal we were started with ignored (``nohup`` ignores SIGHUP) stays ignored, so the child inherits that.
    """
    previous: dict[int, object] = {}
    interrupts = InterruptLadder()

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            signum = interrupts.next_signal(time.monotonic())
        child.send_signal(signum)

    def resize(signum: int, frame: FrameType | None) -> None:
        child.copy_window_size()
        child.send_signal(signal.SIGWINCH)

    def suspend(signum: int, frame: FrameType | None) -> None:
        # the child's group is orphaned (its own session), where the kernel discards SIGTSTP: use SIGSTOP
        child.send_signal(signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)

    def resume(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signal.SIGCONT)

    handlers: dict[int, Callable[[int, FrameType | None], None]] = {s: forward for s in FORWARDED_SIGNALS}
    handlers.update({signal.SIGWINCH: resize, signal.SIGTSTP: suspend, signal.SIGCONT: resume})
    for signum, handler in handlers.items():
        current = signal.getsignal(signum)
        if current == signal.SIG_IGN:
            continue
        previous[signum] = current
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)  # type: ignore[arg-type]
