"""A stalled run: ``expertrack run`` around a child that stops printing steps but stays alive raises one stall
alert (stored, printed once), and a Python run whose loop hangs raises one too; a run that keeps stepping never."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import expertrack
from tests.conftest import run_python

EXPERTRACK = str(Path(sys.executable).with_name("expertrack"))

# 25 metric lines at once (enough for the parser to be chosen without waiting), then silence while alive.
HANGS = r"""
import sys, time
for step in range(25):
    print(f"iter {step}: loss {3.0 - step * 0.01:.4f}, time 10.00ms, mfu 1.00%")  # nanoGPT's line
sys.stdout.flush()
time.sleep(120)
"""


def poll_alerts(directory: Path, rule: str, step: int, timeout: float = 60.0) -> list[expertrack.ApiRun]:
    """Wait until some run in ``directory`` has an alert of ``rule`` at ``step``; return the runs (read-only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (directory / "store.db").exists():
            api = expertrack.Api(directory)
            runs = api.runs()
            if any(a.rule == rule and a.step == step for run in runs for a in run.alerts()):
                return runs
            api.close()
        time.sleep(0.1)
    raise AssertionError(f"no {rule} alert within {timeout} s")


def test_a_stalled_wrapped_child_is_reported_once(tmp_path: Path) -> None:
    script = tmp_path / "hangs.py"
    script.write_text(HANGS)
    runs_dir = tmp_path / "runs"
    wrapper = subprocess.Popen(
        [EXPERTRACK, "run", "--dir", str(runs_dir), "--mirror", "off", "--alert", "stall:minutes=0.05", "--",
         sys.executable, str(script)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        (run,) = poll_alerts(runs_dir, "stall", step=24)
    finally:
        wrapper.send_signal(signal.SIGTERM)  # forwarded to the child, which ends the run as killed
        _, err = wrapper.communicate(timeout=60)
    stalls = [a for a in expertrack.Api(runs_dir).run(run.id).alerts() if a.rule == "stall"]
    after_last_step = [a for a in stalls if a.step is not None]
    # once per episode: the one after the last step (a loaded machine may also see a pause before it)
    steps = [a.step for a in after_last_step]
    assert steps[-1] == 24 and len(steps) == len(set(steps))
    after_last_step = after_last_step[-1:]
    assert after_last_step[0].key is None and after_last_step[0].value >= 0.05  # minutes without a step
    assert "no new step for" in after_last_step[0].message and "after step 24" in after_last_step[0].message
    assert err.count("alert [stall]") == len(stalls)  # each printed once
    assert wrapper.returncode == 128 + signal.SIGTERM


HANGING_LOOP = """
import threading, expertrack
run = expertrack.init(project="stall", mirror="off", alerts=["stall:minutes=0.02"])
for step in range(5):
    run.log({"loss": 1.0})
run.flush()
# the training loop hangs (a deadlock, a dead collective) while the process lives on
done = threading.Event()
while not any(a.rule == "stall" for a in expertrack.Api().run(run.id).alerts()):
    done.wait(0.05)
for step in range(5, 8):
    run.log({"loss": 1.0})  # it recovers: the episode ends, and nothing more is raised while it steps
run.finish()
print(run.id)
"""


def test_a_hanging_python_loop_is_reported_once(tmp_path: Path) -> None:
    child = run_python(HANGING_LOOP, timeout=120)
    run = expertrack.Api().run(child.stdout.split()[-1])
    assert [(a.rule, a.step) for a in run.alerts()] == [("stall", 4)]
    assert child.stderr.count("alert [stall]") == 1


def test_a_run_that_keeps_stepping_never_stalls(tmp_path: Path) -> None:
    run = expertrack.init(project="stall", dir=tmp_path, mirror="off", alerts={"stall": {"minutes": 10.0}})
    for step in range(200):
        run.log({"loss": 1.0 / (step + 1)})
    run.finish()
    assert expertrack.Api(tmp_path).run(run.id).alerts() == []
