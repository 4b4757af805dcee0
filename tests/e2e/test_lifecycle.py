"""How the process ends decides how the run ends: exit, exception, sys.exit(code), Ctrl-C, SIGTERM.

Each case runs a real interpreter and checks the stored run against the exit status the process really had.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import expertrack
from tests.conftest import run_python

PRELUDE = (
    "import expertrack, sys, os, time, signal\nrun = expertrack.init(project='life')\n"
    "print(run.id, flush=True)\nrun.log({'x': 1.0})\n"
)


@pytest.mark.parametrize(
    ("body", "state", "code", "sig"),
    [
        ("pass", "finished", 0, None),
        ("raise RuntimeError('boom')", "failed", 1, None),
        ("sys.exit(3)", "failed", 3, None),
        ("raise KeyboardInterrupt", "killed", 130, signal.SIGINT),
        ("os.kill(os.getpid(), signal.SIGTERM); time.sleep(10)", "killed", 143, signal.SIGTERM),
    ],
)
def test_process_end_sets_run_state(tracking_dir: Path, body: str, state: str, code: int, sig: int | None) -> None:
    proc = run_python(PRELUDE + body, check=False)
    run_id = proc.stdout.split()[0]
    run = expertrack.Api(tracking_dir).run(run_id)
    assert (run.state, run.exit_code, run.exit_signal) == (state, code, sig), proc.stderr
    assert run.scalars("x")[2].tolist() == [1.0]
    if sig == signal.SIGTERM:
        assert proc.returncode == -signal.SIGTERM  # the signal still ends the process as it would have


# The limits written in lifecycle's docstring: before 3.12 only sys.exit/exit/quit are seen, with the code they
# were given. For those cases the run is recorded as below there (and the test says so if that ever changes).
BEFORE_312 = sys.version_info < (3, 12)
FINISHED_0 = ("finished", 0)
THREAD_EXIT = "import threading\nt = threading.Thread(target=sys.exit, args=(7,))\nt.start(); t.join()"


@pytest.mark.parametrize(
    ("body", "status", "before_312"),
    [
        ("sys.exit()", 0, None),
        ("sys.exit(0)", 0, None),
        ("sys.exit('stopping: no data')", 1, None),  # the message is printed and the status is 1
        ("sys.exit(-1)", 255, None),  # the parent sees the low 8 bits
        ("exit(4)", 4, None),  # site's exit() raises SystemExit itself, past sys.exit
        ("quit(5)", 5, None),
        ("try:\n    sys.exit(3)\nexcept SystemExit:\n    pass", 0, None),
        ("def main():\n    try:\n        sys.exit(3)\n    except SystemExit as e:\n        err = e\nmain()", 0, None),
        ("try:\n    sys.exit(3)\nexcept SystemExit:\n    pass\nsys.exit(6)", 6, None),
        ("try:\n    sys.exit(3)\nexcept SystemExit as e:\n    e.code = 9\n    raise", 9, ("failed", 3)),
        (THREAD_EXIT, 0, None),  # sys.exit in a thread ends the thread, not the process
        ("try:\n    sys.exit(3)\nexcept SystemExit:\n    raise RuntimeError('cleanup failed')", 1, None),
        ("def main():\n    return 3\nraise SystemExit(main())", 3, FINISHED_0),
        ("def main():\n    raise SystemExit(2)\nmain()", 2, FINISHED_0),
        ("from sys import exit as leave\nleave(8)", 8, None),  # taken after init(): the hook itself
    ],
)
def test_exit_status_is_recorded_as_the_process_had_it(
    tracking_dir: Path, body: str, status: int, before_312: tuple[str, int] | None
) -> None:
    _check_status(tracking_dir, PRELUDE + body, status, before_312)


def test_exit_taken_before_init_is_seen(tracking_dir: Path) -> None:
    code = "from sys import exit as leave\n" + PRELUDE + "leave(8)"  # the original sys.exit, not our hook
    _check_status(tracking_dir, code, 8, FINISHED_0)


def _check_status(tracking_dir: Path, code: str, status: int, before_312: tuple[str, int] | None = None) -> None:
    """The run records the status the process exits with (on Python < 3.12, ``before_312`` where given: a limit)."""
    proc = run_python(code, check=False)
    run = expertrack.Api(tracking_dir).run(proc.stdout.split()[0])
    assert proc.returncode == status, proc.stderr
    expected = ("finished" if status == 0 else "failed", status)
    if BEFORE_312 and before_312 is not None:
        expected = before_312
    assert (run.state, run.exit_code) == expected, proc.stderr


@pytest.mark.parametrize("launch", ["script", "-c", "-m"])
def test_caught_exit_then_exit_builtin_under_each_launch(tracking_dir: Path, tmp_path: Path, launch: str) -> None:
    script = tmp_path / "train_job.py"
    script.write_text(PRELUDE + "try:\n    sys.exit(3)\nexcept SystemExit:\n    pass\nexit(4)\n")
    args = {"script": [str(script)], "-c": ["-c", script.read_text()], "-m": ["-m", "train_job"]}[launch]
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "EXPERTRACK_DIR": str(tracking_dir)},
        timeout=120,
    )
    run = expertrack.Api(tracking_dir).run(proc.stdout.split()[0])
    assert proc.returncode == 4, proc.stderr
    assert (run.state, run.exit_code) == ("failed", 4), proc.stderr


def test_ctrl_c_from_outside(tracking_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", PRELUDE + "time.sleep(30)"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "EXPERTRACK_DIR": str(tracking_dir)},
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[0]
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    proc.stdout.close()
    run = expertrack.Api(tracking_dir).run(run_id)
    assert run.state == "killed" and run.exit_signal == signal.SIGINT
