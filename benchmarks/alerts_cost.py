"""What the default alert rules cost the writer, per logged point (goal, issue 17: under 10% of the writer's time).

The writer's side is driven directly, without its thread, so the timings are the writer's own work: records are
put in its queue as ``log()`` puts them, then one flush (absorb: summaries, rules; write: one SQLite
transaction) is timed. Each scenario runs with ``alerts=False`` and with the defaults (NaN on every key, stall,
and the MoE rules), interleaved in one process, on a fresh store each time; the table shows the median of
``--repeat`` runs. On a busy machine the off/on difference is mostly noise, so the last column also measures the
rules directly: the time spent inside the alert engine's calls, as a share of the same flushes' time.

    python benchmarks/alerts_cost.py [--repeat 5] [--steps 20000]

Scenarios: how many steps arrive per flush (a fast loop: many; a slow trainer: one), with 10 scalars per step,
and an MoE run whose router metrics (7 scalars, a [4, 8] tokens-per-expert array) come every 10 steps.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from expertrack.alerts import resolve
from expertrack.alerts.engine import AlertEngine, RunIdentity
from expertrack.notify import Notifier
from expertrack.records import Row
from expertrack.store import SQLiteStore
from expertrack.writer import Writer

KEYS = [f"train/metric_{i}" for i in range(10)]
MOE_KEYS = ["moe/lb_loss", "moe/z_loss", "moe/maxvio", "moe/router_entropy", "moe/router_entropy_norm",
            "moe/load_entropy", "moe/load_entropy_norm"]  # fmt: skip


@dataclass
class Scenario:
    name: str
    steps: int
    per_flush: int  # steps queued before each flush
    moe: bool = False


def records(scenario: Scenario) -> list[list[Row]]:
    """The queue contents of each flush, built before timing."""
    rng = np.random.default_rng(0)
    batches: list[list[Row]] = []
    batch: list[Row] = []
    now = time.time()
    for step in range(scenario.steps):
        values: dict[str, Any] = {k: math.sin(step * 1e-3 + i) for i, k in enumerate(KEYS)}
        if scenario.moe and step % 10 == 0:
            # healthy values (no alert fires): the cost measured is judging them, not printing alerts
            values.update({k: 0.8 + 0.1 * float(rng.random()) for k in MOE_KEYS})
            values["moe/tokens_per_expert"] = rng.integers(1, 1000, size=(4, 8))
        batch.append((step, now + step * 1e-3, values))
        if len(batch) == scenario.per_flush:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def points(batches: list[list[Row]]) -> int:
    return sum(len(values) for batch in batches for _, _, values in batch)


def timed(engine: AlertEngine, spent: list[float]) -> None:
    """Accumulate the time spent inside the engine's methods the writer calls into ``spent[0]``."""
    for name in ("scalars", "array", "tick", "take"):
        method = getattr(engine, name)

        def wrapper(*args: Any, _method: Any = method) -> Any:
            started = time.perf_counter()
            try:
                return _method(*args)
            finally:
                spent[0] += time.perf_counter() - started

        setattr(engine, name, wrapper)


def writer_seconds(batches: list[list[Row]], alerts: bool, directory: Path, spent: list[float] | None = None) -> float:
    """Seconds the writer spends absorbing and writing every batch, one flush each."""
    store = SQLiteStore(directory / "store.db")
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO runs (id, project, name, state, created_at) VALUES ('r', 'bench', 'r', 'running', ?)",
            (time.time(),),
        )
    notifier = Notifier()
    engine = AlertEngine(resolve(None), RunIdentity("r", "r", "bench"), notifier) if alerts else None
    if engine is not None and spent is not None:
        timed(engine, spent)
    writer = Writer(store, "r", notifier, alerts=engine)
    total = 0.0
    for batch in batches:
        writer.queue.extend(batch)
        started = time.perf_counter()
        writer._flush_once(len(batch))  # the work the writer thread does per cycle
        total += time.perf_counter() - started
    store.close()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    scenarios = [
        Scenario("fast loop: 1,000 steps per flush", args.steps, 1000),
        Scenario("50 steps per flush", args.steps // 4, 50),
        Scenario("slow trainer: 1 step per flush", max(200, args.steps // 40), 1),
        Scenario("MoE, 50 steps per flush", args.steps // 4, 50, moe=True),
    ]
    print(
        f"alert rules on the writer's side, median of {args.repeat} interleaved runs (python {sys.version.split()[0]})"
    )
    header = f"{'scenario':36} {'points':>8} {'off us/pt':>10} {'on us/pt':>10} {'on/off':>8}"
    print(header + f" {'rules us/pt':>12} {'share':>7}")
    for scenario in scenarios:
        batches = records(scenario)
        n = points(batches)
        off, on, rules, shares = [], [], [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                off.append(writer_seconds(batches, False, Path(tmp)) / n * 1e6)
            spent = [0.0]
            with tempfile.TemporaryDirectory() as tmp:
                total = writer_seconds(batches, True, Path(tmp), spent)
            on.append(total / n * 1e6)
            rules.append(spent[0] / n * 1e6)
            shares.append(spent[0] / total)
        base, with_rules = statistics.median(off), statistics.median(on)
        print(
            f"{scenario.name:36} {n:>8} {base:>10.3f} {with_rules:>10.3f} {with_rules / base:>8.2f}"
            f" {statistics.median(rules):>12.4f} {statistics.median(shares):>7.2%}"
        )


if __name__ == "__main__":
    main()
