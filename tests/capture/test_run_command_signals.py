"""``expertrack run`` and signals, terminals and broken pipes: Ctrl-C and SIGTERM reach the child once, the run
records how it ended, a killed wrapper takes its child along, terminal sizes pass to the child, and a reader
that goes away does not stop the tracking."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import expertrack

EXPERTRACK = str(Path(sys.executable).with_name("expertrack"))

# Prints "ready", then waits; counts the SIGINTs it gets and reports them (so a double delivery shows).
WAITER = r"""
import signal, sys, time
got = []
if "--count-sigint" in sys.argv:
    signal.signal(signal.SIGINT, lambda n, f: got.append(n))
print("step=1 loss=2.0")
print("ready", flush=True)
deadline = time.time() + 60
while time.time() < deadline and not got:
    time.sleep(0.05)
time.sleep(0.5)  # time for a second, duplicate SIGINT to arrive
print("sigints", len(got), flush=True)
"""


def start_wrapper(tmp_path: Path, *child_args: str, new_session: bool = False) -> subprocess.Popen[bytes]:
    script = tmp_path / "waiter.py"
    script.write_text(WAITER)
    return subprocess.Popen(
        [EXPERTRACK, "run", "--mirror", "off", "--", sys.executable, str(script), *child_args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=new_session,
    )


def wait_for_line(proc: subprocess.Popen[bytes], wanted: bytes) -> bytes:
    """Read the wrapper's stdout until a line equal to ``wanted``; return everything read."""
    assert proc.stdout is not None
    seen = b""
    for line in proc.stdout:
        seen += line
        if line.rstrip(b"\n") == wanted:
            return seen
    raise AssertionError(f"{wanted!r} never came; got {seen!r}")


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_to_the_wrapper_reaches_the_child_and_the_run_is_killed(
    tmp_path: Path, tracking_dir: Path, signum: int, status: int
) -> None:
    proc = start_wrapper(tmp_path)
    wait_for_line(proc, b"ready")
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == status, stderr
    (run,) = expertrack.Api(tracking_dir).runs()
    assert (run.state, run.exit_code, run.exit_signal) == ("killed", status, signum)
    assert run.scalars("loss")[2].tolist() == [2.0]


def test_ctrl_c_on_a_terminal_reaches_the_child_exactly_once(tmp_path: Path, tracking_dir: Path) -> None:
    # A terminal sends Ctrl-C to its whole foreground process group: the wrapper's own group here.
    proc = start_wrapper(tmp_path, "--count-sigint", new_session=True)
    wait_for_line(proc, b"ready")
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert stdout == b"sigints 1\n"


