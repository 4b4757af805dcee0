"""``expertrack sync`` (stored runs into W&B) and ``expertrack import wandb DIR`` (W&B offline runs into the store).

Both are thin over ``expertrack.mirror``; see docs/wandb.md for what is sent and how arrays are mapped.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from expertrack.cli.common import RunLookupError, dir_option, make_console, open_api, resolve_run


def _import_wandb() -> Any:
    try:
        import wandb
    except ImportError as err:
        raise click.ClickException(
            f"wandb cannot be imported ({err}); install it with: pip install 'expertrack[wandb]'"
        ) from err
    return wandb


@click.command()
@click.argument("runs", nargs=-1)
@click.option("--project", "-p", default=None, help="Every run of this project.")
@click.option("--all", "all_", is_flag=True, help="Every run in the store.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Give up on W&B when one call takes longer than this many seconds.",
)
@dir_option
def sync(runs: tuple[str, ...], project: str | None, all_: bool, timeout: float, dir_: Path | None) -> None:
    """Replay runs into Weights & Biases: those never mirrored, or mirrored in part, from where they stopped.

    Name RUNS (ids, id prefixes or names), or use --project or --all. Running it again sends nothing twice.
    Under WANDB_MODE=offline it writes W&B offline run directories that `wandb sync` uploads later.
    """
    if not runs and not project and not all_:
        raise click.UsageError("name the runs to sync, or pass --project P or --all")
    api = open_api(dir_)
    try:
        chosen = [resolve_run(api, ref).id for ref in runs]
        if project or all_:
            chosen += [r.id for r in api.runs(project=project) if r.id not in chosen]
        if not chosen:
            raise RunLookupError(f"no runs in project {project!r}" if project else "the store has no runs")
        store_path = Path(api.path)
    finally:
        api.close()
    _require_wandb_setup(len(chosen))
    wandb = _import_wandb()
    _sync(store_path, chosen, wandb, timeout)


def _require_wandb_setup(runs: int) -> None:
    """Stop, with one message saying what is missing and how to set it up, when W&B cannot take any run: each
    run would otherwise fail alone with the same error (issue 18)."""
    from expertrack.mirror import wandb_configured

    if wandb_configured() is not None:
        return
    if os.environ.get("WANDB_MODE", "").strip().lower() == "disabled":
        missing = "WANDB_MODE is 'disabled'"
    else:
        missing = "W&B is not set up here: no WANDB_API_KEY, no `wandb login`, WANDB_MODE is not offline"
    raise click.ClickException(
        f"{missing}, so none of the {runs} run(s) can be sent (nothing was sent; they stay in the store). "
        "Set it up with `wandb login` (or export WANDB_API_KEY=...), then run this again; or set "
        "WANDB_MODE=offline to write W&B offline run directories and upload them later with `wandb sync DIR`."
    )


def _sync(store_path: Path, run_ids: list[str], wandb: Any, timeout: float) -> None:
    from expertrack.mirror.sync import sync_runs

    console = make_console()
    failed = hung = False
    for result in sync_runs(store_path, run_ids, wandb, stall_s=timeout):
        steps = f"{result.steps_sent} steps sent, " if result.action in ("sent", "failed") else ""
        console.print(f"{result.run_id}  {result.name}: {result.action}: {steps}{result.detail}")
        failed = failed or result.action == "failed"
        hung = hung or result.hung
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun"):
        console.print("W&B offline mode: upload the run directories later with `wandb sync DIR`.")
    if hung:
        # wandb is stuck in a thread of this process; its exit hooks would wait on it forever.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    if failed:
        raise click.exceptions.Exit(1)


@click.group("import")
def import_group() -> None:
    """Import runs from other trackers into the local store."""


@import_group.command("wandb")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@dir_option
def import_wandb(path: Path, dir_: Path | None) -> None:
    """Import W&B offline runs: PATH is a run directory (run-ID.wandb inside), a .wandb file, or a directory
    of run directories (such as ./wandb). Numeric history, config, summary, tags and notes are kept.
    """
    from expertrack.mirror.importer import find_logs, import_runs
    from expertrack.mirror.wandb_log import WandbLogError

    if not find_logs(path):
        raise click.ClickException(f"no W&B run log (run-*.wandb) found in {path}")
    _import_wandb()  # the .wandb records are decoded with W&B's own protobuf classes
    console = make_console()
    try:
        for result in import_runs(path, dir=dir_):
            if result.note:
                console.print(f"{result.run_id}  {result.name}: skipped: {result.note}")
                continue
            console.print(
                f"{result.run_id}  {result.name}: imported {result.steps} steps, {result.keys} keys "
                f"into project {result.project!r}"
            )
            if result.repeated:
                console.print(f"  left out {result.repeated} rows whose step an earlier directory of the run had")
            if result.skipped:
                left = ", ".join(f"{k} ({n})" for k, n in sorted(result.skipped.items()))
                console.print(f"  left out values that are not numbers: {left}")
    except WandbLogError as err:
        raise click.ClickException(str(err)) from err
