"""The child runner with real processes: bytes pass through unchanged, streams stay apart, exits are reported
as a shell would, and a command that cannot start gets 127/126."""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from expertrack.capture import child as child_module
from expertrack.capture.child import (
    STDERR,
    STDOUT,
    Child,
    ChildExit,
    SpawnError,
    find_libstdbuf,
    forward_signals,
    line_buffered_env,
    resolve_mode,
)
from expertrack.capture.relay import HEADER, STREAMS, FrameReader

# Everything a terminal could "fix": invalid UTF-8, CRLF, carriage-return progress, colours, a missing final
# newline. A pty with output processing on would turn each "\n" into "\r\n".
PAYLOAD = (
    b"plain line\n"
    b"\xff\xfe\x80 not utf-8\n"
    b"windows line\r\n"
    b"progress 1/3\rprogress 2/3\rprogress 3/3\n"
    b"\x1b[31mred\x1b[0m\n"
    b"no newline at the end"
)


def run_child(code: str, mode: str = "pty") -> tuple[dict[str, bytes], ChildExit]:
    """Run ``python -c code`` as a wrapped child; return what each stream delivered and how it ended."""
    got = {STDOUT: bytearray(), STDERR: bytearray()}
    child = Child([sys.executable, "-c", code], lambda stream, data: got[stream].extend(data), stdout_mode=mode)
    child.start()
    ended = child.wait()
    return {stream: bytes(data) for stream, data in got.items()}, ended


@pytest.mark.parametrize("mode", ["pty", "lines", "pipe"])
def test_bytes_reach_the_handler_and_our_stdout_unchanged(mode: str, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    code = f"import os; os.write(1, {PAYLOAD!r}); os.write(2, b'err \\xff\\n')"
    got, ended = run_child(code, mode)
    passed = capfdbinary.readouterr()
    assert got[STDOUT] == PAYLOAD
    assert passed.out == PAYLOAD
    assert got[STDERR] == passed.err == b"err \xff\n"
    assert ended == ChildExit(code=0, signal=None)


def test_stdout_is_a_terminal_so_c_stdio_flushes_per_line() -> None:
    code = "import os; print(os.isatty(1), os.isatty(2))"
    got, _ = run_child(code)
    # our own stderr is not a terminal here (pytest captures it), so the child's is a pipe
    assert got[STDOUT] == b"True False\n"
    got, _ = run_child(code, "pipe")
    assert got[STDOUT] == b"False False\n"


def test_lines_mode_asks_the_child_to_flush_each_line_and_pipe_mode_does_not() -> None:
    code = "import os; print(os.isatty(1), os.environ.get('PYTHONUNBUFFERED'), os.environ.get('LD_PRELOAD', ''))"
    got, _ = run_child(code, "lines")
    isatty, unbuffered, preload = got[STDOUT].decode().rstrip("\n").split(" ", 2)
    assert (isatty, unbuffered) == ("False", "1")
    library = find_libstdbuf()
    assert preload == (library or "")
    got, _ = run_child(code, "pipe")
    assert got[STDOUT].decode().startswith("False ")
    assert "libstdbuf" not in got[STDOUT].decode()


def test_line_buffered_env_keeps_what_the_user_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child_module, "find_libstdbuf", lambda: "/lib/libstdbuf.so")
    env = line_buffered_env({"LD_PRELOAD": "/opt/libmine.so", "PYTHONUNBUFFERED": "", "PATH": "/bin"})
    assert env == {
        "LD_PRELOAD": "/lib/libstdbuf.so /opt/libmine.so",
        "PYTHONUNBUFFERED": "",  # set (even empty) by the user: theirs
        "_STDBUF_O": "L",
        "PATH": "/bin",
    }
    assert line_buffered_env(env) == env  # preloaded once, not twice
    monkeypatch.setattr(child_module, "find_libstdbuf", lambda: None)
    assert line_buffered_env({}) == {"PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize(
    ("terminal", "library", "expected"),
    [(True, "/lib/libstdbuf.so", "pty"), (False, "/lib/libstdbuf.so", "lines"), (False, None, "pty")],
)
def test_auto_mode_is_a_pty_for_a_terminal_else_a_line_buffered_pipe(
    monkeypatch: pytest.MonkeyPatch, terminal: bool, library: str | None, expected: str
) -> None:
    monkeypatch.setattr(child_module, "_isatty", lambda fd: terminal)
    monkeypatch.setattr(child_module, "find_libstdbuf", lambda: library)
    assert resolve_mode("auto") == expected
    assert resolve_mode("pipe") == "pipe"
    with pytest.raises(ValueError, match="stdout mode must be one of auto, pty, lines, pipe, not 'tty'"):
        resolve_mode("tty")


