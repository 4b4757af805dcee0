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
import json, sys, time
pace, steps, log = float(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "a")
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
    """(key, step) -> the time it was first found in the store, polling until the program ends."""
    seen: dict[tuple[str, int], float] = {}
    while not store_path(tracking_dir).exists() and proc.poll() is None:
        time.sleep(0.01)
    while proc.poll() is None:
        for run in expertrack.Api(tracking_dir).runs():
            for key in keys:
                steps, _, _ = run.scalars(key)
                found = time.time()
                for step in steps.tolist():
                    seen.setdefault((key, int(step)), found)
        time.sleep(0.02)
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
