"""The write path under real signals and real load (issue 12): SIGTERM at random moments, kill -9, a busy loop.

Each logger is a real process forked by tests/e2e/forked_loggers.py and ended by a real signal; what it stored is
read back from the real store. No timing is asserted beyond the documented bounds the user relies on (the finish
deadline, and the loss bound of a kill -9, measured against the times stored with each point).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import expertrack
from expertrack.run import FINISH_DEADLINE_S
from expertrack.writer import FLUSH_INTERVAL_S, LOSS_BOUND_S

DRIVER = Path(__file__).with_name("forked_loggers.py")


def forked_loggers(
    tracking_dir: Path, count: int, sig: str, step_sleep: float, delays: tuple[float, float], seed: int
) -> list[dict[str, object]]:
    """Run the driver; one dict per logger (run id, ready/sent times, how it ended)."""
    proc = subprocess.run(
        [sys.executable, str(DRIVER), str(count), "4", sig, str(step_sleep), str(delays[0]), str(delays[1]), str(seed)],
        capture_output=True,
        text=True,
        env={**os.environ, "EXPERTRACK_DIR": str(tracking_dir), "EXPERTRACK_MIRROR": "off"},
        timeout=count * (FINISH_DEADLINE_S + 10),
    )
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == count, proc.stderr
    return results


def stored_steps(run: expertrack.api.Run) -> tuple[np.ndarray, np.ndarray]:
    """The logger's own step counter as stored, and the time each was logged; the steps must have no gap."""
    steps, times, values = run.scalars("step_copy")
    assert values.tolist() == list(range(len(values))), f"run {run.id}: a gap in the stored steps"
    assert steps.tolist() == list(range(len(steps)))
    return values, times


def test_sigterm_at_random_moments_always_ends_the_run_killed_and_in_time(tracking_dir: Path) -> None:
    # a tight loop spends most of its time inside log(), holding the run's lock: the signal lands there often
    results = forked_loggers(tracking_dir, 100, "SIGTERM", 0.0, (0.0, 0.3), seed=12)
    api = expertrack.Api(tracking_dir)
    for result in results:
        assert "hung" not in result, f"a logger did not exit within {FINISH_DEADLINE_S} s of SIGTERM: {result}"
        assert result.get("signal") == signal.SIGTERM, result  # the process still ends as SIGTERM ends it
        run = api.run(str(result["run_id"]))
        assert (run.state, run.exit_signal, run.exit_code) == ("killed", signal.SIGTERM, 128 + signal.SIGTERM)
        _values, times = stored_steps(run)
        sent, ready = float(result["sent"]), float(result["ready"])  # type: ignore[arg-type]
        if sent - ready > FLUSH_INTERVAL_S:
            # every point logged more than a flush interval before the signal is stored: the loop logged without
            # pause until then, so the last stored point is at most that old
            assert times.size and times[-1] >= sent - FLUSH_INTERVAL_S, result


@pytest.mark.parametrize("step_sleep", [0.002, 0.01], ids=["fast-loop", "10ms-steps"])
def test_kill_9_loses_at_most_the_documented_interval(tracking_dir: Path, step_sleep: float) -> None:
    results = forked_loggers(tracking_dir, 8, "SIGKILL", step_sleep, (LOSS_BOUND_S + 0.2, 2.5), seed=9)
    api = expertrack.Api(tracking_dir)
    for result in results:
        assert result.get("signal") == signal.SIGKILL, result
        run = api.run(str(result["run_id"]))
        assert run.state == "crashed"
        _values, times = stored_steps(run)
        # the steps after the last stored one were logged after it; the loop never pauses longer than a step, so
        # the last stored point being at most LOSS_BOUND_S old at the kill means nothing older was lost
        lost_window = float(result["sent"]) - (times[-1] if times.size else float(result["ready"]))  # type: ignore[arg-type]
        assert lost_window <= LOSS_BOUND_S, f"{lost_window:.2f} s of logging lost to kill -9 ({result})"


BUSY_LOOP = """
import expertrack
run = expertrack.init(project="busy")
print(run.id, flush=True)
step = 0
while True:  # pure Python, 10 keys a step, as fast as it goes: the writer never finds the queue empty
    run.log({f"k{j}": float(step) for j in range(10)})
    step += 1
"""


def test_writer_commits_while_a_busy_loop_keeps_logging(tracking_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", BUSY_LOOP],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "EXPERTRACK_DIR": str(tracking_dir), "EXPERTRACK_MIRROR": "off"},
    )
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        api = expertrack.Api(tracking_dir)
        deadline = time.monotonic() + 60
        counts = []
        while time.monotonic() < deadline and len(set(counts)) < 3:  # three different commits seen, loop running
            count = api.run(run_id).point_count("k0")
            if count:
                counts.append(count)
            time.sleep(0.1)
        assert proc.poll() is None
        assert len(set(counts)) >= 3, "the writer committed nothing (or once) while the loop ran"
    finally:
        proc.kill()
        proc.communicate()


