"""The two store engines side by side: replication's cost and lag, push speed, chart reads (issue 13).

One table, one column per target engine (an SQLite directory, and PostgreSQL when one is at hand: ``--pg URL``, or
a throwaway server started with tests/pg.py's fixture when Debian's ``postgresql`` package is installed):

- **log() cost, replication on / off**: the mean time of one ``log()`` call of ``--keys`` scalars while a run
  replicates to the engine, over the same loop without replication (median of ``--repeat`` alternated rounds;
  goal: within 5%, i.e. a ratio under 1.05);
- **replication lag at 10,000 points/s**: a run logs ``--keys`` keys at ``10,000 / keys`` steps a second for
  ``--lag-s`` seconds; a reader samples the target 10 times a second and notes how long ago the first step it does
  not have yet was logged (median and max; goal: under 2 s);
- **push of a ``--points``-point run** (one key), points per second, into an empty target;
- **chart read**: the 1,000,000-point key charted as the dashboard does (levels, 600 buckets), and 50 runs x
  10,000 points read whole (a grouped chart), best of 15 after 5 untimed reads (a reader kept open, as the
  dashboard's), from each engine (goal for PostgreSQL: within 2x of SQLite).

    python benchmarks/store_engines.py [--pg URL] [--points 1000000] [--keys 10] [--repeat 3] [--lag-s 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

import expertrack  # noqa: E402
from expertrack.store.copy import copy_runs  # noqa: E402
from expertrack.store.location import describe, open_store  # noqa: E402

BUCKETS = 600


def log_cost(directory: Path, target: str | None, steps: int, keys: int) -> float:
    """Mean seconds per log() call of ``keys`` scalars, replicating to ``target`` (None: not replicating)."""
    run = expertrack.init(
        project="bench", dir=directory, mirror="off", system_metrics=False, alerts=False, replicate_to=target
    )
    names = [f"train/k{i}" for i in range(keys)]
    time.sleep(1.0)  # the follower has started and made its first copy
    started = time.perf_counter()
    for step in range(steps):
        run.log({name: step * 0.5 + i for i, name in enumerate(names)}, step=step)
    elapsed = time.perf_counter() - started
    run.finish()
    return elapsed / steps


def replication_lag(directory: Path, target: str, keys: int, seconds: float) -> tuple[float, float]:
    """(median, max) seconds between a step being logged and the target having it, at 10,000 points/s."""
    run = expertrack.init(
        project="bench", dir=directory, mirror="off", system_metrics=False, alerts=False, replicate_to=target
    )
    rate = 10_000 / keys  # steps per second
    logged: list[float] = []  # logged[step] = when it was logged
    lags: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        store = None
        while not stop.is_set():
            try:
                store = store or open_store(target, readonly=True)
                last = store.last_step(run.id)
            except Exception:  # the run is not there yet
                last = None
            have = -1 if last is None else int(last)
            now = time.time()
            if len(logged) > have + 1:
                lags.append(now - logged[have + 1])
            elif logged:
                lags.append(0.0)
            stop.wait(0.1)
        if store is not None:
            store.close()

    reader = threading.Thread(target=sample, daemon=True)
    reader.start()
    names = [f"train/k{i}" for i in range(keys)]
    start = time.time()
    step = 0
    while time.time() - start < seconds:
        wait = start + step / rate - time.time()
        if wait > 0:
            time.sleep(wait)
        logged.append(time.time())
        run.log({name: step * 0.5 + i for i, name in enumerate(names)}, step=step)
        step += 1
    stop.set()
    reader.join()
    run.finish()
    measured = lags[len(lags) // 5 :] or [0.0]  # after the first fifth: the follower's start is not lag
    return statistics.median(measured), max(measured)


def big_run(directory: Path, points: int) -> str:
    run = expertrack.init(project="bench-big", dir=directory, mirror="off", system_metrics=False, alerts=False)
    for step in range(points):
        run.log({"loss": 1.0 / (step + 1) + (step % 97) * 1e-4}, step=step)
    run.finish()
    return run.id


def many_runs(directory: Path, runs: int, points: int) -> list[str]:
    ids = []
    for r in range(runs):
        run = expertrack.init(project="bench-group", dir=directory, mirror="off", system_metrics=False, alerts=False)
        for step in range(points):
            run.log({"loss": r + 1.0 / (step + 1)}, step=step)
        run.finish()
        ids.append(run.id)
    return ids


def best_of(fn: Any, times: int = 15, warm_up: int = 5) -> float:
    """The best time of ``times`` calls after ``warm_up`` untimed ones: a reader kept open, as the dashboard keeps
    its readers, whose queries psycopg has prepared (after 5 uses) and whose pages the server has cached."""
    for _ in range(warm_up):
        fn()
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def chart_read(store: Any, run_id: str) -> None:
    envelope = store.read_envelope(run_id, "loss")
    if envelope is None:
        store.read_scalars(run_id, "loss", times=False)
    else:
        envelope.chart(BUCKETS)


def group_read(store: Any, ids: list[str]) -> None:
    """One key of every run, as a grouped chart reads it: one query for all of them (``read_scalars_many``)."""
    store.read_scalars_many(ids, "loss", times=False)


def postgres_location(given: str | None) -> tuple[str | None, Any]:
    """(URL, server to remove afterwards or None): ``--pg``, else a throwaway server, else (None, None)."""
    if given:
        return given, None
    try:
        from tests.pg import PostgresServer  # the tests' fixture: Debian's initdb and pg_ctl
    except ImportError:
        return None, None
    try:
        server = PostgresServer.start_new()
    except Exception as exc:  # not installed: SQLite only, said in the output
        print(f"(no PostgreSQL: {exc})".splitlines()[0])
        return None, None
    return server.new_database(), server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default=None, help="a postgresql:// URL of an empty database to use")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20_000, help="log() calls per round of the log cost")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lag-s", type=float, default=10.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="expertrack-bench-engines-"))
    url, server = postgres_location(args.pg)
    targets = {"SQLite": str(root / "target-sqlite")}
    if url:
        targets["PostgreSQL"] = url
    rows: dict[str, dict[str, str]] = {}
    reads: dict[str, dict[str, float]] = {}  # read -> engine -> best seconds
    try:
        source = root / "source"
        started = time.perf_counter()
        big = big_run(source, args.points)
        group = many_runs(source, 50, 10_000)
        print(f"made the source runs in {time.perf_counter() - started:.1f} s ({args.points:,}-point run, 50 x 10,000)")
        for engine, target in targets.items():
            print(f"{engine}: {describe(target)}")
            col: dict[str, str] = {}
            ratios: list[float] = []
            offs: list[float] = []
            ons: list[float] = []
            log_cost(root / f"warm-{engine}", None, args.steps, args.keys)  # first-call costs, not measured
            for r in range(args.repeat):
                first, second = (None, target) if r % 2 == 0 else (target, None)  # each goes first in turn
                cost = {
                    first: log_cost(root / f"a-{engine}-{r}", first, args.steps, args.keys),
                    second: log_cost(root / f"b-{engine}-{r}", second, args.steps, args.keys),
                }
                offs.append(cost[None])
                ons.append(cost[target])
                ratios.append(cost[target] / cost[None])
            col["log() off, median (us)"] = f"{statistics.median(offs) * 1e6:.1f}"
            col["log() on, median (us)"] = f"{statistics.median(ons) * 1e6:.1f}"
            col["log() on / off (median)"] = f"x{statistics.median(ratios):.3f}"
            median, worst = replication_lag(root / f"lag-{engine}", target, args.keys, args.lag_s)
            col["lag at 10k points/s, median (s)"] = f"{median:.2f}"
            col["lag at 10k points/s, max (s)"] = f"{worst:.2f}"
            with open_store(source, readonly=True) as src, open_store(target) as dst:
                started = time.perf_counter()
                report = copy_runs(src, dst, [big])
                elapsed = time.perf_counter() - started
                col[f"push {args.points:,} points (points/s)"] = f"{report.points / elapsed:,.0f}"
                copy_runs(src, dst, group)
            with open_store(target, readonly=True) as dst:
                for name, read in (
                    (f"chart of {args.points:,} points", lambda: chart_read(dst, big)),
                    ("50 runs x 10,000 points", lambda: group_read(dst, group)),
                ):
                    reads.setdefault(name, {})[engine] = best_of(read)
                    col[f"{name} (ms)"] = f"{reads[name][engine] * 1e3:.2f}"
                    first = next(iter(reads[name].values()))  # the first engine's (SQLite's) read
                    col[f"{name}, / SQLite"] = f"x{reads[name][engine] / first:.2f}"
            rows[engine] = col
    finally:
        if server is not None:
            server.remove()
        shutil.rmtree(root, ignore_errors=True)
    engines = list(rows)
    names = list(next(iter(rows.values())))
    width = max(len(n) for n in names)
    print()
    print(f"{'':{width}}  " + "  ".join(f"{e:>12}" for e in engines))
    for name in names:
        print(f"{name:{width}}  " + "  ".join(f"{rows[e][name]:>12}" for e in engines))


if __name__ == "__main__":
    main()
