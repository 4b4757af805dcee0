"""Chart reads from SQLite and from PostgreSQL, side by side (issue 13's goal: PostgreSQL within 2x of SQLite).

Two stores with the same runs, one a SQLite directory, the other a PostgreSQL database (``--pg URL`` of an empty
database, else a throwaway server started with tests/pg.py's fixture when Debian's ``postgresql`` is installed)
loaded from it; one reader open on each (as the dashboard keeps one), best of ``--repeat``:

- one run of ``--points`` points (one key): its chart from levels (``read_envelope`` + 600 buckets, what the
  dashboard draws) and every point (``read_scalars(times=False)``);
- ``--runs`` runs of ``--run-points`` points: each run's chart from levels and every point, read run by run
  (``read_envelope``/``read_scalars`` in a loop: a query per run) and together (``read_envelopes_many``/
  ``read_scalars_many``: one query, what the dashboard's compare and grouped charts read).

Numbers are never asserted; on a shared machine they move, so read the ratio column.

    python benchmarks/chart_reads.py [--pg URL] [--points 1000000] [--runs 50] [--run-points 10000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import expertrack  # noqa: E402
from expertrack.store.location import open_store  # noqa: E402

BUCKETS = 600


def write_runs(directory: Path, runs: int, points: int) -> list[str]:
    """``runs`` finished runs of one key ``loss`` of ``points`` points of noise."""
    values = np.random.default_rng(0).standard_normal(points).tolist()
    ids = []
    for _ in range(runs):
        run = expertrack.init(project="bench-charts", dir=directory, mirror="off", system_metrics=False, alerts=False)
        for step, value in enumerate(values):
            run.log({"loss": value}, step=step)
        run.finish()
        ids.append(run.id)
    return ids


def best_of(fn: Any, times: int) -> float:
    fn()  # the first read warms the engine's caches and psycopg's prepared statements, as a kept reader has them
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


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
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--run-points", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="expertrack-bench-charts-"))
    url, server = postgres_location(args.pg)
    try:
        big = write_runs(root / "runs", 1, args.points)[0]
        group = write_runs(root / "runs", args.runs, args.run_points)
        if url:
            from tests.pg import copy_into_postgres

            copy_into_postgres(root / "runs", url)
        one, many = f"{args.points:,} points", f"{args.runs} runs x {args.run_points:,}"
        cases = [
            (f"{one}: chart from levels", lambda s: s.read_envelope(big, "loss").chart(BUCKETS)),
            (f"{one}: every point", lambda s: s.read_scalars(big, "loss", times=False)),
            (f"{many}: charts, run by run", lambda s: [s.read_envelope(i, "loss").chart(BUCKETS) for i in group]),
            (f"{many}: charts, together", lambda s: [e.chart(BUCKETS) for e in s.read_envelopes_many(group, "loss").values()]),  # noqa: E501
            (f"{many}: every point, run by run", lambda s: [s.read_scalars(i, "loss", times=False) for i in group]),
            (f"{many}: every point, together", lambda s: s.read_scalars_many(group, "loss", times=False)),
        ]  # fmt: skip
        readers = [open_store(root / "runs", readonly=True)] + ([open_store(url, readonly=True)] if url else [])
        print(f"{'read (best of ' + str(args.repeat) + ')':<44} {'SQLite ms':>10} {'PostgreSQL ms':>14} {'ratio':>6}")
        for label, read in cases:
            ms = [best_of(lambda store=store, read=read: read(store), args.repeat) * 1e3 for store in readers]
            pg = f"{ms[1]:>14.1f} {ms[1] / ms[0]:>6.2f}" if url else f"{'-':>14} {'-':>6}"
            print(f"{label:<44} {ms[0]:>10.1f} {pg}", flush=True)
        for store in readers:
            store.close()
    finally:
        if server is not None:
            server.remove()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