RANK = """
import random, sys, expertrack
rank, ranks, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
run = expertrack.init(project="ranks", id="shared01", resume="allow")
print("ready", flush=True)
sys.stdin.readline()  # all ranks have resumed the run (so each starts at step 0): log at once
rng = random.Random(rank)
for i in range(steps):
    # each rank its own key at every step, and its share of one common key (steps interleaved across ranks)
    run.log({f"rank{rank}/loss": float(i), "all/loss": float(i * ranks + rank)}, step=i * ranks + rank)
    if rng.random() < 0.002:
        run.flush()  # flushes at different moments, so the ranks' rows interleave in the store
run.finish()
"""


def test_four_processes_writing_one_run_store_every_point_in_step_order(tracking_dir: Path) -> None:
    expertrack.init(project="ranks", id="shared01", mirror="off").finish()  # the run exists before the ranks
    ranks, steps = 4, 20_000
    env = {**os.environ, "EXPERTRACK_DIR": str(tracking_dir), "EXPERTRACK_MIRROR": "off"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK, str(rank), str(ranks), str(steps)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rank in range(ranks)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:  # all at once: communicate() one by one would run the ranks one after another
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [p.communicate(timeout=300)[1] for p in procs]
    for proc, err in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "Error" not in err, err
    run = expertrack.Api(tracking_dir).run("shared01")
    steps_all, _, values_all = run.scalars("all/loss")
    assert steps_all.tolist() == list(range(ranks * steps))  # every point, in step order
    assert values_all.tolist() == [float(s) for s in range(ranks * steps)]
    for rank in range(ranks):
        steps_own, _, values_own = run.scalars(f"rank{rank}/loss")
        assert values_own.tolist() == [float(i) for i in range(steps)]
        assert steps_own.tolist() == [i * ranks + rank for i in range(steps)]
    assert run.point_count("all/loss") == ranks * steps


FORK_AFTER_INIT = """
import os, signal, time, expertrack
parent = expertrack.init(project="fork", name="parent")
parent.log({"x": 1.0})
parent.flush()
read_fd, write_fd = os.pipe()
pid = os.fork()
if pid == 0:  # a worker started by fork that logs its own run
    child = expertrack.init(project="fork", name="child")
    os.write(write_fd, child.id.encode() + b"\\n")
    while True:
        child.log({"y": 1.0})
        time.sleep(0.001)
child_id = os.read(read_fd, 100).decode().strip()
os.kill(pid, signal.SIGTERM)
_, status = os.waitpid(pid, 0)
print(child_id, os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1, flush=True)
parent.finish()
"""


def test_sigterm_to_a_forked_process_ends_its_own_run_killed(tracking_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FORK_AFTER_INIT],
        capture_output=True,
        text=True,
        env={**os.environ, "EXPERTRACK_DIR": str(tracking_dir), "EXPERTRACK_MIRROR": "off"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    child_id, child_signal = proc.stdout.split()
    assert int(child_signal) == signal.SIGTERM
    api = expertrack.Api(tracking_dir)
    child = api.run(child_id)
    assert (child.state, child.exit_signal) == ("killed", signal.SIGTERM)
    assert child.scalars("y")[2].size > 0
    assert api.runs(project="fork")[0].name == "parent" and api.runs(project="fork")[0].state == "finished"


FINISH_ON_A_LOCKED_STORE = """
import sys, expertrack
run = expertrack.init(project="late")
run.log({"x": 1.0})
run.flush()
print(run.id, flush=True)
sys.stdin.readline()  # the test now holds the store's write lock
print("finishing", flush=True)
run.finish()  # waits for the lock, while a SIGTERM arrives
"""


def test_sigterm_during_finish_lets_that_finish_complete(tracking_dir: Path) -> None:
    import sqlite3

    proc = subprocess.Popen(
        [sys.executable, "-c", FINISH_ON_A_LOCKED_STORE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "EXPERTRACK_DIR": str(tracking_dir), "EXPERTRACK_MIRROR": "off"},
    )
    assert proc.stdin is not None and proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    locker = sqlite3.connect(tracking_dir / "store.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "finishing"
    proc.send_signal(signal.SIGTERM)
    try:
        # the process must not end while its finish waits for the store: give it the time it would need to die
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        pass
    locker.execute("COMMIT")
    locker.close()
    assert proc.wait(timeout=60) == -signal.SIGTERM  # then it ends as SIGTERM ends it
    run = expertrack.Api(tracking_dir).run(run_id)
    assert run.state in ("finished", "killed")  # whichever call ended it first; never left crashed
    assert run.scalars("x")[2].tolist() == [1.0]
