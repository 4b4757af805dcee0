"""What logging costs: expertrack against a plain list, raw SQLite, and other trackers, in one run.

For N steps (--steps, default 100,000) of a dict of 10 float scalars, each contender reports the time per
``log()`` call, the total time until its ``finish()`` returns (so background work counts), bytes on disk per
point, and the time to read one metric's full history back. Goals (issue 2), as ratios against raw SQLite:
``log()`` <= 1/4 of a synchronous executemany of the same 10 rows; total through ``finish()`` <= 2x batched
executemany's; bytes per point <= 1.2x; reading one metric <= 2x a raw SELECT.

    python benchmarks/log_overhead.py [--steps 100000] [--repeat 3] [--peer-steps 20000] [--only raw,expertrack]

Peers (wandb offline, trackio, mlflow, tensorboardX) run only when installed, for --peer-steps steps
because they are slow; their per-call and per-point numbers compare, their totals scale with steps.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import itertools
import math
import os
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NUM_KEYS = 10
KEYS = [f"train/metric_{i}" for i in range(NUM_KEYS)]
READ_KEY = KEYS[3]


@dataclass
class Result:
    """One contender's numbers; None where a number does not apply."""

    name: str
    steps: int
    log_us: float
    total_s: float
    bytes_per_point: float | None = None
    read_ms: float | None = None
    read_points: int | None = None
    note: str = ""


def make_rows(steps: int) -> list[dict[str, float]]:
    """The dicts every contender logs, built before timing so building them is nobody's cost."""
    return [{key: math.sin(step * 1e-3 + i) for i, key in enumerate(KEYS)} for step in range(steps)]


