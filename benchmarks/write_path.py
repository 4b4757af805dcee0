"""The write path (issue 12): this tree's expertrack against a baseline commit's, measured side by side in one run.

Four measures, each in fresh child processes, the baseline's and ours interleaved so that machine load hits both:

- ``log()`` cost: CPU microseconds of the calling thread per call of 10 float scalars (goal: within 10% of the
  baseline);
- bytes written per byte stored: 100 keys at 10 steps/s for ``--io-seconds``; bytes the process wrote (``wchar``
  of /proc/self/io: every write() and pwrite() SQLite made, WAL and checkpoints) over 24 bytes per point
  stored (goal: at least 5x fewer than the baseline);
- peak memory while another connection holds the store's write lock for ``--locked-seconds`` and the run logs
  100,000 points/s (goal: under what the queue bound allows at worst, about 130 bytes a point);
- seconds from SIGTERM to exit of a process logging in a tight loop (goal: under 2 s); a baseline that hangs is
  shown as such after ``--sigterm-wait`` seconds.

    python benchmarks/write_path.py [--baseline REF] [--io-seconds 40] [--locked-seconds 60] [--repeat 3]

The baseline (default: the commit before issue 12's changes) is extracted with ``git archive`` into a temporary
directory and put first on the children's PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE_REF = "8a97e20"  # main before issue 12's write path changes
POINT_BYTES = 24  # int64 step, float64 time, float64 value
RATE_POINTS_S = 100_000


def _wchar() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("wchar:")).split()[1])


def child_log_cost(steps: float) -> dict[str, float]:
    """µs per log() call of 10 floats (the loop alone; finish() afterwards)."""
    import gc

    import expertrack

    rows = [{f"m{i}": float(step + i) for i in range(10)} for step in range(int(steps))]
    run = expertrack.init(project="bench", mirror="off")
    gc.collect()
    gc.disable()
    # CPU time of this thread: waiting for the GIL (the writer thread) or for a core (the machine is shared) is
    # not log()'s own cost, and would drown a 10% difference in noise
    start = time.thread_time()
    for row in rows:
        run.log(row)
    elapsed = time.thread_time() - start
    gc.enable()
    run.finish()
    return {"log_us": elapsed / steps * 1e6}


def child_io(seconds: float) -> dict[str, float]:
    """100 keys at 10 steps/s for ``seconds``: bytes written by this process per byte of points stored."""
    import expertrack

    run = expertrack.init(project="bench", mirror="off")
    run.log({f"k{i}": 0.0 for i in range(100)})
    run.flush()
    before = _wchar()
    steps = int(seconds * 10)
    start = time.monotonic()
    for step in range(1, steps + 1):
        time.sleep(max(0.0, start + step / 10 - time.monotonic()))
        run.log({f"k{i}": float(step * i) for i in range(100)})
    run.finish()
    written = _wchar() - before
    return {"bytes_per_byte": written / (steps * 100 * POINT_BYTES), "written_mb": written / 1e6}


def child_locked(seconds: float) -> dict[str, float]:
    """Log 100,000 points/s while the parent holds the write lock: peak memory growth, points dropped. Prints
    its result and leaves at once (a finish would wait for the lock the parent holds)."""
    import expertrack

    run = expertrack.init(project="bench", mirror="off")
    run.log({"warmup": 0.0})
    run.flush()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("ready", flush=True)
    sys.stdin.readline()  # the parent holds the lock now
    start, rows = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * RATE_POINTS_S / 10)
        while rows < due:
            run.log({f"k{i}": float(rows) for i in range(10)})
            rows += 1
        time.sleep(0.005)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    writer = run._writer
    result = {
        "peak_mb": (peak - base) / 1024,
        "points": rows * 10,
        "bound": getattr(writer, "max_queued_points", 0),
        "dropped": getattr(writer, "dropped_points", 0),
    }
    print(json.dumps(result), flush=True)
    os._exit(0)


def child_sigterm(_seconds: float) -> dict[str, float]:
    """Log in a tight loop until SIGTERM (sent by the parent)."""
    import expertrack

    run = expertrack.init(project="bench", mirror="off")
    print("ready", flush=True)
    step = 0
    while True:
        run.log({"a": float(step), "b": 1.0})
        step += 1


CHILDREN = {"log": child_log_cost, "io": child_io, "locked": child_locked, "sigterm": child_sigterm}


def spawn(src: Path, mode: str, arg: float, tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    """A child of this script running ``mode`` against the expertrack in ``src``, and its own store's path."""
    directory = Path(tempfile.mkdtemp(dir=tmp))
    env = {**os.environ, "PYTHONPATH": str(src), "EXPERTRACK_DIR": str(directory), "EXPERTRACK_MIRROR": "off"}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, str(arg)],
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    return proc, directory / "store.db"


def last_json(proc: subprocess.Popen[str], timeout: float = 900) -> dict[str, float]:
    """The child's result: the last line it printed."""
    out, _ = proc.communicate(timeout=timeout)
    return dict(json.loads(out.strip().splitlines()[-1]))


