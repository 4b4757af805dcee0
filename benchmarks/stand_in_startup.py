"""What the ``import wandb`` stand-in costs a training process at start-up, against the real wandb.

One run prints one table, each row the median wall time of fresh interpreters (alternating between rows, so a
machine whose load changes affects all rows alike), and its ratio to a bare ``python -c pass``:
  (a) ``python -c pass``                                       the baseline (the .pth file is read, the variable unset)
  (b) ``EXPERTRACK_AS_WANDB=1 python -c pass``                 the .pth turns the stand-in on: expertrack imported
  (c) ``python -c "import wandb"``                             the real wandb
  (d) ``EXPERTRACK_AS_WANDB=1 python -c "import wandb"``       the stand-in

    python benchmarks/stand_in_startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time

CASES = [
    ("python -c pass", "pass", False),
    ("EXPERTRACK_AS_WANDB=1 python -c pass", "pass", True),
    ("python -c 'import wandb' (real)", "import wandb", False),
    ("EXPERTRACK_AS_WANDB=1 python -c 'import wandb' (stand-in)", "import wandb", True),
]


def once(code: str, stand_in: bool) -> float:
    """Wall seconds of one fresh interpreter running ``code``."""
    env = {k: v for k, v in os.environ.items() if k != "EXPERTRACK_AS_WANDB"}
    if stand_in:
        env["EXPERTRACK_AS_WANDB"] = "1"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    options = parser.parse_args()
    cases = [case for case in CASES if "wandb" not in case[1] or importlib.util.find_spec("wandb")]
    times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    for _ in range(options.repeat):
        for label, code, stand_in in cases:
            times[label].append(once(code, stand_in))
    base = statistics.median(times[cases[0][0]])
    print(f"{'case':<60} {'median (ms)':>12} {'ratio to pass':>14}")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"{label:<60} {median * 1000:>12.1f} {median / base:>14.2f}")


if __name__ == "__main__":
    main()
