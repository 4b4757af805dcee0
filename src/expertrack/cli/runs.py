"""``expertrack ls``, ``show``, ``export`` and ``rm``: the runs in a store, thin over ``expertrack.Api``."""

from __future__ import annotations

import fnmatch
import io
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from expertrack.capture.program import program_of
from expertrack.cli.common import (
    RunLookupError,
    add_plain_row,
    dir_option,
    environment_lines,
    epoch,
    existing_store,
    flatten,
    format_bytes,
    format_duration,
    format_time,
    format_value,
    make_console,
    open_api,
    print_pairs,
    print_rows,
    program_lines,
    resolve_run,
    run_duration,
    split_keys,
    where,
)

if TYPE_CHECKING:
    from expertrack import Api, ApiRun

# Shown by `ls` when --keys is not given: the first few of these that some listed run has.
DEFAULT_LS_KEYS = ("train/loss", "train_loss", "loss", "eval/loss", "val/loss", "val_loss", "eval_loss")
MAX_DEFAULT_KEYS = 3
STATES = ("running", "finished", "failed", "killed", "crashed")


NAME_WIDTH = 40  # ls shows at most this much of a run's name


def run_steps(run: ApiRun) -> int | None:
    """The highest step the run logged, or None before its first point."""
    step = run.last_step()
    return None if step is None else int(step)


@click.command()
@dir_option
@click.option("--project", "-p", default=None, help="Only runs of this project.")
@click.option("--state", "-s", type=click.Choice(STATES), default=None, help="Only runs in this state.")
@click.option("--keys", "-k", multiple=True, help="Metric keys to show, comma-separated (default: the losses).")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=50, show_default=True, help="Newest N runs.")
def ls(dir_: Path | None, project: str | None, state: str | None, keys: tuple[str, ...], limit: int) -> None:
    """List runs, newest first: name, id, project, state, last step, duration and key metrics' last values."""
    if existing_store(dir_) is None:
        click.echo(f"no runs in {where(dir_)}", err=True)
        return
    api = open_api(dir_)
    runs = [r for r in api.runs(project=project) if state is None or r.state == state]
    runs.sort(key=lambda r: epoch(r.created_at) or 0.0, reverse=True)
    total = len(runs)
    runs = runs[:limit]
    if not runs:
        click.echo(f"no runs in {where(dir_)} match", err=True)
        return
    columns = split_keys(keys) or _default_keys(runs)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("name", "id", "project", "state", "step", "duration", *columns):
        table.add_column(name, no_wrap=True, justify="right" if name in ("step", "duration") else "left")
    # a sweep's long run name is what gets cut (its id names the run), never the ids and values of every row
    table.columns[0].max_width = NAME_WIDTH
    table.columns[0].overflow = "ellipsis"
    now = time.time()
    for run in runs:
        values = _last_values(run, columns)
        steps = run_steps(run)
        add_plain_row(
            table,
            run.name,
            run.id,
            run.project,
            run.state,
            "-" if steps is None else str(steps),
            format_duration(run_duration(run, now)),
            *(format_value(values.get(key)) for key in columns),
        )
    console = make_console()
    console.print(table)
    if total > len(runs):
        console.print(f"({total - len(runs)} older runs not shown; raise --limit)")


def _default_keys(runs: list[ApiRun]) -> list[str]:
    """The conventional loss keys that at least one of ``runs`` has, at most a few."""
    present: set[str] = set()
    for run in runs:
        present.update(k for k in (run.summary or {}) if k in DEFAULT_LS_KEYS)
    return [k for k in DEFAULT_LS_KEYS if k in present][:MAX_DEFAULT_KEYS]


def _last_values(run: ApiRun, keys: list[str]) -> dict[str, Any]:
    """Each key's last logged value: the summary's when it keeps the last value (no history read), else the
    series' last point (define_metric(summary="min") makes the summary a minimum)."""
    summary = run.summary or {}
    values: dict[str, Any] = {}
    for key in keys:
        value = summary.get(key)
        if not _summary_keeps_last(run.metric_defs or [], key) or not isinstance(value, (int, float)):
            _steps, _times, points = run.scalars(key)
            value = points[-1] if len(points) else value
        values[key] = value
    return values


def _summary_keeps_last(metric_defs: list[dict[str, Any]], key: str) -> bool:
    """Whether the summary holds ``key``'s last value: no define_metric gave it another aggregate.

    The latest definition whose name or glob matches decides, as in ``expertrack.summary``.
    """
    for definition in reversed(metric_defs):
        name, spec = definition.get("name"), definition.get("summary")
        if spec is not None and isinstance(name, str) and (name == key or fnmatch.fnmatchcase(key, name)):
            return str(spec).strip().lower() == "last"
    return True


