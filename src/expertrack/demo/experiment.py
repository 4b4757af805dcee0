"""The reference experiment end to end: corpus, three tracked runs per seed, results table, figures.

Run conventions (what figures and filters rely on):

* project ``expertrack-demo``; run name ``<variant>-s<seed>``;
* ``config["variant"]`` in ``dense`` / ``moe`` / ``moe-no-lb``, and a tag of the same name, plus ``demo`` and
  ``seed-<seed>``; ``config["model"]`` is ``dense`` or ``moe`` and ``config["load_balancing"]`` a bool;
* group ``demo-<UTC timestamp>``: one group per invocation, so ``--seeds 3`` gives one group of 9 runs and a
  second invocation in the same directory never mixes into the first one's figures.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import expertrack
from expertrack.demo import report
from expertrack.demo.corpus import Corpus, builtin_corpus, load_dir
from expertrack.demo.model import ModelConfig
from expertrack.demo.train import VARIANTS, RunResult, TrainConfig, run_config, train
from expertrack.paths import tracking_dir

PROJECT = "expertrack-demo"


@dataclass
class DemoOptions:
    dir: str | None = None  # tracking directory (default: $EXPERTRACK_DIR, else ./expertrack-runs)
    steps: int | None = None  # None: the default budget (TrainConfig.steps, or QUICK's with quick)
    device: str = "cpu"
    seeds: int = 1  # seeds 0 .. seeds-1, three runs each
    seed: int = 0  # the first seed
    data: str | None = None  # one sub-folder of text files per domain, instead of the built-in corpus
    out: str | None = None  # figures directory (default: <dir>/figures)
    quick: bool = False  # a much smaller model and budget: a smoke test of the whole pipeline
    threads: int | None = None  # torch threads on CPU (default: 1 on a machine of <= 2 cores, else 2)
    figures: bool = True


def default_config(quick: bool = False) -> TrainConfig:
    """The default budget (about 5 minutes for all three runs on 2 cores), or the quick smoke-test one."""
    if not quick:
        return TrainConfig()
    return TrainConfig(
        steps=60,
        per_domain=4,
        eval_every=20,
        eval_batches=2,
        stats_every=5,
        warmup=10,
        model=ModelConfig(n_layer=2, n_embd=32, n_head=2, block_size=64),
    )


def load_corpus(data: str | None) -> Corpus:
    """The built-in corpus, or the one in ``data`` (one folder per domain)."""
    return load_dir(data) if data else builtin_corpus()


def _threads(opts: DemoOptions) -> int:
    if opts.threads:
        return opts.threads
    # The demo's matrices are small: a second thread gains little and, when the cores are busy with anything
    # else, OpenMP's barriers make many small ops much slower (we measured 20x on a loaded 2-core machine).
    # One thread on a 2-core machine leaves the other core to the tracker's writer and the OS.
    return 1 if (os.cpu_count() or 1) <= 2 else 2


def run_demo(opts: DemoOptions, echo: report.Echo | None = None) -> list[RunResult]:
    """Train dense, MoE and MoE-without-LB for each seed, track them, print results, make the figures."""
    import torch

    console = report.console()
    echo = echo or console.print
    if opts.device == "cpu":
        torch.set_num_threads(_threads(opts))
    elif opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: PyTorch sees no CUDA device here")
    corpus = load_corpus(opts.data)
    base = default_config(opts.quick)
    if opts.steps is not None:
        base = replace(base, steps=opts.steps, eval_every=min(base.eval_every, opts.steps))
    base = replace(base, device=opts.device)
    group = "demo-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    tracking = tracking_dir(opts.dir)
    report.print_setup(echo, corpus, base, tracking, torch.get_num_threads() if opts.device == "cpu" else None)

    results: list[RunResult] = []
    started = time.perf_counter()
    seeds = range(opts.seed, opts.seed + opts.seeds)
    with report.progress(console, runs=len(seeds) * len(VARIANTS)) as bar:
        for seed in seeds:
            for variant in VARIANTS:
                cfg = replace(base, seed=seed)
                results.append(_one_run(variant, corpus, cfg, group, str(tracking), bar))
    elapsed = time.perf_counter() - started
    report.print_results(echo, results, elapsed)
    if opts.figures:
        out = Path(opts.out) if opts.out else tracking / "figures"
        report.make_figures(echo, tracking, [r.run_id for r in results if r.run_id], out)
    where = f" --dir {tracking}" if opts.dir else ""
    echo(f"runs: expertrack ls{where}   live view: expertrack ui{where}")
    return results


def _one_run(variant: str, corpus: Corpus, cfg: TrainConfig, group: str, tracking: str, bar: report.Bar) -> RunResult:
    """One tracked training run; a failure marks the run failed and propagates."""
    run = expertrack.init(
        project=PROJECT,
        name=f"{variant}-s{cfg.seed}",
        group=group,
        tags=[variant, "demo", f"seed-{cfg.seed}"],
        config=run_config(variant, cfg, corpus),
        dir=tracking,
    )
    task = bar.add_task(f"{variant} seed {cfg.seed}", total=cfg.steps, loss=float("nan"))
    try:
        result = train(variant, corpus, cfg, run, on_step=lambda s, loss: bar.update(task, advance=1, loss=loss))
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.summary["seconds"] = result.seconds
    run.summary["params/total"] = result.params["total"]
    run.summary["params/active"] = result.params["active"]
    run.finish(exit_code=0)
    return result
