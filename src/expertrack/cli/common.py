"""What the run commands share: the ``--dir`` option, opening the store, naming a run, formatting.

Errors a user can fix (no store, an unknown or ambiguous run) exit with status 2 and say what to do; they
never print a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shlex
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from expertrack.cli.params import LOCATION
from expertrack.paths import store_path

if TYPE_CHECKING:
    from expertrack import Api, ApiRun

F = TypeVar("F", bound=Callable[..., Any])

# Width used when output is not a terminal (a pipe, a file, a test): wide enough that ids are never cut.
PIPE_WIDTH = 200


class RunLookupError(click.ClickException):
    """A user-fixable problem naming a run or a store; exits with status 2 like a usage error."""

    exit_code = 2


def dir_option(command: F) -> F:
    """The ``--dir`` option of every run command, resolved like the library (then EXPERTRACK_DIR, then ./); a
    reading command also accepts a ``postgresql://`` URL (a shared store)."""
    return click.option(
        "--dir",
        "dir_",
        type=LOCATION,
        default=None,
        help="Tracking directory or postgresql:// URL (default: $EXPERTRACK_DIR, else ./expertrack-runs).",
    )(command)


def where(dir_: Path | str | None) -> str:
    """The store a command reads, as it may be printed: the tracking directory, or the URL without its password."""
    from expertrack.store.location import describe, reading_location

    return describe(reading_location(dir_))


def make_console(stderr: bool = False) -> Console:
    """A rich console on the current stdout (or stderr), wide when not a terminal so pipes keep whole ids."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def existing_store(dir_: Path | str | None) -> Path | str | None:
    """The tracking directory if it holds a store (a ``postgresql://`` URL is taken as one: opening it says
    more); None when there is none (it is never created here)."""
    from expertrack.store.location import reading_location

    location = reading_location(dir_)
    if isinstance(location, str):
        return location
    return location if store_path(location).is_file() else None


def open_api(dir_: Path | str | None) -> Api:
    """An ``Api`` on an existing store, or a clear "no runs in DIR" error (exit 2); a store that cannot be opened
    (a broken file, an unreachable server, wrong credentials) exits 1 with the reason."""
    from expertrack import Api
    from expertrack.errors import StoreError

    location = existing_store(dir_)
    if location is None:
        raise RunLookupError(f"no runs in {where(dir_)} (no store there; pass --dir or set EXPERTRACK_DIR)")
    api = Api(location)
    try:
        api.store  # noqa: B018 - opened now, so a broken file is reported here and not as a traceback later
    except StoreError as err:
        if isinstance(location, str):  # the message names the location (without its password) already
            raise click.ClickException(str(err)) from err
        raise click.ClickException(f"cannot open the store in {location}: {err}") from err
    return api


def resolve_run(api: Api, ref: str) -> ApiRun:
    """The run named by id, unique id prefix, or name; exits 2 listing candidates if unknown or ambiguous."""
    from expertrack.errors import AmbiguousRunError, RunNotFoundError

    try:
        return api.run(ref)
    except AmbiguousRunError as err:
        lines = [f"{ref!r} matches {len(err.candidates)} runs; name one by its id:"]
        lines += [f"  {run_id}  {name}  ({project})" for run_id, name, project in err.candidates]
        raise RunLookupError("\n".join(lines)) from err
    except RunNotFoundError as err:
        raise RunLookupError(_not_found_message(api, ref)) from err


def _not_found_message(api: Api, ref: str, shown: int = 10) -> str:
    """'no run matches' plus the most recent runs, so the user sees what they could have meant."""
    runs = sorted(api.runs(), key=lambda r: epoch(r.created_at) or 0.0, reverse=True)
    if not runs:
        return f"no run matches {ref!r}: the store is empty"
    lines = [f"no run matches {ref!r} (an id, a unique id prefix, or a name). Recent runs:"]
    lines += [f"  {r.id}  {r.name}  ({r.project})" for r in runs[:shown]]
    if len(runs) > shown:
        lines.append(f"  ... and {len(runs) - shown} more: see `expertrack ls`")
    return "\n".join(lines)


def split_keys(values: Iterable[str] | str | None) -> list[str]:
    """Keys from options like ``--keys a,b --keys c``: split on commas, blanks dropped, first order kept."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    keys: list[str] = []
    for value in values:
        for key in value.split(","):
            key = key.strip()
            if key and key not in keys:
                keys.append(key)
    return keys


