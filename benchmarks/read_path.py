"""How long `expertrack show` and the dashboard's `/api/runs` take for runs with many keys and with a huge array.

One run prints one table, every case measured in the same process on stores built here:
  keys-8k     one run with 8,000 scalar keys of 10 points each (issue 12: `show` took 90 s);
  keys-100k   one run with 100,000 scalar keys of 2 points each (issue 12: `show` did not end in 10 minutes);
  array-small one run with 10 scalar keys over 5 steps, a 64-element array at each, and a 1,000-element array
              at one (the baseline for the next);
  array-10M   the same with that array of 10,000,000 float64 elements (80 MB)
              (issue 12: `/api/runs` took 25.7 s per request, and the page polls it every second).
`show` is the real console script in a child process, its output thrown away (start-up included: compare
with `--help`'s time, printed too). `/api/runs` is answered in process through Starlette's TestClient, the
first request (nothing cached) and a later one (the server's row cache warm). The ratios compare each case
with array-small: a huge array should cost its row's payload nothing, so array-10M / array-small should be
about 1. Numbers are never asserted; on a shared machine they move, so read the ratios.

    python benchmarks/read_path.py [--keep DIR] [--repeat 3] [--cases array-10M,keys-8k]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import expertrack

EXPERTRACK = str(Path(sys.executable).with_name("expertrack"))
CASES = ("array-small", "array-10M", "keys-8k", "keys-100k")


def build(directory: Path, case: str) -> str:
    """Create the case's run in ``directory``; return its id."""
    run = expertrack.init(project="bench", name=case, dir=directory, mirror="off")
    if case.startswith("keys"):
        count, points = (8_000, 10) if case == "keys-8k" else (100_000, 2)
        for step in range(points):
            run.log({f"layer{k // 100}/metric{k % 100}": float(step + k) for k in range(count)})
    else:
        size = 10_000_000 if case == "array-10M" else 1_000
        for step in range(5):
            row: dict[str, object] = {f"m{k}": float(step * k) for k in range(10)}
            row["moe/util"] = np.full(64, float(step))
            if step == 2:
                row["moe/big"] = np.full(size, float(step))
            run.log(row)
    run.finish()
    return run.id


def timed(fn: Callable[[], object], repeat: int) -> float:
    """The median wall time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def show_seconds(directory: Path, run_id: str, repeat: int) -> float:
    def call() -> None:
        subprocess.run(
            [EXPERTRACK, "show", run_id, "--dir", str(directory)], check=True, stdout=subprocess.DEVNULL, timeout=900
        )

    return timed(call, repeat)


def api_runs_seconds(directory: Path, repeat: int) -> tuple[float, float]:
    from starlette.testclient import TestClient

    from expertrack.dashboard.app import create_app

    def fresh() -> None:  # a new app: nothing cached, as the first poll after start-up
        client = TestClient(create_app(directory), base_url="http://127.0.0.1:8080")
        assert client.get("/api/runs?metrics=m1").status_code == 200

    warm_client = TestClient(create_app(directory), base_url="http://127.0.0.1:8080")
    warm_client.get("/api/runs?metrics=m1")
    return timed(fresh, repeat), timed(lambda: warm_client.get("/api/runs?metrics=m1"), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the stores here and keep them (default: a temporary dir)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per measurement (median reported)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="expertrack-read-bench-"))
    cases = ["array-small", *(c for c in args.cases.split(",") if c in CASES and c != "array-small")]
    startup = timed(lambda: subprocess.run([EXPERTRACK, "--help"], check=True, stdout=subprocess.DEVNULL), 3)
    results: dict[str, tuple[float, float, float, float]] = {}
    try:
        for case in cases:
            directory = root / case
            started = time.perf_counter()
            run_id = build(directory, case)
            built = time.perf_counter() - started
            first, warm = api_runs_seconds(directory, args.repeat)
            results[case] = (built, show_seconds(directory, run_id, args.repeat), first, warm)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    base = results["array-small"]
    print(f"expertrack --help (start-up only): {startup:.3f} s; median of {args.repeat} calls per cell")
    header = ("case", "build s", "show s", "x base", "/api/runs first s", "x base", "warm s")
    print(f"{header[0]:<12} " + " ".join(f"{h:>{w}}" for h, w in zip(header[1:], (8, 8, 7, 18, 7, 8))))
    for case, (built, show, first, warm) in results.items():
        print(
            f"{case:<12} {built:>8.2f} {show:>8.3f} {show / base[1]:>7.2f} {first:>18.3f} {first / base[2]:>7.2f}"
            f" {warm:>8.3f}"
        )


if __name__ == "__main__":
    main()