@pytest.mark.parametrize("mode", ["pty", "lines", "pipe"])
def test_a_flood_arrives_whole_and_in_order(mode: str, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    code = "import sys\nfor i in range(100_000): print(f'step {i}: loss={1 / (i + 1)}')\nprint('bye', file=sys.stderr)"
    got, ended = run_child(code, mode)
    expected = "".join(f"step {i}: loss={1 / (i + 1)}\n" for i in range(100_000)).encode()
    assert got[STDOUT] == expected
    assert capfdbinary.readouterr().out == expected
    assert got[STDERR] == b"bye\n"
    assert ended.status == 0


@pytest.mark.parametrize("mode", ["pty", "lines", "pipe"])
def test_stdout_and_stderr_lines_of_a_slow_program_keep_their_order(mode: str) -> None:
    # 50 ms between writes: "now and then" with a margin for a loaded machine (10 ms failed now and then at a
    # load average of 10, when the relay thread was not scheduled between two writes)
    code = (
        "import sys, time\n"
        "for i in range(12):\n"
        "    print(f'step {i}', flush=True)\n"
        "    time.sleep(0.05)\n"
        "    print(f'warning {i}', file=sys.stderr, flush=True)\n"
        "    time.sleep(0.05)\n"
    )
    order: list[tuple[str, bytes]] = []
    child = Child([sys.executable, "-c", code], lambda stream, data: order.append((stream, data)), stdout_mode=mode)
    child.start()
    assert child.wait().status == 0
    lines, partial = [], {STDOUT: b"", STDERR: b""}
    for stream, data in order:  # a line may come in pieces (Python writes the text, then "\n")
        *complete, partial[stream] = (partial[stream] + data).split(b"\n")
        lines += [(stream, line) for line in complete]
    expected = [pair for i in range(12) for pair in ((STDOUT, b"step %d" % i), (STDERR, b"warning %d" % i))]
    assert lines == expected


def test_a_large_line_without_newline_passes_whole(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    code = "import sys; sys.stdout.buffer.write(b'x' * (10 * 1024 * 1024)); sys.stdout.flush()"
    got, ended = run_child(code)
    assert got[STDOUT] == b"x" * (10 * 1024 * 1024)
    assert capfdbinary.readouterr().out == got[STDOUT]
    assert ended.status == 0


@pytest.mark.parametrize(
    ("code", "expected", "status"),
    [
        ("pass", ChildExit(0, None), 0),
        ("import sys; sys.exit(3)", ChildExit(3, None), 3),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", ChildExit(None, 9), 137),
    ],
)
def test_exit_is_reported_like_a_shell(code: str, expected: ChildExit, status: int) -> None:
    _, ended = run_child(code)
    assert ended == expected
    assert ended.status == status


def test_a_child_that_closes_stdout_early_is_still_followed_to_its_end() -> None:
    code = "import os, sys, time; print('bye', flush=True); os.close(1); time.sleep(0.3); os.write(2, b'later\\n')"
    got, ended = run_child(code)
    assert got[STDOUT] == b"bye\n"
    assert got[STDERR] == b"later\n"
    assert ended.status == 0


def test_a_silent_grandchild_holding_the_output_does_not_keep_us_waiting(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess; p = subprocess.Popen(['sleep', '60']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); print('parent done')"
    )
    try:
        got, ended = run_child(code)
        assert got[STDOUT] == b"parent done\n"
        assert ended.status == 0
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_missing_command_is_127_and_unexecutable_is_126(tmp_path: Path) -> None:
    with pytest.raises(SpawnError, match="no-such-program-xyz: command not found") as missing:
        Child(["no-such-program-xyz"], lambda s, d: None).start()
    assert missing.value.exit_code == 127
    with pytest.raises(SpawnError, match="No such file or directory") as missing_path:
        Child([str(tmp_path / "nope")], lambda s, d: None).start()
    assert missing_path.value.exit_code == 127
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with pytest.raises(SpawnError, match="cannot execute") as not_executable:
        Child([str(script)], lambda s, d: None).start()
    assert not_executable.value.exit_code == 126


def test_an_executable_script_without_a_shebang_runs_with_sh_as_in_a_shell(tmp_path: Path) -> None:
    script = tmp_path / "train.sh"
    script.write_text('echo "step=1 loss=$1"\n')
    script.chmod(0o755)
    got = bytearray()
    child = Child([str(script), "2.5"], lambda stream, data: got.extend(data) if stream == STDOUT else None)
    child.start()
    assert child.wait() == ChildExit(0, None)
    assert bytes(got) == b"step=1 loss=2.5\n"


def test_sigterm_to_us_is_forwarded_to_the_child(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import signal, sys, time\n"
        "def bye(n, f): print('child got', n, flush=True); sys.exit(7)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "time.sleep(60)\n"
    )
    got = bytearray()
    child = Child([sys.executable, "-c", code], lambda s, d: got.extend(d) if s == STDOUT else None)

    def send_when_ready() -> None:
        while not ready.exists():
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)  # to ourselves, the wrapper

    with forward_signals(child):
        child.start()
        threading.Thread(target=send_when_ready, daemon=True).start()
        ended = child.wait()
    assert bytes(got) == f"child got {int(signal.SIGTERM)}\n".encode()
    assert ended == ChildExit(7, None)


def test_frames_cut_anywhere_are_put_back_together() -> None:
    frames = b"".join(
        HEADER.pack(STREAMS.index(stream), len(data)) + data
        for stream, data in [(STDOUT, b"abc\n"), (STDERR, b""), (STDERR, b"\xff" * 300), (STDOUT, b"z")]
    )
    for cut in (1, 2, 5, 7, 64):
        reader = FrameReader()
        chunks = [c for i in range(0, len(frames), cut) for c in reader.feed(frames[i : i + cut])]
        assert chunks == [(STDOUT, b"abc\n"), (STDERR, b""), (STDERR, b"\xff" * 300), (STDOUT, b"z")]


def test_a_failing_output_handler_never_stops_the_pass_through(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    def broken(stream: str, data: bytes) -> None:
        raise RuntimeError("tracking is broken")

    lines = "".join(f"line {i}\n" for i in range(2000))
    child = Child([sys.executable, "-c", f"print({lines!r}, end='')"], broken)
    child.start()
    assert child.wait().status == 0
    captured = capfdbinary.readouterr()
    assert captured.out == lines.encode()
    assert captured.err.count(b"tracking of the output stopped (RuntimeError: tracking is broken)") == 1
