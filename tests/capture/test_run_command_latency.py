"""Issue 18, item 2: under ``expertrack run``, every value a parser reads is in the store within a second of its
line, whatever the program's pace; the store is read while the program still runs.

The child writes the time it printed each line to a side file; the test polls the store and notes when each value
first shows. The bound is the issue's own (1 s: the writer's 0.5 s cadence leaves half a second for detecting the
format and publishing the open row); the slow pace also shows that no value waits for the next line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import expertrack
from expertrack.paths import store_path
from tests.capture.test_run_command import EXPERTRACK

LATENCY_BOUND_S = 1.0

# key=value lines with a step, the format the fallback parser reads; the first value is printed before any step
# (held for its step until issue 18, now shown at once at step 0 and corrected in place when "step 0" comes).
PACED_TRAINER = r"""
import json, os, sqlite3, sys, time
pace, steps, log = float(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "a")
# Start once the run's writer is up (it records the environment first): what is measured is the path from a line
# to the store. A line printed the instant the program starts also waits for the run to be created (about 0.3 s
# here when idle, over a second at a load average of 10 on 2 cores, on threads run at a lower priority).
store = os.path.join(os.environ["EXPERTRACK_DIR"], "store.db")
for _ in range(3000):
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
            if conn.execute("SELECT count(*) FROM runs WHERE environment IS NOT NULL").fetchone()[0]:
                break
    except sqlite3.Error:
        pass
    time.sleep(0.01)
def say(line, key, step):
    print(line, flush=True)
    log.write(json.dumps([key, step, time.time()]) + "\n")
    log.flush()
say("warmup_loss=9.5", "warmup_loss", 0)
time.sleep(pace)
for step in range(steps):
    say(f"step {step} loss={1.0 / (step + 1):.4f}", "loss", step)
    time.sleep(pace)
"""


def _seen_while_running(proc: subprocess.Popen[bytes], tracking_dir: Path, keys: list[str]) -> dict:
    """(key, step) -> the time it was first found in the store, polling until the program ends.

    One reader, opened once the run exists, polls every 20 ms: cheap, so the test itself takes little of the CPU
    the wrapper needs (a busy machine delays the wrapper's tracking threads first, by design).
    """
    seen: dict[tuple[str, int], float] = {}
    api = None
    try:
        while proc.poll() is None:
            if api is None and store_path(tracking_dir).exists():
                api = expertrack.Api(tracking_dir)
            runs = api.runs() if api is not None else []
            for key in keys:
                for step in runs[0].scalars(key)[0].tolist() if runs else []:
                    seen.setdefault((key, int(step)), time.time())
            time.sleep(0.02)
    finally:
        if api is not None:
            api.close()
    return seen


@pytest.mark.parametrize("pace", [0.25, 2.0], ids=["250ms-steps", "2s-steps"])
def test_every_parsed_value_is_stored_within_a_second_of_its_line(
    tmp_path: Path, tracking_dir: Path, pace: float
) -> None:
    trainer = tmp_path / "paced.py"
    trainer.write_text(PACED_TRAINER)
    printed_log = tmp_path / "printed.jsonl"
    steps = 12 if pace < 1 else 3
    proc = subprocess.Popen(
        [EXPERTRACK, "run", "--mirror", "off", "--", sys.executable, str(trainer), str(pace), str(steps), printed_log],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        seen = _seen_while_running(proc, tracking_dir, ["loss", "warmup_loss"])
    finally:
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr

    printed = {(key, step): at for key, step, at in map(json.loads, printed_log.read_text().splitlines())}
    assert set(printed) == {("warmup_loss", 0)} | {("loss", s) for s in range(steps)}
    delays = {where: round(seen[where] - at, 2) if where in seen else None for where, at in printed.items()}
    print(f"seconds from line to store at {pace} s per step: {delays}")
    late = {where: delay for where, delay in delays.items() if delay is None or delay > LATENCY_BOUND_S}
    assert not late, f"values not in the store within {LATENCY_BOUND_S} s of their line (seconds late): {late}"
    run = expertrack.Api(tracking_dir).runs()[0]
    assert run.scalars("loss")[2].tolist() == pytest.approx([1.0 / (s + 1) for s in range(steps)], abs=1e-4)
    assert run.scalars("warmup_loss")[0].tolist() == [0]  # its step came later: corrected in place, not moved