def epoch(value: Any) -> float | None:
    """Unix seconds from a float or a datetime (whichever the run object gives), or None."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


def format_time(value: Any) -> str:
    """A local date and time to the second, or '-'."""
    seconds = epoch(value)
    if seconds is None:
        return "-"
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12.3s``, or '-'."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def run_duration(run: ApiRun, now: float) -> float | None:
    """Seconds from creation to end, to ``now`` for a run still running, or to its last sign of life (the
    writer's heartbeat) for one that crashed."""
    start = epoch(run.created_at)
    if start is None:
        return None
    end = epoch(run.ended_at)
    if end is None:
        end = now if run.state == "running" else epoch(getattr(run, "heartbeat_at", None))
    return None if end is None else max(0.0, end - start)


def format_value(value: Any) -> str:
    """A metric value for a table: 4-5 significant digits, NaN and inf spelled out, other types as text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) or hasattr(value, "dtype"):
        number = float(value)
        if math.isnan(number):
            return "nan"
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
        return f"{number:.5g}"
    if isinstance(value, (list, tuple, dict)):
        return _flow(value)
    return str(value)


_PLAIN_TEXT = re.compile(r"[^\s,\[\]{}:\"'#][^,\[\]{}\"]*(?<!\s)")


def _flow(value: Any) -> str:
    """A list or dict as a user writes one in a YAML file or a Hydra override: ``[code, math, prose]``,
    ``{lr: 0.0003, warmup: 30}``; text is quoted only where it would read otherwise (``"a, b"``)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(str(key))}: {_flow(item)}" for key, item in value.items()) + "}"
    if isinstance(value, str):
        return value if _PLAIN_TEXT.fullmatch(value) and ": " not in value else json.dumps(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)  # null, true, false
    return format_value(value)


def format_bytes(size: int) -> str:
    """``532 B``, ``12.4 KB``, ``3.1 MB``."""
    amount = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GB"