@click.command()
@click.argument("run_ref", metavar="RUN")
@dir_option
@click.option("--env", "show_env", is_flag=True, help="Also list the run's environment variables (redacted).")
def show(run_ref: str, dir_: Path | None, show_env: bool) -> None:
    """Show one run: header, config, summary, environment, metrics, arrays, files and W&B mirror state.

    RUN is a run id, a unique id prefix, or a run name.
    """
    api = open_api(dir_)
    run = resolve_run(api, run_ref)
    console = make_console()
    print_pairs(console, f"run {run.id}", _header(run))
    ranks = _rank_lines(run)
    if ranks:  # a ranks="all" run: each rank's own state; the series listed below are rank 0's
        print_pairs(console, "ranks (series below: rank 0's; export --rank N for another)", ranks)
    print_pairs(console, "config", flatten(dict(run.config or {})))
    print_pairs(console, "summary", flatten(dict(run.summary or {})))
    environment = dict(run.environment or {})
    program = program_of(run)  # `expertrack run`: the wrapped program, apart from expertrack's own process
    if program is not None:
        print_pairs(console, "program (wrapped by expertrack run)", program_lines(program))
    title = "environment (expertrack's process)" if program else "environment"
    print_pairs(console, title, environment_lines(environment))
    if show_env:
        print_pairs(console, "environment variables", sorted((environment.get("env") or {}).items()))
    console.print()
    print_rows(console, "metrics", ("key", "points", "last step", "last", "min", "max"), _metrics_rows(run))
    arrays = _arrays_rows(run)
    if arrays:
        console.print()
        print_rows(console, "arrays", ("key", "steps", "last step", "shape", "dtype"), arrays)
    print_pairs(console, "files", [(name, format_bytes(len(run.file(name) or b""))) for name in run.file_names()])
    _print_alerts(console, run)
    mirror = _mirror_line(api, run.id)
    if mirror:
        console.print(f"\n[bold]W&B mirror[/bold]: {escape(mirror)}", markup=True)


def _header(run: ApiRun) -> list[tuple[str, Any]]:
    """The run's identity, state and times as label-value pairs."""
    exit_status = "-" if run.exit_code is None else str(run.exit_code)
    if run.exit_signal is not None:
        exit_status += f" (signal {run.exit_signal})"
    dropped = [("dropped points", f"{run.dropped_points:,} (the store did not keep up)")] if run.dropped_points else []
    return [
        ("name", run.name),
        ("project", run.project),
        ("group", run.group or "-"),
        ("tags", ", ".join(run.tags or []) or "-"),
        ("notes", run.notes or "-"),
        ("state", run.state),
        ("exit", exit_status),
        ("started", format_time(run.created_at)),
        ("ended", format_time(run.ended_at)),
        ("duration", format_duration(run_duration(run, time.time()))),
        *dropped,
    ]


def _rank_lines(run: ApiRun) -> list[tuple[str, Any]]:
    """One line per rank of a ``ranks="all"`` run: its state, exit code, node and process; none for other runs."""
    lines = []
    for rank, seen in run.rank_states().items():
        exit_status = "" if seen.exit_code is None else f", exit {seen.exit_code}"
        lines.append((f"rank {rank}", f"{seen.state}{exit_status} on {seen.node or '?'} (pid {seen.pid})"))
    return lines


def _metrics_rows(run: ApiRun) -> list[list[str]]:
    """Scalar keys with their point counts, last step, last value and range, from one pass over the run."""
    rows = []
    for key, seen in run.scalar_overview().items():
        if seen.last_step is None:
            rows.append([key, "0", "-", "-", "-", "-"])
            continue
        last = (format_value(seen.last_step), format_value(seen.last), format_value(seen.min), format_value(seen.max))
        rows.append([key, str(seen.points), *last])
    return rows


def _arrays_rows(run: ApiRun) -> list[list[str]]:
    """Array keys with the number of steps logged and the last step's shape and dtype. Read from the arrays'
    index: a huge array costs `show` nothing."""
    rows = []
    for key, seen in run.array_overview().items():
        shape = "x".join(str(n) for n in seen.shape) or "scalar"
        rows.append([key, str(seen.steps), str(seen.last_step), shape, _dtype_name(seen.dtype)])
    return rows


def _dtype_name(dtype: str) -> str:
    """``<f4`` as NumPy names it (float32), without importing NumPy for it."""
    kinds = {"f": "float", "i": "int", "u": "uint", "b": "bool", "c": "complex"}
    kind, size = dtype[1:2], dtype[2:]
    if kind == "b":
        return "bool"
    if kind in kinds and size.isdigit():
        return f"{kinds[kind]}{int(size) * 8}"
    return dtype


def _print_alerts(console: Any, run: ApiRun) -> None:
    """The run's alerts (docs/alerts.md), when it has any."""
    from expertrack.cli.alerts import alerts_table

    found = [(run, alert) for alert in run.alerts()]
    if found:
        console.print("\n[bold]alerts[/bold]", markup=True)
        console.print(alerts_table(found, with_run=False))


