"""``expertrack push`` and ``expertrack pull``: copy runs between the local store and another store.

Both are thin over ``expertrack.store.copy`` (idempotent, resumable, refusing to merge two different runs of one
id; docs/storage.md, "Copying runs between stores"). Every location a command is given is opened by
``open_location``, the one place that knows which kinds of location exist.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from expertrack.cli.common import dir_option
from expertrack.paths import tracking_dir

PROGRESS_EVERY_S = 1.0


def open_location(location: str | Path, writable: bool) -> Any:
    """The store at ``location`` (a directory, a ``.db`` file or a ``postgresql://`` URL), or a ClickException
    (exit 1) naming it without its password. A location read from must hold a store; one written to is created."""
    from expertrack.errors import StoreError
    from expertrack.store.location import describe, is_postgres, open_store, sqlite_path

    shown = describe(location)
    if not writable and not is_postgres(location) and not sqlite_path(location).is_file():
        raise click.ClickException(f"no expertrack store at {shown}")
    try:
        return open_store(location, readonly=not writable)
    except (StoreError, OSError) as exc:
        raise click.ClickException(f"cannot open the store at {shown}: {_without(str(exc), location)}") from exc
    except Exception as exc:  # a driver's own error (an unreachable server, wrong credentials)
        message = _without(f"{type(exc).__name__}: {exc}", location)
        raise click.ClickException(f"cannot open the store at {shown}: {message}") from exc


def _without(message: str, location: str | Path) -> str:
    from expertrack.store.copy import redact_location

    return redact_location(message, str(location))


def _same_store(a: str | Path, b: str | Path) -> bool:
    from expertrack.store.location import is_postgres, sqlite_path

    if is_postgres(a) or is_postgres(b):
        return str(a) == str(b)
    return sqlite_path(a) == sqlite_path(b)


@click.command()
@click.argument("runs", nargs=-1)
@click.option(
    "--to",
    "to",
    required=True,
    metavar="LOCATION",
    help="The store to copy to: a tracking directory, a store file or a postgresql:// URL.",
)
@dir_option
def push(runs: tuple[str, ...], to: str, dir_: Path | None) -> None:
    """Copy runs from the local store to another store (every run when RUNS are not named).

    RUNS are ids, id prefixes or names. Running it again copies only what is new: a running run is copied as far
    as it is, a push that was interrupted is completed, and no point is ever copied twice.
    """
    _copy(_here(dir_), to, runs, "pushed", "to")


@click.command()
@click.argument("runs", nargs=-1)
@click.option(
    "--from",
    "from_",
    required=True,
    metavar="LOCATION",
    help="The store to copy from: a tracking directory, a store file, a postgresql:// URL, a directory of "
    "snapshots or modal://VOLUME[/PATH] (docs/modal.md).",
)
@dir_option
def pull(runs: tuple[str, ...], from_: str, dir_: Path | None) -> None:
    """Copy runs from another store into the local store (every run when RUNS are not named).

    RUNS are ids, id prefixes or names in that store. Pulling several nodes' stores of one ranks="all" run
    gives one run with every node's ranks. Running it again copies only what is new.
    """
    if from_.startswith("modal://") or _snapshot_dir(from_):  # snapshots of remote runs (docs/modal.md)
        _pull_snapshots(from_, _here(dir_), runs)
        return
    _copy(from_, _here(dir_), runs, "pulled", "from")


def _here(dir_: str | Path | None) -> str | Path:
    """The store ``--dir`` names (else ``$EXPERTRACK_DIR``, else ``./expertrack-runs``), a URL kept as it is."""
    import os

    from expertrack.paths import ENV_DIR
    from expertrack.store.location import is_postgres

    given = str(dir_) if dir_ is not None else os.environ.get(ENV_DIR, "")
    return given if is_postgres(given) else tracking_dir(dir_)


def _snapshot_dir(location: str) -> bool:
    """A directory of run snapshots (``expertrack.snapshots``): no store of its own, ``.sqlite`` files below."""
    path = Path(location)
    return path.is_dir() and not (path / "store.db").exists() and next(path.rglob("*.sqlite"), None) is not None


def _pull_snapshots(location: str, target_at: str | Path, refs: tuple[str, ...]) -> None:
    from expertrack import snapshots

    if location.startswith("modal://"):
        from expertrack.integrations.modal import parse_location

        try:
            parse_location(location)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    target = open_location(target_at, writable=True)
    try:
        found, report = snapshots.pull(location, target, list(refs) or None)
    except ImportError as exc:
        needs = f"{location} needs the Modal client: pip install 'expertrack[modal]' ({exc})"
        raise click.ClickException(needs) from exc
    except Exception as exc:  # the Volume or the network: what was merged stays; running it again completes it
        raise click.ClickException(f"pulling from {location} stopped ({type(exc).__name__}: {exc})") from exc
    finally:
        target.close()
    parts = f"{report.points:,} points, {report.arrays:,} arrays, {report.files:,} file chunks"
    click.echo(f"pulled {found} run{'s' if found != 1 else ''} from {location} (snapshots): {parts} new")
    for run_id, why in report.refused:
        click.echo(f"Error: refused run {run_id}: {why}", err=True)
    if report.refused:
        sys.exit(1)


def _copy(source_at: str | Path, target_at: str | Path, refs: tuple[str, ...], verb: str, way: str) -> None:
    from expertrack.errors import AmbiguousRunError, RunNotFoundError
    from expertrack.store.copy import copy_runs
    from expertrack.store.location import describe

    raw = target_at if way == "to" else source_at
    remote = describe(raw)
    if _same_store(source_at, target_at):
        raise click.ClickException(f"{describe(source_at)} is the local store itself: nothing to copy")
    source = open_location(source_at, writable=False)
    try:
        try:
            ids = [source.find_run(ref).id for ref in refs] if refs else [r.id for r in source.runs()]
        except (RunNotFoundError, AmbiguousRunError) as exc:
            raise click.ClickException(f"{exc} (in {describe(source_at)})") from exc
        ids = list(dict.fromkeys(ids))
        target = open_location(target_at, writable=True)
        try:
            shown = _Progress(len(ids))
            try:
                report = copy_runs(source, target, ids, progress=shown.add)
            except click.ClickException:
                raise
            except Exception as exc:  # the store went away mid-copy: what was committed stays; say where
                raise click.ClickException(
                    f"copying runs {way} {remote} stopped ({_without(f'{type(exc).__name__}: {exc}', raw)}); "
                    "what was copied is kept, and running this again completes it"
                ) from exc
            shown.done()
        finally:
            target.close()
    finally:
        source.close()
    copied = len(report.runs)
    parts = (
        f"{report.points:,} points, {report.arrays:,} arrays, {report.files:,} file chunks, {report.alerts:,} alerts"
    )
    click.echo(f"{verb} {copied} run{'s' if copied != 1 else ''} {way} {remote}: {parts} new")
    for key in report.replaced:
        click.echo(f"  replaced series {key} (the copy there was not a prefix of this one)", err=True)
    if report.refused:
        for run_id, why in report.refused:
            click.echo(f"Error: refused run {run_id}: {why}", err=True)
        sys.exit(1)


class _Progress:
    """Points copied so far, on stderr at most once a second (long copies only)."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.points = 0
        self.started = time.monotonic()
        self.shown = self.started

    def add(self, run_id: str, points: int) -> None:
        self.points += points
        now = time.monotonic()
        if now - self.shown >= PROGRESS_EVERY_S:
            self.shown = now
            rate = self.points / max(now - self.started, 1e-9)
            click.echo(f"  {self.points:,} points copied ({rate:,.0f}/s), now run {run_id}", err=True)

    def done(self) -> None:
        if self.shown != self.started:  # progress was shown: end with the total time
            click.echo(f"  {self.points:,} points in {time.monotonic() - self.started:.1f} s", err=True)