def flatten(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as sorted ``a/b`` key-value pairs (the same separator as logged metric names)."""
    items: list[tuple[str, Any]] = []
    for key in sorted(mapping, key=str):
        value = mapping[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items.extend(flatten(value, f"{name}/"))
        else:
            items.append((name, value))
    return items


def environment_lines(env: dict[str, Any]) -> list[tuple[str, Any]]:
    """The captured environment, one readable line per part (see expertrack.environment)."""
    lines: list[tuple[str, Any]] = []
    if env.get("command"):
        lines.append(("command", shlex.join(str(a) for a in env["command"])))
    for label in ("cwd", "executable"):
        if env.get(label):
            lines.append((label, env[label]))
    git = env.get("git") or {}
    if git.get("commit"):
        dirty = " (dirty)" if git.get("dirty") else ""
        where = f" on {git['branch']}" if git.get("branch") else ""
        lines.append(("git", f"{git['commit']}{dirty}{where}"))
        if git.get("remote"):
            lines.append(("git remote", git["remote"]))
    if env.get("host"):
        user = f"{env['user']}@" if env.get("user") else ""
        pid = f" (pid {env['pid']})" if env.get("pid") else ""
        lines.append(("host", f"{user}{env['host']}{pid}"))
    if env.get("python"):
        lines.append(("python", f"{env['python']} on {env.get('platform', '?')}"))
    if env.get("packages"):
        lines.append(("packages", ", ".join(f"{k} {v}" for k, v in sorted(env["packages"].items()))))
    if env.get("gpus"):
        lines.append(("gpus", ", ".join(env["gpus"])))
    ranks = env.get("distributed") or {}
    if ranks:  # a distributed job: which process recorded the run (see docs/distributed.md)
        local = f", local rank {ranks['local_rank']}" if ranks.get("local_rank") is not None else ""
        lines.append(
            (
                "distributed",
                f"rank {ranks.get('rank')} of {ranks.get('world_size')} ({ranks.get('source')}) on "
                f"{ranks.get('node')}{local}; recording ranks: {ranks.get('ranks')}",
            )
        )
    return lines


def program_lines(program: dict[str, Any]) -> list[tuple[str, Any]]:
    """A wrapped program's description (``expertrack.capture.program``), one readable line per part."""
    lines: list[tuple[str, Any]] = []
    if program.get("command"):
        lines.append(("command", shlex.join(str(a) for a in program["command"])))
    lines.append(("executable", program.get("executable") or "(not found on PATH)"))
    python = program.get("python") or {}
    if python:
        name = python.get("implementation", "Python")
        lines.append(("python", f"{name} {python.get('version', '?')} at {python.get('executable', '?')}"))
        packages = python.get("packages") or {}
        lines.append(("packages", ", ".join(f"{k} {v}" for k, v in packages.items()) or "(none)"))
    if program.get("python_error"):
        lines.append(("python", f"could not ask the interpreter: {program['python_error']}"))
    return lines


# Past this many rows a section is written as plain aligned text: rich lays out a table at about 0.3 ms a row, so
# `show` of a run with 100,000 keys spent minutes in layout alone.
RICH_ROWS = 500
PLAIN_MAX_WIDTH = 60  # plain columns are at most this wide; a longer cell overflows its own row only


def print_pairs(console: Any, title: str, pairs: list[tuple[str, Any]]) -> None:
    """A titled two-column section; '(none)' when empty."""
    console.print(f"\n[bold]{title}[/bold]", markup=True)
    if not pairs:
        console.print(" (none)")
        return
    if len(pairs) > RICH_ROWS:
        cells = [(str(k), v if isinstance(v, str) else format_value(v)) for k, v in pairs]
        write_plain_rows(console, cells, right=())
        return
    table = Table(box=None, show_header=False, pad_edge=True, padding=(0, 1))
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in pairs:
        add_plain_row(table, str(key), value if isinstance(value, str) else format_value(value))
    console.print(table)


def add_plain_row(table: Table, *cells: str) -> None:
    """A table row shown as given: brackets in names or values (``[redacted]``, ``[1, 2]``) are not markup."""
    table.add_row(*(Text(cell) for cell in cells))


def print_rows(console: Any, title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A titled table, first column left-aligned and the others right-aligned, "(none)" when empty: a rich table
    up to ``RICH_ROWS`` rows, plain aligned text beyond (same columns, no colour)."""
    if len(rows) <= RICH_ROWS:
        table = Table(title=f"[bold]{title}[/bold]", title_justify="left", box=None, header_style="bold")
        for index, name in enumerate(header):
            table.add_column(name, justify="right" if index else "left", no_wrap=True)
        for row in rows or [["(none)", *([""] * (len(header) - 1))]]:
            add_plain_row(table, *row)
        console.print(table)
        return
    console.print(f"[bold]{title}[/bold]", markup=True)
    write_plain_rows(console, [tuple(header), *rows], right=range(1, len(header)), bold_first=True)


def write_plain_rows(
    console: Any, rows: Sequence[Sequence[str]], right: Collection[int], bold_first: bool = False
) -> None:
    """Rows as aligned plain text written straight to the console's file (no markup, no layout pass)."""
    widths = [min(max(len(row[i]) for row in rows), PLAIN_MAX_WIDTH) for i in range(len(rows[0]))]

    def line(row: Sequence[str]) -> str:
        cells = (cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        return " " + "  ".join(cells).rstrip()

    body = rows
    if bold_first:
        console.print(Text(line(rows[0]), style="bold"))
        body = rows[1:]
    console.file.write("".join(line(row) + "\n" for row in body))
    console.file.flush()
