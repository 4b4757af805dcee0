"""What wrapping costs a program that prints: ``expertrack run`` against the program alone and a naive W&B wrapper.

A child prints N step lines of the seed's gpt2-cuda format (``step  4/1000: train loss ... tok/s)``) as fast as it
can and times itself. The Python child writes every line as it prints it (``PYTHONUNBUFFERED=1``, set here for
every setup: what a Python trainer run for live logs does, and what ``expertrack run`` asks of it on a pipe).
It runs:

- alone, stdout to /dev/null (the baseline, no reader at all);
- alone on a pseudo-terminal drained by a bare reader (what any pty costs, before any tracking);
- under ``expertrack run`` in each stdout mode (auto, which is ``lines`` here as output goes to /dev/null, then
  pty and pipe), to /dev/null, every line parsed and stored;
- block-buffered (``PYTHONUNBUFFERED`` unset), alone and under ``expertrack run`` (auto asks it to write per line
  again, the price of seeing each line live) and ``--stdout pipe`` (it keeps its blocks);
- when a C compiler exists, the same flood as a C program using printf (block-buffered alone; per line under
  auto, through coreutils' libstdbuf; in blocks under ``--stdout pipe``);
- a paced child (--work-ms of busy work per line, like a training step) alone and under ``expertrack run``;
- when wandb is installed, under a naive wrapper (the seed's wandb_train.py design) that reads a pipe and calls
  ``wandb.log`` per line in offline mode; it is slow, so it gets --wandb-lines lines.

For each: the child's own lines/s (what training would feel), lines/s end to end (until the wrapper has exited,
everything stored), both as ratios to the setup's baseline (the same child alone), and the CPU time per line
spent outside the child's loop (interpreter start-up, relay, parsing, storing), which, unlike speeds, does not
depend on what else the machine runs. Part of that CPU is paid once per run whatever the program prints
(interpreter start, imports, the store, describing the program, the last flush): a one-line run measures it, and
the last column takes it off each tracked setup, leaving what each line costs. Goal (issue 3): under expertrack
the child keeps at least 70% of its speed alone. Each setup runs --repeat times, the setups taking turns, and the
median run counts (the machine may be shared).

    python benchmarks/wrapper_overhead.py [--lines 200000] [--wandb-lines 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
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

# The same child as a C program: printf, no fflush, so block-buffered into a pipe or /dev/null.
CHILD_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    double start = now(CLOCK_MONOTONIC), cpu_start = now(CLOCK_PROCESS_CPUTIME_ID);
    for (int step = 1; step <= n; step++)
        printf("step %4d/%d: train loss %f (12.3 ms, 84000 tok/s)\n", step, n, 5.0 / (1 + step * 1e-4));
    fflush(stdout);
    FILE *out = fopen(argv[2], "w");
    fprintf(out, "%f %f", now(CLOCK_MONOTONIC) - start, now(CLOCK_PROCESS_CPUTIME_ID) - cpu_start);
    fclose(out);
    return 0;
}
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
# A Python child printing one line under ``expertrack run``: what every run costs once, whatever it prints
# (interpreter start, imports, the store, the program's description, the last flush).
STARTUP = "expertrack run, 1 line (start-up)"


@dataclass
class Setup:
    """One way of running the child: ``wrapper`` goes before its command line."""

    name: str
    wrapper: list[str]
    lines: int
    work_ms: float = 0.0
    program: str = "python"  # python, or c (the compiled child)
    env: dict[str, str] | None = None
    baseline: str | None = None  # the setup "vs alone" compares with; None: itself
    repeat: int | None = None  # None: --repeat
    tracked: bool = False  # under ``expertrack run``: its start-up CPU is taken off in the "net" column


@dataclass
class Result:
    setup: Setup
    child_s: float
    wall_s: float
    wrapper_cpu_s: float  # CPU time of everything but the child's printing loop: startup, relay, parsing, storing


def run_once(setup: Setup, work: Path, env: dict[str, str]) -> Result:
    """The child under the setup's wrapper, output to /dev/null: its own time, the wall time, the CPU around it."""
    timing = work / "child-time"
    timing.unlink(missing_ok=True)
    program = [str(work / "child_c")] if setup.program == "c" else [sys.executable, str(work / "child.py")]
    child = [*program, str(setup.lines), str(timing), str(setup.work_ms / 1000)]
    before = _children_cpu()
    start = time.perf_counter()
    subprocess.run(
        [*setup.wrapper, *child],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=setup.env or env,
        check=True,
    )
    wall = time.perf_counter() - start
    child_s, child_cpu = map(float, timing.read_text().split())
    return Result(setup, child_s, wall, _children_cpu() - before - child_cpu)


def _children_cpu() -> float:
    """User + system CPU seconds of all finished child processes so far (and theirs, once reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_run(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.child_s)[len(results) // 2]


def check_stored(runs_dir: Path, lines: int) -> None:
    """Every line parsed and stored: each expertrack run of the flooding child holds ``lines`` train_loss points."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import expertrack

    for run in expertrack.Api(runs_dir).runs():
        stored = run.point_count("train_loss")
        if stored != lines:
            raise SystemExit(f"run {run.id}: {stored} of {lines} lines stored")


