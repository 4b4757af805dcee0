"""How the process ends decides how the run ends: exit, exception, sys.exit(code), Ctrl-C, SIGTERM."""

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