def measure_locked(src: Path, seconds: float, tmp: Path) -> dict[str, float]:
    """Hold the child's store's write lock from here while it logs; its numbers once it has logged."""
    proc, store = spawn(src, "locked", seconds, tmp)
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.readline()
    locker = sqlite3.connect(store, isolation_level=None, timeout=30)
    locker.execute("BEGIN IMMEDIATE")
    proc.stdin.write("go\n")
    proc.stdin.flush()
    try:
        return dict(json.loads(proc.stdout.readline()))
    finally:
        locker.execute("COMMIT")
        locker.close()
        proc.wait()


def measure_sigterm(src: Path, wait: float, tmp: Path) -> float:
    """Seconds from SIGTERM to exit (inf when it outlived ``wait`` and was killed)."""
    proc, _store = spawn(src, "sigterm", 0, tmp)
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(1.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=wait)
        return time.monotonic() - sent
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return float("inf")
    finally:
        proc.communicate()


def main(argv: list[str] | None = None) -> None:
    """Run every measure for the baseline and this tree; print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=BASELINE_REF)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the log() cost and SIGTERM measures")
    parser.add_argument("--log-steps", type=int, default=100_000)
    parser.add_argument("--io-seconds", type=float, default=40.0, help="over 32 s shows pieces being sealed")
    parser.add_argument("--locked-seconds", type=float, default=60.0)
    parser.add_argument("--sigterm-wait", type=float, default=35.0)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](float(args.child[1]))))
        return
    with tempfile.TemporaryDirectory(prefix="expertrack-write-path-") as name:
        tmp = Path(name)
        baseline = tmp / "baseline"
        baseline.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline, "src"], capture_output=True)
        if archive.returncode:
            sys.exit(f"cannot extract {args.baseline}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive.stdout, check=True)
        sources = {"baseline": baseline / "src", "now": REPO / "src"}
        rows = run_all(sources, args, tmp)
    print_table(rows, args)


def run_all(sources: dict[str, Path], args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, float]]:
    """Every measure for each source, interleaved; medians where repeated."""
    log_us: dict[str, list[float]] = {k: [] for k in sources}
    sigterm: dict[str, list[float]] = {k: [] for k in sources}
    for _ in range(args.repeat):
        for name, src in sources.items():
            log_us[name].append(last_json(spawn(src, "log", args.log_steps, tmp)[0])["log_us"])
            sigterm[name].append(measure_sigterm(src, args.sigterm_wait, tmp))
    out: dict[str, dict[str, float]] = {}
    for name, src in sources.items():
        io = last_json(spawn(src, "io", args.io_seconds, tmp)[0])
        locked = measure_locked(src, args.locked_seconds, tmp)
        out[name] = {
            "log_us": statistics.median(log_us[name]),
            "bytes_per_byte": io["bytes_per_byte"],
            "peak_mb": locked["peak_mb"],
            "logged": locked["points"],
            "bound": locked["bound"],
            "dropped": locked["dropped"],
            "sigterm_s": statistics.median(sigterm[name]),
            "sigterm_max_s": max(sigterm[name]),
        }
    return out


def print_table(rows: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    """One line per measure: baseline, now, the ratio, the goal, and whether it is met."""
    base, now = rows["baseline"], rows["now"]
    # the bound's memory at worst: a point still in log()'s dict costs up to ~130 bytes (fresh key strings, a
    # float, the dict's slot); once the writer has absorbed it, 48 (its buffers and its encoded piece)
    bound_mb = now["bound"] * 130 / 1e6
    print(f"baseline {args.baseline} vs this tree; Python {sys.version.split()[0]}; medians of {args.repeat} where")
    print(f"repeated; locked {args.locked_seconds:.0f} s at {RATE_POINTS_S:,} points/s; io {args.io_seconds:.0f} s\n")
    print(f"{'measure':<44}{'baseline':>12}{'now':>12}{'now/base':>10}  goal")
    lines = [
        ("log() us per call, 10 floats", base["log_us"], now["log_us"], "<= 1.10 x baseline",
         now["log_us"] <= 1.10 * base["log_us"]),
        ("bytes written per byte stored (100 keys)", base["bytes_per_byte"], now["bytes_per_byte"],
         ">= 5x fewer", now["bytes_per_byte"] * 5 <= base["bytes_per_byte"]),
        ("peak MB, store locked", base["peak_mb"], now["peak_mb"], f"< bound ~{bound_mb:.0f} MB",
         now["peak_mb"] < bound_mb),
        ("points dropped, store locked", base["dropped"], now["dropped"], f"of {now['logged']:,.0f} logged", True),
        ("s from SIGTERM to exit (median)", base["sigterm_s"], now["sigterm_s"], "< 2 s", now["sigterm_s"] < 2),
        ("s from SIGTERM to exit (worst)", base["sigterm_max_s"], now["sigterm_max_s"], "< 2 s",
         now["sigterm_max_s"] < 2),
    ]  # fmt: skip
    for label, b, n, goal, ok in lines:
        ratio = n / b if b and b != float("inf") else float("nan")
        print(f"{label:<44}{b:>12.3f}{n:>12.3f}{ratio:>10.3f}  {goal}  {'ok' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
