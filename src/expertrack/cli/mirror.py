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


@import_group.command("megatron-tpe")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@dir_option
@click.option("--run", "run_ref", metavar="RUN", help="Add the arrays to this stored run instead of a new one.")
@click.option("--project", default="megatron", show_default=True, help="Project of the new run.")
@click.option("--name", help="Name of the new run (default: the directory's name).")
@click.option("--ranks", type=click.Choice(["sum", "concat"]), help="How to combine several rank files.")
@click.option("--rank", type=click.IntRange(min=0), help="Read only this rank's file.")
def import_megatron_tpe(
    path: Path, dir_: Path | None, run_ref: str | None, project: str, name: str | None, ranks: str | None,
    rank: int | None,
) -> None:  # fmt: skip
    """Import Megatron-LM tokens-per-expert files (tokens_per_expert/rank<N>.jsonl, written with
    --save-tokens-per-experts-interval) as per-layer arrays moe/tokens_per_expert [L, E] of a run.

    PATH is the job's --save directory, its tokens_per_expert directory, or one rank<N>.jsonl file. Several
    ranks need --ranks sum (data-parallel copies of the same experts) or --ranks concat (expert-parallel
    slices, in rank order), or --rank N. Megatron's iteration i is stored at step i - 1 (see docs/cli.md).
    """
    from expertrack.mirror.megatron_tpe import MegatronTpeError, combine

    try:
        data = combine(path, ranks=ranks, rank=rank)
    except MegatronTpeError as err:
        raise click.ClickException(str(err)) from err
    stored = {key: arrays for key, arrays in data.arrays.items() if arrays}
    if not stored:
        first = f"; the first bad line: {data.bad_lines[0]}" if data.bad_lines else ""
        raise click.ClickException(f"nothing to import from {path}: no complete iteration{first}")
    target = _megatron_into(run_ref, dir_, project, name or _job_name(path), data)
    console = make_console()
    for key, arrays in stored.items():
        shape = "x".join(str(n) for n in next(iter(arrays.values())).shape)
        layers = data.layers[key]
        console.print(
            f"{key}: {len(arrays)} steps of [{shape}] (layers {layers[0]}-{layers[-1]}) into run {target}",
            markup=False,
        )
    if data.bad_lines:
        console.print(f"skipped {len(data.bad_lines)} bad lines; the first: {data.bad_lines[0]}", markup=False)
    if data.incomplete:
        console.print(f"left out {data.incomplete} iterations missing a layer or a rank", markup=False)


def _megatron_into(run_ref: str | None, dir_: Path | None, project: str, name: str, data: Any) -> str:
    """Store the arrays into the named run, or a new finished one; return how to name it."""
    import time

    import expertrack
    from expertrack.mirror.megatron_tpe import summary
    from expertrack.paths import store_path
    from expertrack.store import SQLiteStore
    from expertrack.store.writes import add_arrays

    if run_ref is not None:
        record = resolve_run(open_api(dir_), run_ref)
        now = time.time()
        with SQLiteStore(store_path(dir_)) as store:
            for key, arrays in data.arrays.items():
                add_arrays(store, record.id, key, [(step, now, a) for step, a in sorted(arrays.items())])
        return f"{record.name} ({record.id})"
    run = expertrack.init(project=project, name=name, dir=dir_, mirror="off", config={"megatron_tpe": summary(data)})
    rows: dict[int, dict[str, Any]] = {}
    for key, arrays in data.arrays.items():
        for step, array in arrays.items():
            rows.setdefault(step, {})[key] = array
    for step in sorted(rows):
        run.log(rows[step], step=step)
    run.finish()
    return f"{run.name} ({run.id})"


def _job_name(path: Path) -> str:
    """The job's directory name: the --save directory above tokens_per_expert/ or a rank file."""
    path = path.resolve()
    if path.is_file():
        path = path.parent
    return (path.parent if path.name == "tokens_per_expert" else path).name or "megatron"