def _wait_for_pid(pid_file: Path) -> int:
    while not pid_file.exists() or not pid_file.read_text().strip():
        time.sleep(0.05)
    return int(pid_file.read_text())


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_a_killed_wrapper_takes_the_child_and_what_it_started_along(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    proc = subprocess.Popen(
        [EXPERTRACK, "run", "--mirror", "off", "--", "sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    grandchild = _wait_for_pid(pid_file)
    proc.kill()  # SIGKILL: the wrapper cannot clean up; the kernel and the relay must
    proc.wait()
    assert _gone_within(grandchild, 20)


# A trainer that saves a checkpoint on SIGTERM (taking a while) and starts a helper process of its own.
CHECKPOINTER = """
import os, signal, subprocess, sys, time
log = open(sys.argv[1], "a", buffering=1)
def save(signum, frame):
    log.write("saving\\n")
    time.sleep(0.5)
    log.write("saved\\n")
    sys.exit(3)
signal.signal(signal.SIGTERM, save)
helper = subprocess.Popen(["sleep", "60"])
open(sys.argv[2], "w").write(str(helper.pid))
while True:
    time.sleep(0.05)
"""


def test_a_killed_wrapper_lets_the_trainer_save_once_and_stops_its_helpers(tmp_path: Path) -> None:
    log, pid_file = tmp_path / "checkpoint.log", tmp_path / "helper.pid"
    proc = subprocess.Popen(
        [EXPERTRACK, "run", "--mirror", "off", "--", sys.executable, "-c", CHECKPOINTER, str(log), str(pid_file)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    helper = _wait_for_pid(pid_file)
    proc.kill()
    proc.wait()
    assert _gone_within(helper, 20)  # what the trainer started gets SIGTERM from the relay
    deadline = time.monotonic() + 20
    while "saved" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text() == "saving\nsaved\n"  # one SIGTERM (the kernel's): the save was not interrupted


def _start_background_job(tmp_path: Path, stdout: int) -> tuple[subprocess.Popen[bytes], int]:
    """`expertrack run` of a command that starts a printing background job, says "started" and exits at once;
    returns the wrapper and the job's pid."""
    pid_file = tmp_path / "job.pid"
    script = f"(while :; do echo step=1 loss=1; sleep 0.1; done) & echo $! > {pid_file}; echo started"
    proc = subprocess.Popen(
        [EXPERTRACK, "run", "--mirror", "off", "--", "sh", "-c", script], cwd=tmp_path, stdout=stdout, stderr=stdout
    )
    return proc, _wait_for_pid(pid_file)


def test_signals_still_reach_what_the_command_left_running(tmp_path: Path, tracking_dir: Path) -> None:
    # the command exits at once; its background job keeps printing, so expertrack keeps following it
    proc, job = _start_background_job(tmp_path, subprocess.PIPE)
    wait_for_line(proc, b"started")
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)  # before: the signal went nowhere and expertrack waited for ever
    assert proc.returncode == 0  # the command itself had exited with 0
    assert _gone_within(job, 10)


def test_a_wrapper_killed_after_the_command_exited_still_stops_what_it_left_running(tmp_path: Path) -> None:
    proc, job = _start_background_job(tmp_path, subprocess.DEVNULL)
    time.sleep(0.5)  # the command has exited; the relay has been told so
    proc.kill()
    proc.wait()
    assert _gone_within(job, 20)  # the relay notices it was orphaned and stops the group


# The wrapper as a library call, with a short grace, so a child that ignores SIGTERM is seen being killed.
STUBBORN = """
import sys
from expertrack.capture import relay
relay.ORPHAN_GRACE_S = 0.5
from expertrack.capture.child import Child
child = Child([sys.executable, "-c", sys.argv[1]], lambda stream, data: None)
child.start()
child.wait()
"""


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN, code], cwd=tmp_path)
    child = _wait_for_pid(pid_file)
    proc.kill()
    proc.wait()
    time.sleep(0.2)
    assert _alive(child)  # SIGTERM ignored: the grace runs...
    assert _gone_within(child, 20)  # ...then SIGKILL


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a parent (in a container, PID 1 may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_the_terminal_size_is_passed_to_the_child(tmp_path: Path) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 123, 0, 0))
    code = "import os; print(tuple(os.get_terminal_size()), os.isatty(1))"
    proc = subprocess.Popen(
        [EXPERTRACK, "run", "--mirror", "off", "--", sys.executable, "-c", code],
        cwd=tmp_path,
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the wrapper closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    proc.wait(timeout=30)
    assert b"(123, 33) True" in output


def test_a_reader_that_goes_away_does_not_stop_the_command_or_its_tracking(tmp_path: Path, tracking_dir: Path) -> None:
    code = "import time\nfor i in range(300):\n    print(f'step={i} loss={1 / (i + 1)}')\n    time.sleep(0.002)"
    proc = subprocess.Popen(
        [EXPERTRACK, "run", "--mirror", "off", "--", sys.executable, "-c", code],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"step=0 ")
    proc.stdout.close()  # like `expertrack run ... | head -1`
    assert proc.wait(timeout=60) == 0
    (run,) = expertrack.Api(tracking_dir).runs()
    assert run.state == "finished"
    assert run.scalars("loss")[0].tolist() == list(range(300))


def test_a_signal_ignored_by_our_caller_stays_ignored_for_the_child(tmp_path: Path) -> None:
    code = "import signal; print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)"
    result = subprocess.run(
        [EXPERTRACK, "run", "--mirror", "off", "--", sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),  # what nohup does
    )
    assert result.stdout == b"True\n", result.stderr


def test_on_a_terminal_stdout_and_stderr_lines_stay_whole(tmp_path: Path) -> None:
    # Python writes print(..., file=sys.stderr) as the text and then "\n": two writes with stdout in between
    code = "import sys\nfor i in range(300):\n    print('err line', file=sys.stderr)\n    print('out line')"
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # read back the bytes as written
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    proc = subprocess.Popen(
        [EXPERTRACK, "run", "--mirror", "off", "--", sys.executable, "-c", code],
        cwd=tmp_path,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    lines = [line for line in output.split(b"\n") if line and not line.startswith(b"expertrack: ")]
    # the wait for a line's end is bounded (relay.HOLD_S): a child descheduled mid-line for longer, on a loaded
    # machine, may still see a line cut, so a few are allowed
    assert lines.count(b"err line") >= 295 and lines.count(b"out line") >= 295, set(lines)


# Ignores SIGINT and SIGTERM, saying so for each (the test waits for each before the next Ctrl-C).
DEAF = r"""
import signal, sys, time
signal.signal(signal.SIGINT, lambda n, f: print("ignored SIGINT", flush=True))
signal.signal(signal.SIGTERM, lambda n, f: print("ignored SIGTERM", flush=True))
print("step 1/1: train loss 2.500000 (1.0 ms, 100 tok/s)")
print("ready", flush=True)
time.sleep(60)
"""


def test_repeated_ctrl_c_escalates_to_sigterm_then_sigkill(tmp_path: Path, tracking_dir: Path) -> None:
    script = tmp_path / "deaf.py"
    script.write_text(DEAF)
    proc = subprocess.Popen(
        [EXPERTRACK, "run", "--mirror", "off", "--", sys.executable, str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for_line(proc, b"ready")
    proc.send_signal(signal.SIGINT)
    wait_for_line(proc, b"ignored SIGINT")
    proc.send_signal(signal.SIGINT)
    wait_for_line(proc, b"ignored SIGTERM")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 128 + signal.SIGKILL
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert "Ctrl-C again: sent SIGTERM to the command (a third Ctrl-C kills it)" in err
    assert "Ctrl-C a third time: killed the command (SIGKILL)" in err
    (run,) = expertrack.Api(tracking_dir).runs()
    assert (run.state, run.exit_signal) == ("killed", signal.SIGKILL)
    assert run.scalars("train_loss")[2].tolist() == [2.5]


def test_ctrl_c_after_a_pause_starts_again_from_sigint() -> None:
    from expertrack.capture.child import InterruptLadder

    ladder = InterruptLadder()
    window = InterruptLadder.ESCALATE_WINDOW_S
    sent = [ladder.next_signal(t) for t in (0.0, window + 1, 2 * window + 2, 2 * window + 2.5, 2 * window + 3)]
    assert sent == [signal.SIGINT, signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
