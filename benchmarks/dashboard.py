"""How fast the dashboard's server answers the chart requests the page makes, and whether spikes survive.

One run prints one table:
  (a) one chart of one metric with 1,000,000 points (one run);
  (b) one chart of one metric for 50 runs x 10,000 points each (50 runs overlaid);
  (c) what a live chart asks every half second: the points after the last step it holds;
  (d) a grouped chart: 5 groups x 4 seeds x 100,000 points, each group's mean and ±1 s.d. band;
  the server's start-up time, from launching `expertrack ui` to its first answer.
Each request is the one the page sends (``/api/series?key&runs&buckets``, buckets from the chart's width in
pixels, halved past 10 runs: see static/charts.js, bucketsFor) over real HTTP to a uvicorn child process. The
time is from sending the request to reading its last byte, over a kept-alive connection. "first" (cold) is the
first request for that chart, a second after start-up and after the runs table the page asks for first: it
reads the store (for (a), only the chunks' min/max levels: store/levels.py); "median"/"p90" (warm) are over the
repeats that follow, which the server answers from the series it decoded (dashboard/cache.py: kept while the
run does not change). "bytes" is the answer as sent to a client without gzip, "gzip" as sent to a browser (which
always accepts it); the gzip row of (b) times that request too. Every run has injected spikes (up and down); a
spike survives when its exact value comes back at its exact step.

Goals (issue 17): (a) < 25 ms warm and < 50 ms cold, (d) < 150 ms, every spike kept, start-up < 1 s. Peers
(Aim, TensorBoard) are not installed here; the table quotes the issue's published numbers for them.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import expertrack

BIG_POINTS = 1_000_000
MANY_RUNS, MANY_POINTS = 50, 10_000
GROUPS, SEEDS, GROUP_POINTS = 5, 4, 100_000
KEY = "train/loss"
# Published by the issue (17) for the same 1,000,000-point chart; measured elsewhere, not side by side here.
PEERS = [("Aim (reads 500 sampled points: spikes lost)", 26.0), ("TensorBoard", 52.0)]


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
    """The workloads, logged through the public API; returns run id -> its spikes, per workload."""
    spikes_file = directory / "spikes.json"
    if spikes_file.exists():
        out = json.loads(spikes_file.read_text())
        if "d" not in out:  # a store kept from before the grouped workload
            out["d"] = build_groups(directory)
            spikes_file.write_text(json.dumps(out))
        return out
    directory.mkdir(parents=True, exist_ok=True)
    values, spikes = noisy_series(BIG_POINTS, seed=0)
    big = {log_run(directory, "big", values): spikes}
    many = {}
    for i in range(MANY_RUNS):
        values, spikes = noisy_series(MANY_POINTS, seed=i + 1)
        many[log_run(directory, f"run-{i:02d}", values)] = spikes
    out = {"a": big, "b": many, "d": build_groups(directory)}
    spikes_file.write_text(json.dumps(out))
    return json.loads(spikes_file.read_text())  # str keys, as when read back later


def build_groups(directory: Path) -> dict[str, object]:
    """GROUPS x SEEDS runs of GROUP_POINTS points; config {"lr": group's lr, "seed": seed}: run id -> lr."""
    runs = {}
    for group in range(GROUPS):
        lr = 1e-4 * (group + 1)
        for seed in range(SEEDS):
            values, _ = noisy_series(GROUP_POINTS, seed=100 + group * SEEDS + seed)
            with expertrack.init(
                project="bench-groups",
                name=f"lr{lr:g}-s{seed}",
                dir=directory,
                config={"lr": lr, "seed": seed},
                mirror="off",
            ) as run:
                for step, value in enumerate(values.tolist()):
                    run.log({KEY: value}, step=step)
                runs[run.id] = lr
    return runs


def start_server(directory: Path) -> tuple[subprocess.Popen[bytes], int, float]:
    """Launch `expertrack ui` and return it, its port, and seconds until /api/health answered."""
    port = free_port()
    exe = Path(sys.executable).with_name("expertrack")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(exe), "ui", "--dir", str(directory), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "EXPERTRACK_UI_TOKEN"},  # measured without a token
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


def timed_get(conn: http.client.HTTPConnection, path: str, gzip: bool = False) -> tuple[float, bytes]:
    """Seconds from sending the request to its last byte, and the body (as sent: compressed when ``gzip``)."""
    started = time.perf_counter()
    conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if gzip else {})
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


def baselines(directory: Path, big: str, repeat: int) -> tuple[float, float, float]:
    """Same-machine yardsticks for a busy machine: the store read alone (ms), its levels read alone (ms: what a
    chart of (a) reads, store/levels.py), a bare import (s)."""
    api = expertrack.Api(directory)
    run = api.run(big)
    times, levels = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        run.scalars(KEY)
        times.append(time.perf_counter() - started)
        started = time.perf_counter()
        run.scalar_envelope(KEY)
        levels.append(time.perf_counter() - started)
    api.close()
    imports = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import expertrack"], check=True)
        imports.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3, statistics.median(levels) * 1e3, statistics.median(imports)


def buckets_for(width: int, runs: int) -> int:
    """The page's rule (static/charts.js, bucketsFor)."""
    per_run = width / 2 if runs > 10 else width
    return round(min(1000, max(100, per_run)))


