"""``expertrack figures``: the report's five figures from stored runs, thin over ``expertrack.figures``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from expertrack.cli.common import RunLookupError, dir_option, open_api, resolve_run, split_keys

FIGURE_NAMES = ("loss_curves", "specialization", "ablation_lb", "domain_eval", "router_entropy")


def _choose_runs(api: Any, project: str | None, group: str | None, refs: list[str]) -> list[Any]:
    """The named runs, else every run of ``project`` (and ``group``); the store must then hold one project."""
    if refs:
        return list({run.id: run for run in (resolve_run(api, ref) for ref in refs)}.values())
    runs = list(api.runs(project=project, filters={"group": group} if group else None))
    if not runs:
        where = " and ".join(f"{k} {v!r}" for k, v in (("project", project), ("group", group)) if v)
        raise RunLookupError(f"no runs in {where or 'the store'}; see `expertrack ls`")
    projects = sorted({run.project for run in runs})
    if project is None and len(projects) > 1:
        raise RunLookupError(f"runs of several projects ({', '.join(projects)}); choose one with --project")
    return runs


def _overrides(api: Any, runs: list[Any], dense: list[str], moe: list[str], no_lb: list[str]) -> dict:
    """Variant overrides as run ids; a named run not among ``runs`` is added to them."""
    overrides: dict[str, list[str]] = {}
    for variant, refs in (("dense", dense), ("moe", moe), ("moe-no-lb", no_lb)):
        for ref in refs:
            run = resolve_run(api, ref)
            if run.id not in {r.id for r in runs}:
                runs.append(run)
            overrides.setdefault(variant, []).append(run.id)
    return overrides


@click.command()
@dir_option
@click.option("--project", "-p", default=None, help="Runs of this project (needed when the store has several).")
@click.option("--group", "-g", default=None, help="Only runs of this group (e.g. one `expertrack demo` invocation).")
@click.option("--runs", "run_refs", multiple=True, help="Only these runs: names, ids or id prefixes (comma-separated).")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("figures-out"),
    show_default=True,
    help="Directory the figures, their CSV data and JSON sources go to.",
)
@click.option("--format", "formats", default="pdf,png", show_default=True, help="Any of pdf, png, svg.")
@click.option("--only", multiple=True, help=f"Only these figures (names or 1-5): {', '.join(FIGURE_NAMES)}.")
@click.option("--dense", multiple=True, help="Treat these runs as the dense baseline.")
@click.option("--moe", multiple=True, help="Treat these runs as MoE with load balancing.")
@click.option("--no-lb", "no_lb", multiple=True, help="Treat these runs as MoE without load balancing.")
@click.option(
    "--group-by",
    type=click.Choice(["variant", "group", "run"]),
    default="variant",
    show_default=True,
    help="What one legend entry aggregates: a variant's runs, a group's runs, or one run.",
)
@click.option(
    "--x",
    "x_axis",
    type=click.Choice(["step", "tokens"]),
    default="step",
    show_default=True,
    help="x-axis of the curves (tokens need tokens_per_step or batch_size and block_size in config).",
)
@click.option(
    "--smooth",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.0,
    show_default=True,
    help="EMA weight for the training loss; the raw curve stays faint behind.",
)
@click.option(
    "--heatmap-run",
    default=None,
    help="Run of the specialisation heatmap: name, id or id prefix (default: the first MoE run).",
)
@click.option("--layer", type=int, default=None, help="Heatmap layer (default: every layer).")
@click.option("--step", type=int, default=None, help="Heatmap step: the last logged at or before it (default: last).")
@click.option(
    "--normalize",
    type=click.Choice(["domain", "expert", "none"]),
    default="domain",
    show_default=True,
    help="Heatmap cells: share of each domain's tokens, of each expert's tokens, or raw counts.",
)
def figures(
    dir_: Path | None,
    project: str | None,
    group: str | None,
    run_refs: tuple[str, ...],
    out: Path,
    formats: str,
    only: tuple[str, ...],
    dense: tuple[str, ...],
    moe: tuple[str, ...],
    no_lb: tuple[str, ...],
    group_by: str,
    x_axis: str,
    smooth: float,
    heatmap_run: str | None,
    layer: int | None,
    step: int | None,
    normalize: str,
) -> None:
    """Make the report's figures from stored runs, each with the CSV of what it plots and a JSON of its sources.

    Runs are grouped into dense, MoE and MoE-without-load-balancing by config "variant", tags, group or model
    config (override with --dense/--moe/--no-lb); runs of one variant are seeds, drawn as mean and spread.
    A figure whose metrics are missing is skipped with a message; the others are still made. Exits 1 when
    no figure could be made or one failed.
    """
    try:
        from expertrack import figures as figs
    except ImportError as err:
        raise click.ClickException(f"figures need matplotlib: pip install 'expertrack[figures]' ({err})") from err
    api = open_api(dir_)
    runs = _choose_runs(api, project, group, split_keys(run_refs))
    overrides = _overrides(api, runs, split_keys(dense), split_keys(moe), split_keys(no_lb))
    if heatmap_run is not None:  # named like any RUN (unknown or ambiguous: exit 2); added if not selected
        chosen = resolve_run(api, heatmap_run)
        if chosen.id not in {r.id for r in runs}:
            runs.append(chosen)
        heatmap_run = chosen.id
    options = figs.FigureOptions(
        x=x_axis, smooth=smooth, heatmap_run=heatmap_run, layer=layer, step=step, normalize=normalize
    )
    try:
        selection = figs.select(runs, overrides, group_by=group_by)
        made = figs.make_all(selection, out, split_keys(formats), split_keys(only), options, echo=click.echo)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    failed = f", {len(made.failed)} failed" if made.failed else ""
    click.echo(f"{len(made.written)} figure(s) written to {out}/, {len(made.skipped)} skipped{failed}")
    if not made.written or made.failed:
        raise SystemExit(1)