def dir_bytes(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def best_ms(read: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """The fastest of ``repeat`` reads, in milliseconds, and what the last one returned."""
    best, out = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = read()
        best = min(best, time.perf_counter() - start)
    return best * 1e3, out


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect before, and keep the cyclic collector out of the timed loop (same for every contender)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def bench_list(rows: list[dict[str, float]]) -> Result:
    """The floor: appending the dict to a list."""
    out: list[dict[str, float]] = []
    with quiet_gc():
        start = time.perf_counter()
        for row in rows:
            out.append(row)
        elapsed = time.perf_counter() - start
    read_ms, _ = best_ms(lambda: [row[READ_KEY] for row in out])
    return Result("list.append(dict)", len(rows), elapsed / len(rows) * 1e6, elapsed, None, read_ms, len(out))


RAW_SCHEMA = """
CREATE TABLE points (run INTEGER, key INTEGER, step INTEGER, value REAL, PRIMARY KEY (run, key, step))
WITHOUT ROWID
"""
RAW_INSERT = "INSERT INTO points VALUES (?, ?, ?, ?)"
RAW_SELECT = "SELECT step, value FROM points WHERE run = ? AND key = ? ORDER BY step"


def _raw_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(RAW_SCHEMA)
    return conn


def _raw_finish(conn: sqlite3.Connection, path: Path, name: str, steps: int, elapsed: float) -> Result:
    """Checkpoint so the bytes are the database's, then time the SELECT of one key."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = dir_bytes(path.parent)
    key_id = KEYS.index(READ_KEY)
    read_ms, got = best_ms(lambda: conn.execute(RAW_SELECT, (1, key_id)).fetchall())
    conn.close()
    points = steps * NUM_KEYS
    return Result(name, steps, elapsed / steps * 1e6, elapsed, size / points, read_ms, len(got))


def bench_raw_sync(rows: list[dict[str, float]], tmp: Path) -> Result:
    """Raw SQLite, synchronous: an executemany of the step's 10 rows per call, a commit every 1,000 steps."""
    path = tmp / "raw_sync" / "raw.db"
    path.parent.mkdir()
    conn = _raw_connect(path)
    ids = {key: i for i, key in enumerate(KEYS)}
    with quiet_gc():
        start = time.perf_counter()
        conn.execute("BEGIN")
        for step, row in enumerate(rows):
            conn.executemany(RAW_INSERT, [(1, ids[k], step, v) for k, v in row.items()])
            if step % 1000 == 999:
                conn.execute("COMMIT")
                conn.execute("BEGIN")
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
    return _raw_finish(conn, path, "raw executemany, per call", len(rows), elapsed)


def bench_raw_batched(rows: list[dict[str, float]], tmp: Path, batch_steps: int = 10_000) -> Result:
    """Raw SQLite, batched: rows gathered in a list, one executemany and commit per ``batch_steps`` steps."""
    path = tmp / "raw_batched" / "raw.db"
    path.parent.mkdir()
    conn = _raw_connect(path)
    ids = {key: i for i, key in enumerate(KEYS)}
    pending: list[tuple[int, int, int, float]] = []
    with quiet_gc():
        start = time.perf_counter()
        for step, row in enumerate(rows):
            pending.extend([(1, ids[k], step, v) for k, v in row.items()])
            if step % batch_steps == batch_steps - 1:
                _insert_batch(conn, pending)
        _insert_batch(conn, pending)
        elapsed = time.perf_counter() - start
    return _raw_finish(conn, path, "raw executemany, batched", len(rows), elapsed)


def _insert_batch(conn: sqlite3.Connection, pending: list[tuple[int, int, int, float]]) -> None:
    """One transaction for the whole batch (the connection is in autocommit mode)."""
    conn.execute("BEGIN")
    conn.executemany(RAW_INSERT, pending)
    conn.execute("COMMIT")
    pending.clear()


def bench_expertrack(rows: list[dict[str, float]], tmp: Path) -> tuple[Result, Result]:
    """expertrack: init, log every row, finish; then read one key back with scalars() and history()."""
    import expertrack

    directory = tmp / "expertrack"
    run = expertrack.init(project="bench", name="log-overhead", dir=str(directory), mirror="off")
    with quiet_gc():
        start = time.perf_counter()
        for row in rows:
            run.log(row)
        logged = time.perf_counter() - start
        run.finish()
        total = time.perf_counter() - start
    # What stays on disk once every connection is closed: the database, its WAL checkpointed.
    with contextlib.closing(sqlite3.connect(directory / "store.db")) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = dir_bytes(directory)
    stored = expertrack.Api(str(directory)).run(run.id)
    scalars_ms, got = best_ms(lambda: stored.scalars(READ_KEY))
    history_ms, frame = best_ms(lambda: stored.history([READ_KEY]))
    n, points = len(rows), len(rows) * NUM_KEYS
    per_call = logged / n * 1e6
    note = "also stores a wall time per point"
    first = Result("expertrack .scalars()", n, per_call, total, size / points, scalars_ms, len(got[2]), note)
    second = Result("expertrack .history()", n, per_call, total, size / points, history_ms, len(frame), note)
    return first, second


# ---------------------------------------------------------------------------------------------------------
# Other trackers, each only when installed. A failure in one is printed and the table goes on.


def bench_wandb(rows: list[dict[str, float]], directory: Path) -> Result:
    """wandb in offline mode (its service process writes the .wandb log); read back with our reader."""
    import wandb

    settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, disable_git=True)
    run = wandb.init(mode="offline", dir=str(directory), project="bench", settings=settings)
    logged, total = _timed_loop(rows, run.log, run.finish)
    log_file = next(directory.rglob("*.wandb"))
    read_ms, points = None, None
    with contextlib.suppress(ImportError):
        from expertrack.mirror.wandb_log import read_run

        read_ms, got = best_ms(lambda: read_run(log_file), repeat=1)
        points = sum(1 for row in got.history if READ_KEY in row)
    n = len(rows)
    note = "system stats off; read = whole .wandb log"
    return Result(
        "wandb offline",
        n,
        logged / n * 1e6,
        total,
        log_file.stat().st_size / (n * NUM_KEYS),
        read_ms,
        points,
        note,
    )


def bench_tensorboardx(rows: list[dict[str, float]], directory: Path) -> Result:
    """tensorboardX: one add_scalar per key (it has no dict call that writes one scalar per tag)."""
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(directory))

    steps = itertools.count()

    def log(row: dict[str, float]) -> None:
        step = next(steps)
        for key, value in row.items():
            writer.add_scalar(key, value, step)

    logged, total = _timed_loop(rows, log, writer.close)
    read_ms, points = best_ms(lambda: _read_tfevents(directory, READ_KEY), repeat=1)
    n = len(rows)
    note = "read = whole event file"
    return Result(
        "tensorboardX",
        n,
        logged / n * 1e6,
        total,
        dir_bytes(directory) / (n * NUM_KEYS),
        read_ms,
        len(points),
        note,
    )


