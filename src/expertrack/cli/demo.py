"""``expertrack demo``: the reference experiment, dense vs MoE vs MoE without load balancing (docs/demo.md)."""

from __future__ import annotations

from pathlib import Path

import click

from expertrack.cli.common import dir_option


@click.command("demo")
@dir_option
@click.option(
    "--steps", type=click.IntRange(min=1), default=None, help="Optimizer steps per run (default 300; 60 with --quick)."
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Seeds (3 runs each).")
@click.option("--seed", type=int, default=0, show_default=True, help="The first seed.")
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Your own corpus: one sub-folder of text files per domain (domain = folder name).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the figures (default: <dir>/figures).",
)
@click.option("--quick", is_flag=True, help="A tiny model and budget: checks the whole pipeline in seconds.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads (default: 1 on a machine with 2 cores or fewer, else 2).",
)
@click.option("--no-figures", is_flag=True, help="Skip the figures.")
def demo(
    dir_: Path | None,
    steps: int | None,
    device: str,
    seeds: int,
    seed: int,
    data: Path | None,
    out: Path | None,
    quick: bool,
    threads: int | None,
    no_figures: bool,
) -> None:
    """Run the reference experiment: dense vs MoE vs MoE without load balancing, on code, math and prose.

    Builds a byte-level corpus from the Python installation itself (nothing is downloaded), trains three tiny
    transformers with the same data, seed and budget, tracks them in the store, prints a results table and
    writes the report's five figures. The defaults take about 5 minutes on 2 CPU cores.
    """
    try:
        from expertrack.demo.experiment import DemoOptions, run_demo
    except ImportError as err:  # torch is an optional extra
        raise click.ClickException(f"{err}; the demo needs PyTorch: pip install 'expertrack[moe]'") from err
    options = DemoOptions(
        dir=str(dir_) if dir_ else None,
        steps=steps,
        device=device,
        seeds=seeds,
        seed=seed,
        data=str(data) if data else None,
        out=str(out) if out else None,
        quick=quick,
        threads=threads,
        figures=not no_figures,
    )
    try:
        run_demo(options)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        raise click.ClickException(str(err)) from err