def _mirror_line(api: Api, run_id: str) -> str | None:
    """The W&B mirror's state for this run, from ``expertrack.mirror`` when it is there."""
    try:
        from expertrack.mirror import mirror_status
    except ImportError:
        return None
    return mirror_status(api.store, run_id)


@click.command()
@click.argument("run_ref", metavar="RUN")
@dir_option
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "jsonl"]), default="csv", show_default=True)
@click.option("--output", "-o", default="-", show_default=True, help="File to write, or - for stdout.")
@click.option("--keys", "-k", multiple=True, help="Metric keys or globs (train/*), comma-separated; default all.")
@click.option(
    "--rank", type=int, default=None, help="The series of this rank of a ranks='all' run (default: rank 0's)."
)
def export(run_ref: str, dir_: Path | None, fmt: str, output: str, keys: tuple[str, ...], rank: int | None) -> None:
    """Export a run's scalar history, one row per step: CSV, Parquet or JSON lines.

    Columns are _step, _timestamp and one per metric key. In CSV an empty cell is a key not logged at that
    step and a logged NaN is written nan; in JSON lines a row holds only the keys logged at that step, and NaN /
    Infinity are written as Python's json module does. A run that every rank wrote (ranks="all") exports
    rank 0's series unless --rank names another.
    """
    if fmt == "parquet":
        _require_pyarrow()
    api = open_api(dir_)
    run = resolve_run(api, run_ref)
    if rank is not None:
        try:
            run = run.at_rank(rank)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    selected = _select_keys(run.metric_keys(), split_keys(keys))
    if fmt == "jsonl":
        data = _jsonl(run, selected).encode()
    else:
        frame = run.history(keys=selected)
        if fmt == "csv":
            data = _csv(run, frame, selected).encode()
        else:
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            data = buffer.getvalue()
    if output == "-":
        sys.stdout.flush()  # text already written must come first
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(output).write_bytes(data)
        click.echo(f"wrote {len(selected)} keys of run {run.id} to {output}", err=True)


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "Parquet export needs pyarrow: pip install 'expertrack[parquet]' (or use --format csv)"
        ) from None


def _select_keys(available: list[str], wanted: list[str]) -> list[str]:
    """Keys matching the requested names or globs, in the run's order; an unmatched one is an error."""
    if not wanted:
        return list(available)
    selected: list[str] = []
    for pattern in wanted:
        matches = [k for k in available if fnmatch.fnmatchcase(k, pattern)]
        if not matches:
            raise RunLookupError(f"no metric key matches {pattern!r}; the run has: {', '.join(available) or 'none'}")
        selected.extend(m for m in matches if m not in selected)
    return [k for k in available if k in selected]


def _csv(run: ApiRun, frame: Any, keys: list[str]) -> str:
    """The history as CSV, a logged NaN written ``nan`` so that it differs from a key not logged (empty)."""
    import numpy as np

    for key in keys:
        steps, _, values = run.scalars(key)
        nan_steps = steps[np.isnan(values)]
        if nan_steps.size:
            column = frame[key].astype(object)
            column[frame["_step"].isin(nan_steps)] = "nan"
            frame[key] = column
    return str(frame.to_csv(index=False))


def _jsonl(run: ApiRun, keys: list[str]) -> str:
    """A JSON object per step with the keys logged at it: a logged NaN stays NaN, a missing key is absent."""
    rows: dict[int, dict[str, Any]] = {}
    for key in keys:
        steps, times, values = run.scalars(key)
        for step, stamp, value in zip(steps.tolist(), times.tolist(), values.tolist()):
            row = rows.setdefault(step, {"_step": step, "_timestamp": stamp})
            row["_timestamp"] = min(row["_timestamp"], stamp)
            row[key] = value
    return "".join(json.dumps(rows[step]) + "\n" for step in sorted(rows))


@click.command()
@click.argument("run_refs", metavar="RUN...", nargs=-1, required=True)
@dir_option
@click.option("--yes", "-y", is_flag=True, help="Delete without asking.")
def rm(run_refs: tuple[str, ...], dir_: Path | None, yes: bool) -> None:
    """Delete runs and everything logged to them from the store, after asking.

    Each RUN is a run id, a unique id prefix, or a run name. Nothing is deleted unless every RUN is found.
    """
    api = open_api(dir_)
    runs: dict[str, ApiRun] = {}
    for ref in run_refs:
        run = resolve_run(api, ref)
        runs.setdefault(run.id, run)
    for run in runs.values():
        note = "  (still running)" if run.state == "running" else ""
        click.echo(f"  {run.id}  {run.name}  ({run.project}, {run.state}){note}")
    question = f"Delete {len(runs)} run{'s' if len(runs) != 1 else ''} from {where(dir_)}?"
    if not yes:
        click.confirm(question, default=False, abort=True)
    for run in runs.values():
        api.delete_run(run.id)
        click.echo(f"deleted {run.id} ({run.name})")
