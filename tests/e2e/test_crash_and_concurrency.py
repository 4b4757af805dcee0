"""Real processes against one real store: eight writers at once, and a run left by a dead process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import expertrack
from tests.conftest import run_python

# kill -9 while logging: tests/e2e/test_write_path.py (the documented loss bound, many processes, two step rates)


WRITER = """
import expertrack, sys
worker = int(sys.argv[1])
run = expertrack.init(project="many", name=f"worker-{worker}")
for step in range(10_000):
    run.log({f"k{j}": float(step * 10 + j) for j in range(10)})
run.finish()
print(run.id)
"""


def test_eight_processes_log_into_one_directory(tracking_dir: Path) -> None:
    env = {**os.environ, "EXPERTRACK_DIR": str(tracking_dir), "EXPERTRACK_MIRROR": "off"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for n in range(8)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert err == "", f"a writer printed an error: {err}"
    api = expertrack.Api(tracking_dir)
    runs = api.runs(project="many")
    assert len(runs) == 8
    for run in runs:
        assert run.state == "finished"
        for j in range(10):
            steps, _, values = run.scalars(f"k{j}")
            assert steps.tolist() == list(range(10_000))
            assert values[-1] == 99_990 + j
    total = sum(run.point_count(f"k{j}") for run in runs for j in range(10))
    assert total == 8 * 100_000


def test_run_left_running_by_a_dead_process_reads_as_crashed(tracking_dir: Path) -> None:
    code = (
        "import os, expertrack\n"
        "run = expertrack.init(project='dead')\n"
        "run.log({'x': 1.0})\n"
        "run.flush()\n"
        "print(run.id, flush=True)\n"
        "os._exit(0)\n"  # no atexit, no finish: as if the machine lost the process
    )
    run_id = run_python(code, env={"EXPERTRACK_DIR": str(tracking_dir)}).stdout.split()[0]
    run = expertrack.Api(tracking_dir).run(run_id)
    assert run.state == "crashed"
    assert run.scalars("x")[2].tolist() == [1.0]
    from expertrack.cli.common import format_duration, run_duration

    duration = run_duration(run, time.time())  # up to its last heartbeat, not "-"
    assert duration is not None and 0 <= duration < 30 and format_duration(duration) != "-"