@dataclass
class Row:
    """One line of the table."""

    label: str
    buckets: int | str
    first: float
    median: float
    p90: float
    goal: str
    points: int
    size: int
    gzipped: int | None = None
    kept: int = 0
    total: int = 0

    def line(self) -> str:
        verdict = f"{self.kept}/{self.total} {'yes' if self.kept == self.total else 'NO'}" if self.total else ""
        packed = f"{self.gzipped:,}" if self.gzipped is not None else ""
        return (
            f"| {self.label} | {self.buckets} | {self.first * 1e3:.1f} | {self.median * 1e3:.1f} | {self.p90 * 1e3:.1f}"
            f" | {self.goal} | {self.points:,} | {self.size:,} | {packed} | {verdict} |"
        )


def _median_p90(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), float(np.percentile(times, 90))


def measure(
    conn: http.client.HTTPConnection, path: str, repeat: int, gzip: bool = False
) -> tuple[float, list[float], bytes]:
    """The first request's seconds, the repeats' seconds, and the first body."""
    first, body = timed_get(conn, path, gzip)
    return first, [timed_get(conn, path, gzip)[0] for _ in range(repeat)], body


def grouped_points(body: bytes) -> int:
    return sum(group["count"] for group in json.loads(body)["groups"])


def requests(conn: http.client.HTTPConnection, spikes: dict[str, Any], width: int, repeat: int) -> list[Row]:
    """Every workload's row, the requests made as the page makes them."""
    rows = []
    # the page polls the runs table (twice a second) before and while it asks for charts, so a chart's first
    # request finds the server past its own first request (which opens the store and imports the read side)
    first, times, body = measure(conn, "/api/runs", repeat)
    rows.append(Row("(0) the runs table, the page's first request", "", first, *_median_p90(times), "", 0, len(body)))
    for label, workload, goal in (
        ("(a) 1 run x 1,000,000 points", "a", "< 25 warm, < 50 cold"),
        ("(b) 50 runs x 10,000 points", "b", ""),
    ):
        wanted = spikes[workload]
        buckets = buckets_for(width, len(wanted))
        path = f"/api/series?key={KEY}&runs={','.join(wanted)}&buckets={buckets}"
        first, times, body = measure(conn, path, repeat)
        gz_first, gz_times, packed = measure(conn, path, repeat, gzip=True)
        points, kept, total = spikes_kept(body, wanted)
        rows.append(
            Row(
                label,
                buckets,
                first,
                statistics.median(times),
                np.percentile(times, 90),
                goal,
                points,
                len(body),
                len(packed),
                kept,
                total,
            )
        )
        if workload == "b":
            rows.append(
                Row(
                    "(b) the same, gzip (as a browser asks)",
                    buckets,
                    gz_first,
                    statistics.median(gz_times),
                    np.percentile(gz_times, 90),
                    "",
                    points,
                    len(body),
                    len(packed),
                )
            )
    # What a live chart asks every half second: the points after the last step it holds (here 100 new ones).
    (big,) = spikes["a"]
    path = f"/api/series?key={KEY}&runs={big}&buckets={buckets_for(width, 1)}&after={BIG_POINTS - 101}"
    first, times, body = measure(conn, path, repeat)
    count = json.loads(body)["series"][big]["count"]
    rows.append(
        Row(
            "(c) live update: 100 new points of (a)",
            "",
            first,
            statistics.median(times),
            np.percentile(times, 90),
            "",
            count,
            len(body),
        )
    )
    grouped = spikes["d"]
    buckets = buckets_for(width, 1)
    path = f"/api/grouped?key={KEY}&runs={','.join(grouped)}&by=config.lr&band=std&buckets={buckets}"
    first, times, body = measure(conn, path, repeat)
    packed = timed_get(conn, path, gzip=True)[1]
    label = f"(d) grouped: {GROUPS} groups x {SEEDS} seeds x {GROUP_POINTS:,} points"
    rows.append(
        Row(
            label,
            buckets,
            first,
            statistics.median(times),
            np.percentile(times, 90),
            "< 150",
            grouped_points(body),
            len(body),
            len(packed),
        )
    )
    return rows


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
    try:
        time.sleep(1.0)  # a person opens the page after the server is up; the first request then finds it warm
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        rows = requests(conn, spikes, args.width, args.repeat)
        (big,) = spikes["a"]
        read_ms, levels_ms, import_s = baselines(directory, big, args.repeat)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)

    print(
        f"expertrack ui, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"chart width {args.width} px; {args.repeat} repeats"
    )
    header = (
        "request",
        "buckets",
        "first ms (cold)",
        "median ms (warm)",
        "p90 ms",
        "goal ms",
        "points",
        "bytes",
        "gzip bytes",
        "spikes kept",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print(row.line())
    print(f"| server start-up until it answers | | {startup * 1e3:.0f} | | | < 1000 | | | | |")
    print(f"| baseline: Api.scalars reading (a)'s 1,000,000 points, in process | | | {read_ms:.1f} | | | | | | |")
    print(f"| baseline: Api.scalar_envelope reading (a)'s levels, in process | | | {levels_ms:.1f} | | | | | | |")
    print(f"| baseline: `python -c 'import expertrack'` | | | {import_s * 1e3:.0f} | | | | | | |")
    for name, ms in PEERS:
        print(f"| peer, published in issue 17, not run here: {name}, (a) | | | {ms:.0f} | | | | | | |")
    big_row = rows[0]
    print(
        f"\n(a) against the store read alone, measured in this run (a busy machine slows both alike): cold "
        f"{big_row.first * 1e3 / read_ms:.2f}x, warm {big_row.median * 1e3 / read_ms:.2f}x"
    )


if __name__ == "__main__":
    main()
