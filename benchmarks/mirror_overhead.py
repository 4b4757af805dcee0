"""What the live W&B mirror costs a training loop: the same loop with the mirror off and on (W&B offline mode).

Each step does about 1 ms of work that releases the interpreter lock (``time.sleep(0.001)`` by default, as a
GPU step waits on the device; ``--work numpy`` for single-threaded NumPy matmuls instead) and logs 10 scalars. Every
measurement is a fresh child process; the order is off, on, on, off (...) so drift on a shared machine falls
on both sides. Before the next measurement starts, the mirror of the previous one must have finished, so a
mirror never competes with the next loop. Run it::

    python benchmarks/mirror_overhead.py              # 20,000 steps, 2 rounds
    python benchmarks/mirror_overhead.py --steps 2000 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np
import expertrack

steps, mirror, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
a = np.random.rand(96, 96)
reps = 1
if work == "numpy":  # calibrate: as many single-threaded 96x96 matmuls as take about 1 ms here
    t = time.perf_counter()
    for _ in range(200):
        a @ a
    reps = max(1, round(0.001 / ((time.perf_counter() - t) / 200)))

def step_work():
    if work == "sleep":
        time.sleep(0.001)
    else:
        for _ in range(reps):
            a @ a  # NumPy releases the interpreter lock inside the matmul

run = expertrack.init(project="bench", name=f"overhead-{mirror}", mirror=mirror)
start, cpu = time.perf_counter(), time.process_time()
for s in range(steps):
    step_work()
    run.log({f"metric/{i}": s * 0.001 + i for i in range(10)})
loop = time.perf_counter() - start
run.finish()
total = time.perf_counter() - start
cpu = time.process_time() - cpu  # the training process's own CPU (all its threads: loop and writer)
print(json.dumps({"run_id": run.id, "loop_s": loop, "total_s": total, "cpu_s": cpu}))
"""


def measure(steps: int, mirror: str, work: str, tracking_dir: Path, wandb_dir: Path) -> dict[str, float]:
    """Run the loop once in a child; with the mirror on, also wait for the mirror to finish."""
    env = dict(os.environ)
    env.update(EXPERTRACK_DIR=str(tracking_dir), WANDB_MODE="offline", WANDB_DIR=str(wandb_dir), WANDB_SILENT="true")
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"  # one core of work per step, like the sleep variant; no BLAS thread pool contention
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(steps), mirror, work], env=env, check=True, capture_output=True, text=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    ended = time.perf_counter()
    if mirror != "off":
        result["mirror_done_s"] = wait_for_mirror(tracking_dir, result["run_id"]) - ended
    return result


def wait_for_mirror(tracking_dir: Path, run_id: str, timeout: float = 900) -> float:
    """Block until the run's mirror has completed (or stopped); return the time it did."""
    from expertrack.mirror.locks import is_held
    from expertrack.mirror.state import read_state
    from expertrack.paths import store_path
    from expertrack.store import SQLiteStore

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with SQLiteStore(store_path(tracking_dir), readonly=True) as store:
            state = read_state(store, run_id)
        if state is not None and not is_held(store_path(tracking_dir), run_id):
            if state.state != "complete":
                print(f"warning: mirror of {run_id} ended {state.state}: {state.reason}", file=sys.stderr)
            return time.perf_counter()
        time.sleep(0.2)
    raise TimeoutError(f"the mirror of {run_id} did not finish in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs, in the order off, on, on, off, ...")
    parser.add_argument("--work", choices=["sleep", "numpy"], default="sleep")
    args = parser.parse_args()
    order = []
    for r in range(args.rounds):
        order += ["off", "wandb"] if r % 2 == 0 else ["wandb", "off"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mirror-bench-") as tmp:
        for i, mirror in enumerate(order):
            result = measure(args.steps, mirror, args.work, Path(tmp) / "runs", Path(tmp) / f"wandb{i}")
            rows.append((mirror, result))
            print(
                f"  {mirror:5s} loop {result['loop_s']:.2f} s, finish {result['total_s'] - result['loop_s']:.2f} s"
                + (f", mirror done {result['mirror_done_s']:.1f} s after" if "mirror_done_s" in result else ""),
                file=sys.stderr,
            )
    report(rows, args)


def report(rows: list[tuple[str, dict[str, float]]], args: argparse.Namespace) -> None:
    """Print the table: per mode, the mean loop, total and CPU times, and the on/off ratio."""
    off = [r for m, r in rows if m == "off"]
    on = [r for m, r in rows if m != "off"]

    def mean(rs: list[dict[str, float]], field: str) -> float:
        return statistics.mean(r[field] for r in rs)

    print(
        f"\n{args.steps} steps, {args.work} work of ~1 ms per step, 10 scalars logged per step, "
        f"{len(off)} runs per mode, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| mirror | loop (s) | loop + finish (s) | ms per step | training CPU (s) | mirror done after finish (s) |")
    print("|---|---|---|---|---|---|")
    for label, rs in (("off", off), ("on (W&B offline)", on)):
        lag = f"{mean(rs, 'mirror_done_s'):.1f}" if rs is on else "-"
        print(
            f"| {label} | {mean(rs, 'loop_s'):.2f} | {mean(rs, 'total_s'):.2f} | "
            f"{mean(rs, 'loop_s') * 1000 / args.steps:.3f} | {mean(rs, 'cpu_s'):.2f} | {lag} |"
        )
    ratios = [mean(on, f) / mean(off, f) for f in ("loop_s", "total_s", "cpu_s")]
    print(f"| ratio on/off | {ratios[0]:.3f} | {ratios[1]:.3f} | | {ratios[2]:.3f} | |")
    spread = {m: [round(r["loop_s"], 2) for mm, r in rows if mm == m] for m in ("off", "wandb")}
    print(f"\nloop times per run (s): off {spread['off']}, on {spread['wandb']}")


if __name__ == "__main__":
    main()
