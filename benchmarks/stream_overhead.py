"""What the live stream (expertrack.stream, issue 14) costs and how fast it is, in three tables.

1. ``log()`` with the stream on and off: N steps (--steps, default 100,000) of 10 float scalars in a fresh process
   each, its stdout a pipe drained by the benchmark (as a launcher drains it); per ``log()`` call, and the total
   until ``finish()`` returns (the encoding happens on the writer thread, so it shows in the total). Goal: on
   within 10% of off. Modes alternate, --repeat times; medians.
2. Records per second the local side rebuilds: the lines of a real streamed run fed to ``StreamRebuilder`` (the
   decode, the checks, the store writes), timed until its writers have closed.
3. Lag from ``log()`` in the remote process to the local store: ``expertrack run -- python remote.py``, the remote
   logging its own wall time every 50 ms for --lag-seconds; the benchmark polls the local store and notes when
   each step appears. Goal: under 1 s.

    python benchmarks/stream_overhead.py [--steps 100000] [--repeat 3] [--lag-seconds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

LOGGER = r"""
import math, os, sys, time
import expertrack
steps = int(sys.argv[1])
keys = [f"train/metric_{i}" for i in range(10)]
rows = [{k: math.sin(s * 1e-3 + i) for i, k in enumerate(keys)} for s in range(steps)]
run = expertrack.init(project="bench", mirror="off")
start = time.perf_counter()
for row in rows:
    run.log(row)
logged = time.perf_counter() - start
run.finish()
total = time.perf_counter() - start
print(f"RESULT {logged} {total}", file=sys.stderr)
"""

REMOTE = r"""
import sys, time
import expertrack
run = expertrack.init(project="lag", mirror="off")
end = time.time() + float(sys.argv[1])
step = 0
while time.time() < end:
    run.log({"sent_at": time.time()}, step=step)
    step += 1
    time.sleep(0.05)
run.finish()
"""


def log_cost(steps: int, stream: bool, scratch: Path) -> tuple[float, float]:
    """(µs per log() call, seconds until finish() returned) of one fresh process."""
    env = {**os.environ, "EXPERTRACK_DIR": str(scratch / f"log-{time.monotonic_ns()}")}
    env.update({"EXPERTRACK_STREAM": "stdout" if stream else "", "EXPERTRACK_SYSTEM_METRICS": "off"})
    child = subprocess.Popen(
        [sys.executable, "-c", LOGGER, str(steps)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert child.stdout is not None
    drained = threading.Thread(target=lambda: [None for _ in iter(lambda: child.stdout.read(1 << 16), b"")])
    drained.start()
    err = child.stderr.read().decode() if child.stderr else ""
    child.wait()
    drained.join()
    line = next((line for line in err.splitlines() if line.startswith("RESULT")), None)
    if line is None:
        raise SystemExit(f"the logging process failed:\n{err}")
    logged, total = (float(x) for x in line.split()[1:])
    return logged / steps * 1e6, total


def streamed_lines(steps: int, scratch: Path) -> list[bytes]:
    """The tagged lines of a real run of ``steps`` steps."""
    from expertrack.stream import MARKER

    env = {**os.environ, "EXPERTRACK_DIR": str(scratch / "source"), "EXPERTRACK_STREAM": "stdout"}
    env["EXPERTRACK_SYSTEM_METRICS"] = "off"
    out = subprocess.run([sys.executable, "-c", LOGGER, str(steps)], capture_output=True, env=env, check=True)
    return [line + b"\n" for line in out.stdout.split(b"\n") if MARKER in line]


def rebuild_rate(lines: list[bytes], points: int, scratch: Path) -> tuple[float, float]:
    """(points per second, lines per second) that StreamRebuilder stores."""
    from expertrack.stream.rebuild import StreamRebuilder

    rebuilder = StreamRebuilder(scratch / "rebuilt", announce=lambda text: None)
    (scratch / "rebuilt").mkdir()
    start = time.perf_counter()
    for line in lines:
        rebuilder.feed(line)
    rebuilder.close()
    elapsed = time.perf_counter() - start
    return points / elapsed, len(lines) / elapsed


def lag(seconds: float, scratch: Path) -> list[float]:
    """Seconds from each log() in the remote process to the step's appearance in the local store."""
    from expertrack.store import SQLiteStore

    (scratch / "remote.py").write_text(REMOTE)
    local = scratch / "local"
    remote_env = ["env", "EXPERTRACK_STREAM=stdout", f"EXPERTRACK_DIR={scratch / 'remote'}"]
    command = [sys.executable, "-m", "expertrack", "run", "--mirror", "off", "--dir", str(local), "--"]
    command += [*remote_env, sys.executable, str(scratch / "remote.py"), str(seconds)]
    wrapper = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=scratch)
    seen: dict[int, float] = {}
    sent: dict[int, float] = {}
    while wrapper.poll() is None:
        time.sleep(0.02)
        if not (local / "store.db").exists():
            continue
        try:
            with SQLiteStore(local / "store.db", readonly=True) as store:
                for run in store.runs():
                    if run.project != "lag":
                        continue
                    steps, _times, values = store.read_scalars(run.id, "sent_at")
                    now = time.time()
                    for step, value in zip(steps.tolist(), values.tolist(), strict=True):
                        seen.setdefault(step, now)
                        sent[step] = value
        except Exception:  # the store is being created: poll again
            continue
    return [seen[step] - sent[step] for step in sorted(seen)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lag-seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="expertrack-stream-bench-") as tmp:
        scratch = Path(tmp)
        results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(args.repeat):
            for stream in (False, True):
                results[stream].append(log_cost(args.steps, stream, scratch))
        off = [statistics.median(x) for x in zip(*results[False], strict=True)]
        on = [statistics.median(x) for x in zip(*results[True], strict=True)]
        print(f"1. log() of 10 scalars, {args.steps:,} steps, median of {args.repeat} (goal: on within 10% of off)")
        print(f"   {'':12} {'µs/log()':>10} {'total s':>9}")
        print(f"   {'stream off':12} {off[0]:10.2f} {off[1]:9.2f}")
        print(f"   {'stream on':12} {on[0]:10.2f} {on[1]:9.2f}")
        print(f"   {'on / off':12} {on[0] / off[0]:10.2f} {on[1] / off[1]:9.2f}")

        lines = streamed_lines(args.steps, scratch)
        points, per_line = rebuild_rate(lines, args.steps * 10, scratch)
        print(f"\n2. rebuilding: {len(lines):,} lines, {args.steps * 10:,} points")
        print(f"   {points:,.0f} points/s, {per_line:,.0f} lines/s, {points / 10:,.0f} steps of 10 scalars/s")
        lags = lag(args.lag_seconds, scratch)
        print(f"\n3. lag from log() in the remote process to the local store, {len(lags)} steps (goal: under 1 s)")
        if lags:
            quantiles = statistics.quantiles(lags, n=20) if len(lags) > 1 else [lags[0]] * 19
            print(f"   median {statistics.median(lags):.3f} s, p95 {quantiles[18]:.3f} s, max {max(lags):.3f} s")


if __name__ == "__main__":
    main()
