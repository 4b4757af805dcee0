"""What the demo prints (issue 18): results tables that fit an 80-column terminal, and plain progress lines when
stdout is not a terminal."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from expertrack.demo import report
from expertrack.demo.train import RunResult

DOMAINS = ["code", "math", "prose"]


def result(variant: str, seed: int) -> RunResult:
    moe = variant != "dense"
    rng = np.random.default_rng(seed)
    return RunResult(
        variant=variant,
        seed=seed,
        run_id=None,
        run_name=f"{variant}-s{seed}",
        eval_loss={d: 2.0 + 0.1 * i for i, d in enumerate(DOMAINS)},
        train_loss_first=5.5,
        train_loss_last=2.1,
        balance={"moe/maxvio": 0.31, "moe/load_entropy_norm": 0.987} if moe else {},
        affinity=rng.integers(1, 100, size=(2, 8, 3)).astype(float) if moe else None,
        params={"total": 1000, "active": 500},
        seconds=123.4,
        cpu_seconds=120.0,
    )


def test_results_fit_80_columns_with_every_header_whole() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False, color_system=None)
    results = [result(v, s) for s in (0, 1) for v in ("dense", "moe", "moe-no-lb")]
    report.print_results(console.print, results, elapsed=700.0)
    lines = out.getvalue().splitlines()
    tables = lines[: next(i for i, line in enumerate(lines) if line.startswith("MaxVio ="))]
    assert max(len(line) for line in tables) <= 80, "\n".join(tables)
    text = "\n".join(tables)
    for header in ("run", *DOMAINS, "time s", "MaxVio", "load H/logE", "max spec.", "I(E;D)/H(D)"):
        assert header in text  # not cut to "load H/l…"
    assert "moe-no-lb (seed 1)" in text and "2.000 / 7.39" in text


def test_plain_progress_prints_a_line_every_few_seconds_and_when_a_run_ends() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = report.PlainProgress(Console(file=out), runs=3, clock=lambda: now[0])
    task = bar.add_task("dense seed 0", total=100, loss=float("nan"))
    for step in range(100):
        now[0] += 0.5  # half a second a step
        bar.update(task, advance=1, loss=3.0 - step / 100)
    lines = out.getvalue().splitlines()
    assert len(lines) == 100 * 0.5 / report.PLAIN_PROGRESS_EVERY_S  # the last one is the run's end
    assert lines[0] == "run 1/3 dense seed 0: step 10/100, loss 2.910, 0:05 elapsed, ETA 0:45 (all runs 2:25)"
    assert lines[-1] == "run 1/3 dense seed 0: step 100/100, loss 2.010, 0:50 elapsed"


@pytest.mark.parametrize("terminal", [True, False])
def test_a_bar_on_a_terminal_and_lines_elsewhere(terminal: bool) -> None:
    console = Console(file=io.StringIO(), force_terminal=terminal)
    assert isinstance(report.progress(console, runs=3), report.PlainProgress) is not terminal
