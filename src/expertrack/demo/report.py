"""What the demo prints: its setup, a progress bar while training, the results table, and the figures."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from expertrack.demo.corpus import Corpus
from expertrack.demo.train import RunResult, TrainConfig

Echo = Callable[..., None]
SPECIALIZED = 1.5  # a domain counts as specialised when some expert gets this many times its uniform share
PLAIN_PROGRESS_EVERY_S = 5.0  # how often a line is printed when stdout is not a terminal (a log file, CI)


def console() -> Console:
    """The console everything is printed on (stdout); wide when not a terminal, so the table is never cut."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 150)


def progress(out: Console, runs: int) -> Bar:
    """One bar per run, with its latest training loss; plain lines when stdout is not a terminal (a bar redrawn
    in a log file shows nothing until the end)."""
    if not out.is_terminal:
        return PlainProgress(out, runs)
    return Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        console=out,
    )


class PlainProgress:
    """Progress as plain lines, one every PLAIN_PROGRESS_EVERY_S and one as each run ends:
    ``run 2/3 moe seed 0: step 120/300, loss 2.341, 0:45 elapsed, ETA 1:07 (all runs 4:12)``.

    The ETA assumes the steps still to come (of this run, then of all runs) take as long as this run's so far.
    Takes the calls ``rich.progress.Progress`` gets from the demo (``add_task``, ``update``, ``with``).
    """

    def __init__(self, out: Console, runs: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._out, self._runs, self._clock = out, runs, clock
        self._tasks: list[dict[str, Any]] = []
        self._last_line = clock()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: int, loss: float) -> TaskID:
        self._tasks.append({"name": description, "total": total, "done": 0, "loss": loss, "start": self._clock()})
        return TaskID(len(self._tasks) - 1)

    def update(self, task: TaskID, advance: int = 1, loss: float = math.nan) -> None:
        state = self._tasks[task]
        state["done"] += advance
        state["loss"] = loss
        now = self._clock()
        if state["done"] >= state["total"] or now - self._last_line >= PLAIN_PROGRESS_EVERY_S:
            self._last_line = now
            self._out.file.write(self.line(task, now) + "\n")
            self._out.file.flush()

    def line(self, task: int, now: float) -> str:
        """The progress line of a run at time ``now``."""
        state = self._tasks[task]
        done, total = state["done"], state["total"]
        elapsed = now - state["start"]
        per_step = elapsed / done if done else math.nan
        left = total - done
        text = f"run {task + 1}/{self._runs} {state['name']}: step {done}/{total}, loss {state['loss']:.3f}, "
        text += f"{_clock_time(elapsed)} elapsed"
        if left and done:
            later = (self._runs - task - 1) * total  # the runs to come have this run's budget
            text += f", ETA {_clock_time(left * per_step)} (all runs {_clock_time((left + later) * per_step)})"
        return text


Bar = Progress | PlainProgress


