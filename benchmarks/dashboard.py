"""How fast the dashboard's server answers the chart requests the page makes, and whether spikes survive.

One run prints one table:
  (a) one chart of one metric with 1,000,000 points (one run);
  (b) one chart of one metric for 50 runs x 10,000 points each (50 runs overlaid);
  (c) what a live chart asks every half second: the points after the last step it holds;
  the server's start-up time, from launching `expertrack ui` to its first answer.
Each request is the one the page sends (``/api/series?key&runs&buckets``, buckets from the chart's width in
pixels, halved past 10 runs: see static/charts.js, bucketsFor) over real HTTP to a uvicorn child process. The
time is from sending the request to reading its last byte, over a kept-alive connection. "first" is the first
request, a second after start-up (no answer is cached anywhere: each request reads the store afresh);
"median"/"p90" are over the repeats that follow. Every run
has injected spikes (up and down); a spike survives when its exact value comes back at its exact step.

Goals (issue 8): (a) < 50 ms, (b) < 150 ms, every spike kept, start-up < 1 s.

    python benchmarks/dashboard.py [--repeat 20] [--width 600] [--keep DIR]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import expertrack

BIG_POINTS = 1_000_000
MANY_RUNS, MANY_POINTS = 50, 10_000
KEY = "train/loss"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def noisy_series(points: int, seed: int) -> tuple[np.ndarray, dict[int, float]]:
    """A decaying loss with noise and three spikes (two up, one down), one at a random place in each third.

    Thirds keep two spikes out of one bucket: of two upward spikes in one pixel's bucket, only the taller can show.
    """
    rng = np.random.default_rng(seed)
    values = 2.0 + np.exp(-np.arange(points) / (points / 5)) + 0.02 * rng.standard_normal(points)
    third = points // 3
    where = [i * third + int(rng.integers(third // 10, third - third // 10)) for i in range(3)]
    spikes = {int(where[0]): 40.0 + seed, int(where[1]): 25.0 + seed, int(where[2]): -10.0 - seed}
    for index, value in spikes.items():
        values[index] = value
    return values, spikes


def log_run(directory: Path, name: str, values: np.ndarray) -> str:
    with expertrack.init(project="bench", name=name, dir=directory, mirror="off") as run:
        for step, value in enumerate(values.tolist()):
            run.log({KEY: value}, step=step)
        return run.id


def build(directory: Path) -> dict[str, dict[str, object]]:
    """The two workloads, logged through the public API; returns run id -> its spikes, per workload."""
    spikes_file = directory / "spikes.json"
    if spikes_file.exists():
        return json.loads(spikes_file.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    values, spikes = noisy_series(BIG_POINTS, seed=0)
    big = {log_run(directory, "big", values): spikes}
    many = {}
    for i in range(MANY_RUNS):
        values, spikes = noisy_series(MANY_POINTS, seed=i + 1)
        many[log_run(directory, f"run-{i:02d}", values)] = spikes
    out = {"a": big, "b": many}
    spikes_file.write_text(json.dumps(out))
    return json.loads(spikes_file.read_text())  # str keys, as when read back later


def start_server(directory: Path) -> tuple[subprocess.Popen[bytes], int, float]:
    """Launch `expertrack ui` and return it, its port, and seconds until /api/health answered."""
    port = free_port()
    exe = Path(sys.executable).with_name("expertrack")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(exe), "ui", "--dir", str(directory), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/health")
            if conn.getresponse().status == 200:
                return proc, port, time.perf_counter() - started
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("expertrack ui exited during start-up") from None
            time.sleep(0.002)


def timed_get(conn: http.client.HTTPConnection, path: str) -> tuple[float, bytes]:
    """Seconds from sending the request to its last byte, and the body."""
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"{path} answered {response.status}: {body[:300]!r}")
    return elapsed, body


def spikes_kept(body: bytes, spikes: dict[str, dict[str, float]]) -> tuple[int, int, int]:
    """(points returned, spikes kept, spikes injected) for one /api/series answer."""
    series = json.loads(body)["series"]
    points = kept = total = 0
    for run_id, wanted in spikes.items():
        steps = np.frombuffer(base64.b64decode(series[run_id]["steps"]), "<f8")
        values = np.frombuffer(base64.b64decode(series[run_id]["values"]), "<f8")
        points += len(values)
        at = dict(zip(steps.astype(np.int64).tolist(), values.tolist()))
        for step, value in wanted.items():
            total += 1
            kept += at.get(int(step)) == value
    return points, kept, total


def baselines(directory: Path, big: str, repeat: int) -> tuple[float, float]:
    """Same-machine yardsticks for a busy machine: the store read alone (ms), a bare import (s)."""
    api = expertrack.Api(directory)
    run = api.run(big)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run.scalars(KEY)
        times.append(time.perf_counter() - started)
    api.close()
    imports = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import expertrack"], check=True)
        imports.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3, statistics.median(imports)


def buckets_for(width: int, runs: int) -> int:
    """The page's rule (static/charts.js, bucketsFor)."""
    per_run = width / 2 if runs > 10 else width
    return round(min(1000, max(100, per_run)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per workload after the first")
    parser.add_argument("--width", type=int, default=600, help="chart width in pixels the page asks for")
    parser.add_argument("--keep", type=Path, default=None, help="build the store here once and reuse it")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="expertrack-bench-dashboard-"))
    directory = args.keep or scratch / "runs"
    t0 = time.perf_counter()
    spikes = build(directory)
    print(f"store: {directory} (built/loaded in {time.perf_counter() - t0:.1f} s)", file=sys.stderr)

    proc, port, startup = start_server(directory)
    rows = []
    try:
        time.sleep(1.0)  # a person opens the page after the server is up; the first request then finds it warm
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for label, workload in (("(a) 1 run x 1,000,000 points", "a"), ("(b) 50 runs x 10,000 points", "b")):
            wanted = spikes[workload]
            buckets = buckets_for(args.width, len(wanted))
            path = f"/api/series?key={KEY}&runs={','.join(wanted)}&buckets={buckets}"
            first, body = timed_get(conn, path)
            times = [timed_get(conn, path)[0] for _ in range(args.repeat)]
            points, kept, total = spikes_kept(body, wanted)
            goal = 0.050 if workload == "a" else 0.150
            rows.append(
                (
                    label,
                    buckets,
                    first,
                    statistics.median(times),
                    np.percentile(times, 90),
                    goal,
                    points,
                    len(body),
                    kept,
                    total,
                )
            )
        # What a live chart asks every half second: the points after the last step it holds (here 100 new ones).
        (big,) = spikes["a"]
        path = f"/api/series?key={KEY}&runs={big}&buckets={buckets_for(args.width, 1)}&after={BIG_POINTS - 101}"
        first, body = timed_get(conn, path)
        times = [timed_get(conn, path)[0] for _ in range(args.repeat)]
        count = json.loads(body)["series"][big]["count"]
        rows.append(
            (
                "(c) live update: 100 new points of (a)",
                "",
                first,
                statistics.median(times),
                np.percentile(times, 90),
                None,
                count,
                len(body),
                0,
                0,
            )
        )
        read_ms, import_s = baselines(directory, big, args.repeat)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)

    print(
        f"expertrack ui, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"chart width {args.width} px; {args.repeat} repeats"
    )
    header = ("request", "buckets", "first ms", "median ms", "p90 ms", "goal ms", "points", "bytes", "spikes kept")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for label, buckets, first, median, p90, goal, points, size, kept, total in rows:
        verdict = f"{kept}/{total} {'yes' if kept == total else 'NO'}" if total else ""
        goal_text = f"< {goal * 1e3:.0f}" if goal else ""
        print(
            f"| {label} | {buckets} | {first * 1e3:.1f} | {median * 1e3:.1f} | {p90 * 1e3:.1f} | {goal_text} "
            f"| {points:,} | {size:,} | {verdict} |"
        )
    print(f"| server start-up until it answers | | {startup * 1e3:.0f} | | | < 1000 | | | |")
    print(f"| baseline: Api.scalars reading (a)'s 1,000,000 points, in process | | | {read_ms:.1f} | | | | | |")
    print(f"| baseline: `python -c 'import expertrack'` | | | {import_s * 1e3:.0f} | | | | | |")


if __name__ == "__main__":
    main()
