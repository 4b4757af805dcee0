"""What wrapping costs a program that prints: ``expertrack run`` against the program alone and a naive W&B wrapper.

A child prints N step lines of the seed's gpt2-cuda format (``step  4/1000: train loss ... tok/s)``) as fast as it
can and times itself. It runs:

- alone, stdout to /dev/null (the baseline: C-like full buffering, no reader at all);
- alone on a pseudo-terminal drained by a bare reader (what any pty costs, before any tracking);
- under ``expertrack run`` (stdout on a pty, the default), to /dev/null, every line parsed and stored;
- under ``expertrack run --pipe``, the same through a pipe;
- a paced child (--work-ms of busy work per line, like a training step) alone and under ``expertrack run``;
- when wandb is installed, under a naive wrapper (the seed's wandb_train.py design) that reads a pipe and calls
  ``wandb.log`` per line in offline mode; it is slow, so it gets --wandb-lines lines.

For each: the child's own lines/s (what training would feel), lines/s end to end (until the wrapper has exited,
everything stored), both as ratios to the child alone, and the CPU time per line spent outside the child's loop
(interpreter start-up, relay, parsing, storing), which, unlike speeds, does not depend on what else the machine
runs. Goal (issue 3): under expertrack the child keeps at least 70% of its speed alone. Each setup runs --repeat
times and the best run counts (the machine may be shared).

    python benchmarks/wrapper_overhead.py [--lines 200000] [--wandb-lines 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHILD = """
import sys, time
n, out, work_s = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
start, cpu_start = time.perf_counter(), time.process_time()
for step in range(1, n + 1):
    if work_s:  # a "training step": busy, not sleeping, so any CPU the wrapper takes shows
        until = time.perf_counter() + work_s
        while time.perf_counter() < until:
            pass
    print(f"step {step:4d}/{n}: train loss {5.0 / (1 + step * 1e-4):.6f} (12.3 ms, 84000 tok/s)")
sys.stdout.flush()
with open(out, "w") as f:
    f.write(f"{time.perf_counter() - start} {time.process_time() - cpu_start}")
"""

# The design of the seed's wandb_train.py: read the child's stdout line by line, regex, wandb.log per line.
NAIVE_WANDB = r"""
import re, subprocess, sys
import wandb
STEP = re.compile(r"step\s+(\d+)/\d+: train loss (\S+) \((\S+) ms, (\d+) tok/s\)")
run = wandb.init(project="wrapper-overhead")
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
for raw in child.stdout:
    sys.stdout.buffer.write(raw)
    m = STEP.match(raw.decode("utf-8", "replace"))
    if m:
        wandb.log({"train_loss": float(m[2]), "step_time_ms": float(m[3]), "tok_per_sec": float(m[4])},
                  step=int(m[1]))
child.wait()
run.finish()
"""

# Drains a pty as fast as it can and does nothing else: the cost of a terminal, without any tracking.
BARE_PTY = """
import os, subprocess, sys
master, slave = os.openpty()
child = subprocess.Popen(sys.argv[1:], stdout=slave)
os.close(slave)
while True:
    try:
        if not os.read(master, 65536):
            break
    except OSError:
        break