def _read_tfevents(directory: Path, tag: str) -> list[tuple[int, float]]:
    """Every (step, value) of ``tag`` from TFRecord event files: u64 length, u32 crc, data, u32 crc."""
    from tensorboardX.proto.event_pb2 import Event

    points: list[tuple[int, float]] = []
    for path in sorted(directory.rglob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset + 12 <= len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            event = Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                if value.tag == tag:
                    points.append((event.step, value.simple_value))
    return points


def bench_mlflow(rows: list[dict[str, float]], directory: Path) -> Result:
    """MLflow with a local SQLite backend, synchronous log_metrics (its default)."""
    import mlflow

    directory.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{directory / 'mlflow.db'}")
    run = mlflow.start_run()
    step = iter(range(len(rows)))
    logged, total = _timed_loop(rows, lambda row: mlflow.log_metrics(row, step=next(step)), mlflow.end_run)
    client = mlflow.tracking.MlflowClient()
    read_ms, got = best_ms(lambda: client.get_metric_history(run.info.run_id, READ_KEY), repeat=1)
    n = len(rows)
    return Result(
        "mlflow (sqlite, sync)",
        n,
        logged / n * 1e6,
        total,
        dir_bytes(directory) / (n * NUM_KEYS),
        read_ms,
        len(got),
    )


def bench_trackio(rows: list[dict[str, float]], directory: Path) -> Result:
    """trackio, storing under TRACKIO_DIR (read when trackio is imported, so set first)."""
    os.environ["TRACKIO_DIR"] = str(directory)
    import trackio

    trackio.init(project="bench", name="log-overhead")
    logged, total = _timed_loop(rows, trackio.log, trackio.finish)
    n = len(rows)
    return Result(
        "trackio", n, logged / n * 1e6, total, dir_bytes(directory) / (n * NUM_KEYS), note="read not measured"
    )


def _timed_loop(
    rows: list[dict[str, float]], log: Callable[[Any], Any], finish: Callable[[], Any]
) -> tuple[float, float]:
    """Seconds spent in the logging loop, and until ``finish`` returned."""
    with quiet_gc():
        start = time.perf_counter()
        for row in rows:
            log(row)
        logged = time.perf_counter() - start
        finish()
        return logged, time.perf_counter() - start


# name -> (module to look for, benchmark, most steps it gets: the slow ones would take minutes)
PEERS: dict[str, tuple[str, Callable[[list[dict[str, float]], Path], Result], int | None]] = {
    "wandb": ("wandb", bench_wandb, None),
    "trackio": ("trackio", bench_trackio, None),
    "mlflow": ("mlflow", bench_mlflow, 2_000),
    "tensorboardx": ("tensorboardX", bench_tensorboardx, None),
}


def run_peer(name: str, rows: list[dict[str, float]], directory: Path) -> Result | None:
    """One peer, when installed; its failure is printed, not raised, so the table still comes out."""
    module, bench, cap = PEERS[name]
    if importlib.util.find_spec(module) is None:
        print(f"({name}: not installed, skipped)")
        return None
    if cap is not None and len(rows) > cap:
        rows = rows[:cap]
        print(f"({name}: {cap:,} steps only, it is slow)")
    try:
        return bench(rows, directory)
    except Exception as err:  # a peer's own failure must not hide the other numbers
        print(f"({name} failed: {type(err).__name__}: {err})")
        return None


def run_round(rows: list[dict[str, float]], tmp: Path, only: set[str] | None) -> list[Result]:
    """One measurement of the floor, raw SQLite and expertrack, each in its own directory under ``tmp``."""
    tmp.mkdir()
    results: list[Result] = []
    if not only or "list" in only:
        results.append(bench_list(rows))
    if not only or "raw" in only:
        results.append(bench_raw_sync(rows, tmp))
        results.append(bench_raw_batched(rows, tmp))
    if not only or "expertrack" in only:
        results.extend(bench_expertrack(rows, tmp))
    return results


def median_result(results: list[Result]) -> Result:
    """Per number, the median over rounds (rounds interleave contenders, so load hits all alike)."""

    def med(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    first = results[0]
    return Result(
        first.name,
        first.steps,
        statistics.median(r.log_us for r in results),
        statistics.median(r.total_s for r in results),
        med([r.bytes_per_point for r in results]),
        med([r.read_ms for r in results]),
        first.read_points,
        first.note + (f" (median of {len(results)})" if len(results) > 1 else ""),
    )


def run_all(args: argparse.Namespace) -> list[Result]:
    """Every contender that is selected and installed, in the order of the table."""
    only = set(args.only.split(",")) if args.only else None
    rows = make_rows(args.steps)
    with tempfile.TemporaryDirectory(prefix="expertrack-bench-") as name:
        tmp = Path(name)
        rounds = [run_round(rows, tmp / f"round-{i}", only) for i in range(args.repeat)]
        results = [median_result(list(same)) for same in zip(*rounds)]
        peer_rows = rows[: min(args.peer_steps, args.steps)]
        for peer in PEERS:
            if not only or peer in only:
                result = run_peer(peer, peer_rows, tmp / peer)
                if result is not None:
                    results.append(result)
    return results


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: list[Result]) -> None:
    """The table, then the goals as ratios against raw SQLite measured in this same run."""
    header = f"{'contender':<28}{'steps':>8}{'log() us':>10}{'total s':>9}{'us/step':>9}{'B/point':>9}"
    print(header + f"{'read ms':>10}{'points':>9}  note")
    for r in results:
        line = f"{r.name:<28}{r.steps:>8}{r.log_us:>10.2f}{r.total_s:>9.3f}{r.total_s / r.steps * 1e6:>9.2f}"
        line += f"{_fmt(r.bytes_per_point, '.1f'):>9}{_fmt(r.read_ms, '.2f'):>10}{_fmt(r.read_points, 'd'):>9}"
        print(f"{line}  {r.note}")
    by_name = {r.name: r for r in results}
    ours, sync, batched = (by_name.get(n) for n in ("expertrack .scalars()", "raw executemany, per call",
                                                     "raw executemany, batched"))  # fmt: skip
    if not (ours and sync and batched):
        return
    history = by_name["expertrack .history()"]
    goals = [
        ("log() / sync executemany of 10 rows", ours.log_us / sync.log_us, 0.25),
        ("total through finish() / batched executemany", ours.total_s / batched.total_s, 2.0),
        ("bytes per point / raw SQLite", (ours.bytes_per_point or 0) / (batched.bytes_per_point or 1), 1.2),
        ("read one metric, scalars() / raw SELECT", (ours.read_ms or 0) / (batched.read_ms or 1), 2.0),
        ("read one metric, history() / raw SELECT", (history.read_ms or 0) / (batched.read_ms or 1), 2.0),
    ]
    print("\ngoal (issue 2)                                   ratio   limit")
    for label, ratio, limit in goals:
        print(f"{label:<46}{ratio:>8.3f}{limit:>8.2f}  {'ok' if ratio <= limit else 'MISSED'}")


def main(argv: list[str] | None = None) -> None:
    """Parse options, run every contender once, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000, help="steps for expertrack and the baselines")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the fast contenders; medians shown")
    parser.add_argument("--peer-steps", type=int, default=20_000, help="steps for the (slow) other trackers")
    parser.add_argument("--only", default="", help="comma-separated: list,raw,expertrack," + ",".join(PEERS))
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_SILENT", "true")
    print(f"{args.steps:,} steps x {NUM_KEYS} float scalars per log() call; Python {sys.version.split()[0]}\n")
    print_table(run_all(args))


if __name__ == "__main__":
    main()