def _clock_time(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def print_setup(echo: Echo, corpus: Corpus, cfg: TrainConfig, tracking: Path, threads: int | None) -> None:
    """The corpus sizes, model and budget, and where the runs go."""
    m = cfg.model
    sizes = ", ".join(f"{n} {s['train'] / 1e3:.0f} kB + {s['val'] / 1e3:.0f} kB" for n, s in corpus.sizes().items())
    echo(f"corpus (train + validation bytes): {sizes}")
    echo(
        f"model: {m.n_layer} layers, width {m.n_embd}, {m.n_head} heads, context {m.block_size} bytes; "
        f"MoE: {m.n_experts} experts, top-{m.top_k}, expert width {m.expert_hidden} "
        f"(dense MLP {m.mlp_ratio * m.n_embd})"
    )
    where = f"{cfg.device}, {threads} thread{'s' if threads != 1 else ''}" if threads else cfg.device
    echo(
        f"budget: {cfg.steps} steps x {cfg.per_domain * len(corpus.domains)} sequences "
        f"({cfg.per_domain} per domain) on {where}; runs stored in {tracking}"
    )


def specialization(affinity: np.ndarray | None, top_k: int) -> dict[int, float]:
    """Per domain, the highest expert specialization over layers (1 = uniform routing; E/k = all tokens)."""
    if affinity is None:
        return {}
    from expertrack.moe import domain_specialization

    spec = domain_specialization(affinity, top_k)  # [L, E, D]
    return {d: float(np.nanmax(spec[..., d])) for d in range(spec.shape[-1])}


def domain_information(affinity: np.ndarray | None) -> float | None:
    """How much the expert choice says about the domain: I(expert; domain) / H(domain), mean over layers.

    0 when routing ignores the domain (uniform, or collapsed onto the same experts for every domain, where
    OLMoE's specialization still reads "above uniform"), 1 when each expert serves one domain only.
    expertrack.moe has no such summary, so it is computed here from the affinity counts [L, E, D].
    """
    if affinity is None or affinity.sum() == 0:
        return None
    joint = affinity / affinity.sum(axis=(1, 2), keepdims=True)  # P(e, d) per layer
    p_e, p_d = joint.sum(2, keepdims=True), joint.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = np.nansum(np.where(joint > 0, joint * np.log(joint / (p_e * p_d)), 0.0), axis=(1, 2))
        h_d = -np.nansum(np.where(p_d > 0, p_d * np.log(p_d), 0.0), axis=(1, 2))
    return float(np.mean(mi / np.where(h_d > 0, h_d, np.nan)))


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def results_tables(results: Sequence[RunResult], domains: Sequence[str], top_k: int) -> list[Table]:
    """Two tables that each fit 80 columns: per-domain eval loss and perplexity (and time) per run, then the
    balance metrics of its last stats window (MoE runs only)."""
    losses = Table(title="validation loss / perplexity per domain, end of training")
    losses.add_column("run")
    for d in domains:
        losses.add_column(d, justify="right")
    losses.add_column("time s", justify="right")
    for r in results:
        cells = [f"{r.variant} (seed {r.seed})"]
        cells += [f"{_fmt(r.eval_loss[d])} / {_fmt(math.exp(r.eval_loss[d]), 2)}" for d in domains]
        losses.add_row(*cells, f"{r.seconds:.0f}")
    routing = Table(title="routing, last stats window")
    routing.add_column("run")
    for col in ("MaxVio", "load H/logE", "max spec.", "I(E;D)/H(D)"):
        routing.add_column(col, justify="right")
    for r in results:
        if r.affinity is None and not r.balance:
            continue  # a dense run has no router
        spec = specialization(r.affinity, top_k)
        best = max(spec.items(), key=lambda kv: kv[1]) if spec else None
        routing.add_row(
            f"{r.variant} (seed {r.seed})",
            _fmt(r.balance.get("moe/maxvio")),
            _fmt(r.balance.get("moe/load_entropy_norm")),
            f"{best[1]:.2f} ({domains[best[0]]})" if best else "-",
            _fmt(domain_information(r.affinity)),
        )
    return [losses, routing]


def print_results(echo: Echo, results: Sequence[RunResult], elapsed: float) -> None:
    """The results table, one line per expected direction, and the total time."""
    if not results:
        return
    domains = list(results[0].eval_loss)
    top_k = 2
    for table in results_tables(results, domains, top_k):
        echo(table)
    echo(
        "MaxVio = (max - mean) / mean expert load (0 = balanced); load H/logE = entropy of the expert load, "
        "normalised (1 = balanced); max spec. = highest expert share of a domain's tokens relative to uniform "
        "routing (1 = uniform), over layers and experts; I(E;D)/H(D) = how much the expert choice tells about "
        "the domain (0 = nothing, 1 = everything), mean over layers. All from the routing of the last "
        "stats window (the last K steps)."
    )
    for line in checks(results, top_k):
        echo(line)
    echo(f"{len(results)} runs in {elapsed:.0f} s")


def checks(results: Sequence[RunResult], top_k: int = 2) -> list[str]:
    """The experiment's expected directions, each as a line saying whether this run showed it."""
    by = {(r.variant, r.seed): r for r in results}
    lines = []
    for (variant, seed), r in sorted(by.items(), key=lambda kv: kv[0][1]):
        if variant != "moe":
            continue
        nolb = by.get(("moe-no-lb", seed))
        if nolb is None or not r.balance or not nolb.balance:
            continue
        more = nolb.balance["moe/maxvio"] > r.balance["moe/maxvio"]
        less = nolb.balance["moe/load_entropy_norm"] < r.balance["moe/load_entropy_norm"]
        spec = specialization(r.affinity, top_k)
        # 1.5 x uniform: sampling noise alone rarely gets there over ~10 steps of tokens (tests use the same bar).
        above = [d for d, v in spec.items() if v > SPECIALIZED]
        lines.append(
            f"seed {seed}: without LB the load is {'less' if more and less else 'NOT less'} balanced "
            f"(MaxVio {r.balance['moe/maxvio']:.2f} -> {nolb.balance['moe/maxvio']:.2f}, load entropy "
            f"{r.balance['moe/load_entropy_norm']:.3f} -> {nolb.balance['moe/load_entropy_norm']:.3f}); "
            f"in the balanced MoE, {len(above)} of {len(spec)} domains reach {SPECIALIZED} x uniform at some expert"
        )
    return lines


def make_figures(echo: Echo, tracking: Path, run_ids: Sequence[str], out: Path) -> Any:
    """The report's five figures from these runs, via ``expertrack.figures`` (needs matplotlib)."""
    try:
        from expertrack import figures
    except ImportError as err:  # matplotlib missing: the figures extra is not installed
        echo(f"figures skipped ({err}); install the extra: pip install 'expertrack[figures]'")
        return None
    import expertrack

    api = expertrack.Api(tracking)
    try:
        runs = [api.run(run_id) for run_id in run_ids]
        made = figures.make_all(runs, out, echo=lambda line: None)
    finally:
        api.close()
    for name, why in made.skipped.items():
        echo(f"figure {name} skipped: {why}")
    written = sorted({p.parent for paths in made.written.values() for p in paths})
    echo(f"{len(made.written)} figures written to {', '.join(str(p) for p in written) or out}")
    return made
