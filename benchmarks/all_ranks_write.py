"""``ranks="all"``: what it costs that K ranks write one run of one store instead of K runs (issue 15).

K processes start together and each logs ``--steps`` steps of ``--keys`` float scalars as fast as it can, then
finishes (the last flush included). Two layouts, alternated ``--repeat`` times so that machine load hits both:

- ``all``: one run, every process a rank of it (``init(rank=r, world_size=K, ranks="all", id=...)``);
- ``separate``: K runs of one store, one per process (what K single-process jobs would write).

Both write the same points into the same SQLite file, so the difference is the run's shared rows (each rank's
keys and its ``run_ranks`` heartbeat, rank 0's run row). Printed: the median wall-clock seconds from start to the
last process's exit, and the ratio all / separate (goal: about 1; each writer's flushes queue on the store's one
write lock in both layouts).

    python benchmarks/all_ranks_write.py [--ranks 2,4] [--steps 2000] [--keys 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rank(directory: str, rank: int, world: int, layout: str, steps: int, keys: int, start: float) -> None:
    sys.path.insert(0, str(REPO / "src"))
    import expertrack

    while time.time() < start:  # every process begins logging at the same moment
        time.sleep(0.001)
    if layout == "all":
        run = expertrack.init(
            project="bench", id="shared", rank=rank, world_size=world, ranks="all", dir=directory,
            mirror="off", system_metrics=False, alerts=False,
        )  # fmt: skip
    else:
        run = expertrack.init(project="bench", dir=directory, mirror="off", system_metrics=False, alerts=False)
    names = [f"train/k{i}" for i in range(keys)]
    for step in range(steps):
        run.log({name: step * 0.5 + i for i, name in enumerate(names)}, step=step)
    run.finish()


def measure(world: int, layout: str, steps: int, keys: int) -> float:
    """Seconds from the common start to the last of ``world`` processes' exit, in a fresh store."""
    directory = tempfile.mkdtemp(prefix="expertrack-bench-ranks-")
    context = multiprocessing.get_context("spawn")
    start = time.time() + 2.0  # time for the interpreters to start
    procs = [
        context.Process(target=_rank, args=(directory, r, world, layout, steps, keys, start)) for r in range(world)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"a {layout} process exited with {proc.exitcode}")
    return time.time() - start


def main() -> None:
    """Print the table (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="2,4")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'ranks':>5}  {'all (s)':>8}  {'separate (s)':>12}  {'all / separate':>14}")
    for world in (int(w) for w in args.ranks.split(",")):
        times: dict[str, list[float]] = {"all": [], "separate": []}
        for _ in range(args.repeat):
            for layout in ("all", "separate"):
                times[layout].append(measure(world, layout, args.steps, args.keys))
        together, apart = statistics.median(times["all"]), statistics.median(times["separate"])
        print(f"{world:>5}  {together:>8.2f}  {apart:>12.2f}  {together / apart:>14.2f}")


if __name__ == "__main__":
    main()