child.wait()
"""

EXPERTRACK = "from expertrack.cli.main import main; main()"


@dataclass
class Result:
    name: str
    lines: int
    child_s: float
    wall_s: float
    wrapper_cpu_s: float  # CPU time of everything but the child's printing loop: startup, relay, parsing, storing
    baseline: Result | None = None  # what "vs alone" compares with; None: this is a baseline


@dataclass
class Bench:
    work: Path
    env: dict[str, str]
    repeat: int

    def best(self, name: str, wrapper: list[str], lines: int, work_ms: float = 0.0, repeat: int = 0) -> Result:
        """The child under ``wrapper`` (best of --repeat runs), output to /dev/null."""
        runs = [self.once(name, wrapper, lines, work_ms) for _ in range(repeat or self.repeat)]
        return min(runs, key=lambda r: r.child_s)

    def once(self, name: str, wrapper: list[str], lines: int, work_ms: float) -> Result:
        timing = self.work / "child-time"
        timing.unlink(missing_ok=True)
        child = [sys.executable, str(self.work / "child.py"), str(lines), str(timing), str(work_ms / 1000)]
        before = _children_cpu()
        start = time.perf_counter()
        subprocess.run(
            [*wrapper, *child], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env, check=True
        )
        wall = time.perf_counter() - start
        child_s, child_cpu = map(float, timing.read_text().split())
        return Result(name, lines, child_s, wall, _children_cpu() - before - child_cpu)


def _children_cpu() -> float:
    """User + system CPU seconds of all finished child processes so far (and theirs, once reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def check_stored(runs_dir: Path, lines: int) -> None:
    """Every line parsed and stored: each expertrack run holds ``lines`` train_loss points."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import expertrack

    for run in expertrack.Api(runs_dir).runs():
        stored = run.point_count("train_loss")
        if stored != lines:
            raise SystemExit(f"run {run.id}: {stored} of {lines} lines stored")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--wandb-lines", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--paced-lines", type=int, default=2_000, help="lines of the paced child")
    parser.add_argument("--work-ms", type=float, default=1.0, help="busy work per line of the paced child")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wrapper-overhead-") as tmp:
        work = Path(tmp)
        (work / "child.py").write_text(CHILD)
        (work / "bare_pty.py").write_text(BARE_PTY)
        (work / "naive_wandb.py").write_text(NAIVE_WANDB)
        runs = work / "runs"
        bench = Bench(work, {**os.environ, "EXPERTRACK_DIR": str(runs)}, args.repeat)
        run = [sys.executable, "-c", EXPERTRACK, "run", "--mirror", "off", "--parser", "gpt2-cuda", "--"]
        n = args.lines
        alone = bench.best("child alone", [], n)
        results = [
            alone,
            bench.best("child on a bare pty", [sys.executable, str(work / "bare_pty.py")], n),
            bench.best("expertrack run (pty)", run, n),
            bench.best("expertrack run --pipe", [*run[:-1], "--pipe", "--"], n),
        ]
        check_stored(runs, n)
        if importlib.util.find_spec("wandb") is not None:
            wandb_env = {**bench.env, "WANDB_MODE": "offline", "WANDB_DIR": str(work), "WANDB_SILENT": "true"}
            naive = Bench(work, wandb_env, 1).best(
                "naive wandb.log per line", [sys.executable, str(work / "naive_wandb.py")], args.wandb_lines
            )
            results.append(naive)
        paced_alone = bench.best(f"paced child alone ({args.work_ms} ms/line)", [], args.paced_lines, args.work_ms)
        paced = bench.best("paced child, expertrack run", run, args.paced_lines, args.work_ms)
        paced.baseline = paced_alone
        results += [paced_alone, paced]
        for result in results:
            if result is not alone and result.baseline is None and result is not paced_alone:
                result.baseline = alone
    print_table(results)


def print_table(results: list[Result]) -> None:
    header = f"{'setup':<34} {'lines':>8} {'child lines/s':>14} {'vs alone':>9} {'end-to-end lines/s':>19}"
    print(f"{header} {'vs alone':>9} {'other CPU us/line':>18}")
    for r in results:
        child, wall = r.lines / r.child_s, r.lines / r.wall_s
        base = r.baseline or r
        child_ratio = child / (base.lines / base.child_s)
        wall_ratio = wall / (base.lines / base.wall_s)
        cpu = 1e6 * r.wrapper_cpu_s / r.lines
        print(
            f"{r.name:<34} {r.lines:>8,} {child:>14,.0f} {child_ratio:>8.0%} {wall:>19,.0f} {wall_ratio:>8.0%} "
            f"{cpu:>18.1f}"
        )


if __name__ == "__main__":
    main()