def setups(args: argparse.Namespace, work: Path, env: dict[str, str], compiled: bool) -> list[Setup]:
    run = [sys.executable, "-c", EXPERTRACK, "run", "--mirror", "off", "--parser", "gpt2-cuda"]
    auto = f"expertrack run (auto: {_auto_mode()})"
    n, alone, paced = args.lines, "child alone", f"paced child alone ({args.work_ms} ms/line)"
    buffered_env = {k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}
    chosen = [
        Setup(alone, [], n),
        Setup("child on a bare pty", [sys.executable, str(work / "bare_pty.py")], n, baseline=alone),
        Setup(
            STARTUP,
            [*run, "--"],
            1,
            env={**env, "EXPERTRACK_DIR": str(work / "startup-runs")},  # check_stored looks at the flood's runs only
            baseline=alone,
        ),
        Setup(auto, [*run, "--"], n, baseline=alone, tracked=True),
        Setup("expertrack run --stdout pty", [*run, "--stdout", "pty", "--"], n, baseline=alone, tracked=True),
        Setup("expertrack run --stdout pipe", [*run, "--stdout", "pipe", "--"], n, baseline=alone, tracked=True),
        Setup("block-buffered child alone", [], n, env=buffered_env),
        Setup(
            "  expertrack run (auto)",
            [*run, "--"],
            n,
            env=buffered_env,
            baseline="block-buffered child alone",
            tracked=True,
        ),
        Setup(
            "  expertrack run --stdout pipe",
            [*run, "--stdout", "pipe", "--"],
            n,
            env=buffered_env,
            baseline="block-buffered child alone",
            tracked=True,
        ),
    ]
    if compiled:
        chosen += [
            Setup("C child alone (printf)", [], n, program="c"),
            Setup(
                "  C, expertrack run (auto)",
                [*run, "--"],
                n,
                program="c",
                baseline="C child alone (printf)",
                tracked=True,
            ),
            Setup(
                "  C, expertrack run --stdout pipe",
                [*run, "--stdout", "pipe", "--"],
                n,
                program="c",
                baseline="C child alone (printf)",
                tracked=True,
            ),
        ]
    chosen += [
        Setup(paced, [], args.paced_lines, args.work_ms),
        Setup(
            "paced child, expertrack run (auto)",
            [*run, "--"],
            args.paced_lines,
            args.work_ms,
            env={**env, "EXPERTRACK_DIR": str(work / "paced-runs")},  # check_stored looks at the flood's runs only
            baseline=paced,
            tracked=True,
        ),
    ]
    if importlib.util.find_spec("wandb") is not None:
        wandb_env = {**env, "WANDB_MODE": "offline", "WANDB_DIR": str(work), "WANDB_SILENT": "true"}
        naive = [sys.executable, str(work / "naive_wandb.py")]
        chosen.append(
            Setup("naive wandb.log per line", naive, args.wandb_lines, env=wandb_env, baseline=alone, repeat=1)
        )
    return chosen


def _auto_mode() -> str:
    """What ``--stdout auto`` becomes for a wrapper whose output goes to /dev/null (not a terminal)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from expertrack.capture.child import find_libstdbuf

    return "lines" if find_libstdbuf() is not None else "pty"


def compile_c_child(work: Path) -> bool:
    """Build the C child; False (its rows are left out) where no C compiler exists."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return False
    (work / "child.c").write_text(CHILD_C)
    subprocess.run([compiler, "-O2", "-o", str(work / "child_c"), str(work / "child.c")], check=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--wandb-lines", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--paced-lines", type=int, default=5_000, help="lines of the paced child")
    parser.add_argument("--work-ms", type=float, default=1.0, help="busy work per line of the paced child")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wrapper-overhead-") as tmp:
        work = Path(tmp)
        (work / "child.py").write_text(CHILD)
        (work / "bare_pty.py").write_text(BARE_PTY)
        (work / "naive_wandb.py").write_text(NAIVE_WANDB)
        env = {**os.environ, "EXPERTRACK_DIR": str(work / "runs"), "PYTHONUNBUFFERED": "1"}
        chosen = setups(args, work, env, compile_c_child(work))
        runs: dict[str, list[Result]] = {setup.name: [] for setup in chosen}
        # round robin, so a change in the machine's load falls on every setup alike
        for round_ in range(args.repeat):
            for setup in chosen:
                if round_ < (setup.repeat or args.repeat):
                    runs[setup.name].append(run_once(setup, work, env))
        check_stored(work / "runs", args.lines)
    print_table({name: median_run(results) for name, results in runs.items()})


def print_table(results: dict[str, Result]) -> None:
    header = f"{'setup':<34} {'lines':>8} {'child lines/s':>14} {'vs alone':>9} {'end-to-end lines/s':>19}"
    print(f"{header} {'vs alone':>9} {'other CPU us/line':>18} {'net of start-up':>16}")
    startup_s = results[STARTUP].wrapper_cpu_s
    for name, r in results.items():
        lines = r.setup.lines
        base = results[r.setup.baseline] if r.setup.baseline else r
        child, wall = lines / r.child_s, lines / r.wall_s
        child_ratio = child / (base.setup.lines / base.child_s)
        wall_ratio = wall / (base.setup.lines / base.wall_s)
        cpu = 1e6 * r.wrapper_cpu_s / lines
        net = f"{1e6 * (r.wrapper_cpu_s - startup_s) / lines:.1f}" if r.setup.tracked else ""
        print(
            f"{name:<34} {lines:>8,} {child:>14,.0f} {child_ratio:>8.0%} {wall:>19,.0f} {wall_ratio:>8.0%} {cpu:>18.1f}"
            f" {net:>16}"
        )


if __name__ == "__main__":
    main()
