"""How long a value printed by a wrapped program takes to be readable in the store (issue 18, item 2).

A child prints ``step N loss=X`` lines at a fixed pace under ``expertrack run`` (the format is detected, as for a
user who gives no --parser) and writes the time it printed each line to a side file; this script reads the store
while the child runs and notes when each step first shows. It prints, per pace, the median and the worst delay
from line to store. The promise: under 1 s at any pace.

    python benchmarks/parsed_latency.py [--steps 20] [--paces 0.05,0.25,2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import expertrack
from expertrack.paths import store_path

CHILD = r"""
import json, sys, time
pace, steps, log = float(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "a")
for step in range(steps):
    print(f"step {step} loss={1.0 / (step + 1):.4f}", flush=True)
    log.write(json.dumps([step, time.time()]) + "\n")
    log.flush()
    time.sleep(pace)
"""


def delays(pace: float, steps: int, work: Path) -> list[float]:
    """Seconds from each line to its value in the store, for one child at ``pace`` seconds per step."""
    runs, printed = work / f"runs-{pace}", work / f"printed-{pace}.jsonl"
    (work / "child.py").write_text(CHILD)
    argv = [str(Path(sys.executable).with_name("expertrack")), "run", "--mirror", "off", "--dir", str(runs), "--"]
    proc = subprocess.Popen(
        [*argv, sys.executable, str(work / "child.py"), str(pace), str(steps), str(printed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[int, float] = {}
    while proc.poll() is None:
        if store_path(runs).exists():
            for run in expertrack.Api(runs).runs():
                found = time.time()
                for step in run.scalars("loss")[0].tolist():
                    seen.setdefault(int(step), found)
        time.sleep(0.01)
    at = dict(json.loads(line) for line in printed.read_text().splitlines())
    return [seen[step] - at[step] if step in seen else float("inf") for step in sorted(at)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--paces", default="0.05,0.25,2")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.steps} steps per pace")
    print(f"{'s/step':>7} {'median s':>9} {'worst s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for pace in (float(p) for p in args.paces.split(",")):
            measured = delays(pace, args.steps if pace < 1 else max(3, args.steps // 5), Path(tmp))
            print(f"{pace:>7.2f} {statistics.median(measured):>9.2f} {max(measured):>8.2f}")


if __name__ == "__main__":
    main()
