"""``expertrack alerts [RUN]``: the alerts raised for one run, or for every run of the store, newest run first."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from expertrack.cli.common import (
    add_plain_row,
    dir_option,
    epoch,
    existing_store,
    format_time,
    format_value,
    make_console,
    open_api,
    resolve_run,
    where,
)

if TYPE_CHECKING:
    from expertrack import ApiRun
    from expertrack.store.alerts import AlertRecord


@click.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@dir_option
@click.option("--project", "-p", default=None, help="Only runs of this project (without RUN).")
@click.option("--rule", "rules", multiple=True, help="Only alerts of this rule (nan, spike, stall, ...); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per alert, per line, instead of a table.")
@click.option(
    "--replay",
    is_flag=True,
    help="Run the rules over the stored points now (with --alert settings) and show what they would raise; "
    "nothing is stored. For tuning thresholds on past runs.",
)
@click.option("--alert", "alert_specs", multiple=True, metavar="SPEC", help="Rule settings for --replay, as for run.")
def alerts(
    run_ref: str | None, dir_: Path | None, project: str | None, rules: tuple[str, ...], as_json: bool,
    replay: bool, alert_specs: tuple[str, ...],
) -> None:  # fmt: skip
    """List the alerts raised for RUN, or for every run (newest run first): time, rule, key, step, value and
    what happened. RUN is a run id, a unique id prefix, or a run name.

    Rules and their settings: docs/alerts.md (configure them with init(alerts=...), a TOML file, or
    expertrack run --alert).
    """
    if run_ref is None and existing_store(dir_) is None:
        click.echo(f"no runs in {where(dir_)}", err=True)
        return
    api = open_api(dir_)
    if run_ref is not None:
        runs = [resolve_run(api, run_ref)]
    else:
        runs = sorted(api.runs(project=project), key=lambda r: epoch(r.created_at) or 0.0, reverse=True)
    if alert_specs and not replay:
        raise click.BadParameter("rule settings apply to --replay only", param_hint="--alert")
    read = _replayer(alert_specs) if replay else (lambda run: run.alerts())
    found = [(run, alert) for run in runs for alert in read(run) if not rules or alert.rule in rules]
    if as_json:
        for run, alert in found:
            click.echo(json.dumps({"run": run.id, "name": run.name, **_jsonable(alert)}))
        return
    if not found:
        scope = f"run {runs[0].name} ({runs[0].id})" if run_ref is not None else where(dir_)
        click.echo(f"no alerts for {scope}", err=True)
        return
    make_console().print(alerts_table(found, with_run=run_ref is None))


def _replayer(specs: tuple[str, ...]) -> Any:
    """A function giving a run's replayed alerts with the settings of ``specs`` (the defaults when none)."""
    from expertrack.alerts import resolve
    from expertrack.alerts.replay import replay

    try:
        settings = resolve(list(specs) or None)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--alert") from err
    return lambda run: replay(run, settings)


def alerts_table(found: list[tuple[ApiRun, AlertRecord]], with_run: bool) -> Table:
    """A table of alerts: time, (run,) rule, key, step, value and message."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = ["time", *(["run", "id"] if with_run else []), "rule", "key", "step", "value", "message"]
    for name in columns:
        table.add_column(name, no_wrap=name != "message", justify="right" if name in ("step", "value") else "left")
    for run, alert in found:
        add_plain_row(
            table,
            format_time(alert.time),
            *([run.name, run.id] if with_run else []),
            alert.rule,
            alert.key or "-",
            "-" if alert.step is None else str(alert.step),
            format_value(alert.value),
            alert.message,
        )
    return table


def _jsonable(alert: AlertRecord) -> dict[str, Any]:
    """The alert's fields, NaN and +-inf as the strings "nan", "inf", "-inf" (not JSON numbers)."""
    fields = alert.as_dict()
    value = fields["value"]
    if isinstance(value, float) and not math.isfinite(value):
        fields["value"] = str(value)
    return fields
