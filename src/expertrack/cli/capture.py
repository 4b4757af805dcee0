"""``expertrack run -- CMD`` (track any program from its output) and ``expertrack reparse RUN`` (rebuild a
wrapped run's metrics from its saved console). See docs/run.md.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from expertrack.cli.common import dir_option, open_api, resolve_run
from expertrack.notify import say

_PYTHON = re.compile(r"python[\d.]*")


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    short_help="Run a training command and track its output.",
)
@dir_option
@click.option("--project", help="Project of the run (default: the command's name, e.g. train for ./train).")
@click.option("--name", help="Name of the run (default: a generated one).")
@click.option("--group", help="Group of the run (e.g. a seed sweep).")
@click.option("--tag", "tags", multiple=True, help="A tag for the run; repeat for several.")
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE", help="A config value; repeatable.")
@click.option("--parser", metavar="NAME|FILE", help="Parser name or TOML rules file (default: detected).")
@click.option(
    "--mirror",
    type=click.Choice(["auto", "wandb", "off"]),
    default=None,
    help="Mirror the run to W&B: when configured (auto), always (wandb), or never (off). "
    "Default: $EXPERTRACK_MIRROR, else auto.",
)
@click.option(
    "--stdout",
    "stdout_mode",
    type=click.Choice(["auto", "pty", "lines", "pipe"]),
    default="auto",
    show_default=True,
    help="How the command's stdout is read: a pseudo-terminal (pty: colours, widths, every line live), a pipe "
    "with the command asked to flush each line (lines: live, faster), or a plain pipe (pipe: fastest, lines "
    "come in blocks). auto: pty when expertrack's own stdout is a terminal, else lines.",
)
@click.option(
    "--alert",
    "alert_specs",
    multiple=True,
    metavar="RULE[:off|:NAME=VALUE,...]|FILE.toml",
    help="Configure an alert rule (nan, spike, dead_expert, maxvio, entropy, stall), e.g. --alert stall:minutes=30 "
    "--alert spike --alert nan:off; 'off' turns every rule off; a .toml file gives them all. Repeatable; see "
    "docs/alerts.md.",
)
@click.option(
    "--as-wandb",
    is_flag=True,
    help="Run COMMAND with its `import wandb` resolved to expertrack (W&B code paths such as the HF Trainer's "
    "report_to='wandb' or Lightning's WandbLogger record here, unchanged); the program's wandb.init makes the run, "
    "so its output is passed through and not parsed. See docs/integrations.md.",
)
@click.option(
    "--replicate-to",
    metavar="LOCATION",
    default=None,
    help="Keep a copy of the run in this store (a postgresql:// URL or a directory) while it runs, from a "
    "background process. Default: $EXPERTRACK_REPLICATE_TO. See docs/storage.md.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    dir_: Path | None,
    project: str | None,
    name: str | None,
    group: str | None,
    tags: tuple[str, ...],
    configs: tuple[str, ...],
    parser: str | None,
    mirror: str | None,
    stdout_mode: str,
    alert_specs: tuple[str, ...],
    as_wandb: bool,
    replicate_to: str | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND, pass its output through unchanged, and track what it prints as metrics.

    \b
    expertrack run -- ./train -b 4 -n 1000
    expertrack run --project moe --tag baseline -- python train.py --lr 3e-4

    The command's stdout is parsed (format chosen with --parser, else detected from its first lines), its
    flags and any printed config table become the run's config, and its whole console is saved with the run.
    expertrack exits with the command's exit code (128+N when signal N ended it).

    With --as-wandb the command's own `import wandb` records the run instead:
    expertrack run --as-wandb --project moe -- python train.py --report_to wandb
    """
    if replicate_to:  # read by init(), here or in the program under --as-wandb (expertrack.replicate)
        os.environ["EXPERTRACK_REPLICATE_TO"] = replicate_to
    if as_wandb and alert_specs:
        raise click.UsageError(
            "--alert cannot be used with --as-wandb: the program's own wandb.init() makes the run; give the rules "
            "in a TOML file with EXPERTRACK_ALERTS=FILE instead (docs/alerts.md)"
        )
    if as_wandb:
        given: dict[str, object] = {"--name": name, "--group": group, "--tag": tags, "--config": configs}
        given.update({"--parser": parser, "--stdout": stdout_mode != "auto"})
        unused = [flag for flag, value in given.items() if value]
        if unused:
            raise click.UsageError(
                f"{', '.join(unused)} cannot be used with --as-wandb: the program's wandb.init() makes the run and "
                "its output is not read (set name, group, tags and config there; --project, --dir and --mirror apply)"
            )
        _exec_as_wandb(list(command), dir_, project, mirror)
    from expertrack.capture.wrap import WrapOptions, wrap

    options = WrapOptions(
        argv=list(command),
        dir=dir_,
        project=project or default_project(command),
        name=name,
        group=group,
        tags=list(tags),
        config=_config_options(configs),
        parser=_checked_parser(parser),
        mirror=mirror,
        stdout_mode=stdout_mode,
        alerts=_checked_alerts(alert_specs),
    )
    sys.exit(wrap(options))


@click.command(short_help="Rebuild a wrapped run's metrics from its saved console output.")
@dir_option
@click.argument("run_ref", metavar="RUN")
@click.option("--parser", metavar="NAME|FILE", help="Parser name or TOML rules file (default: detected again).")
def reparse(dir_: Path | None, run_ref: str, parser: str | None) -> None:
    """Replace RUN's scalar metrics with those parsed again from its saved console, without training again.

    Use it after fixing a rules file or to read a run with another parser. RUN is an id, a unique id prefix or
    a name. The config gains what the parser reads from the output; the run's state and exit code are kept.
    """
    from expertrack.capture.reparse import ReparseError, reparse_run

    api = open_api(dir_)
    record = resolve_run(api, run_ref)
    api.close()
    try:
        report = reparse_run(api.path, record.id, _checked_parser(parser), announce=say)
    except ReparseError as err:
        raise click.ClickException(str(err)) from err
    click.echo(
        f"reparsed run {record.name} ({record.id}) as {report.parser}: {report.lines} lines, "
        f"{report.points} points in {len(report.keys)} metrics"
        + (f" ({report.refused} values at decreasing steps skipped)" if report.refused else "")
    )


def default_project(argv: tuple[str, ...] | list[str]) -> str:
    """The command's name: ``./train`` gives train; for ``python train.py`` or ``python -m pkg.train``, the
    script's or module's name, since "python" would name every Python trainer's project the same."""
    program = os.path.basename(argv[0]) if argv else "run"
    if _PYTHON.fullmatch(program):
        args = iter(argv[1:])
        for arg in args:
            if arg == "-c":
                break  # inline code has no name
            if arg == "-m":
                return next(args, program).rsplit(".", 1)[-1]
            if arg in ("-W", "-X"):
                next(args, None)  # the option's value
            elif not arg.startswith("-"):
                return Path(arg).stem
    return program or "run"


def _config_options(values: tuple[str, ...]) -> dict[str, Any]:
    from expertrack.capture.parsers.base import coerce_value

    config: dict[str, Any] = {}
    for value in values:
        key, equals, text = value.partition("=")
        if not equals or not key.strip():
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--config")
        config[key.strip()] = coerce_value(text)
    return config


def _checked_alerts(specs: tuple[str, ...]) -> list[str] | None:
    """Fail before anything starts when an --alert names no rule or a bad setting."""
    if not specs:
        return None
    from expertrack.alerts import resolve

    try:
        resolve(list(specs))
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--alert") from err
    return list(specs)


def _checked_parser(parser: str | None) -> str | None:
    """Fail before anything starts when --parser names no parser or a bad rules file."""
    if parser is None:
        return None
    from expertrack.capture.parsers import get_parser

    try:
        get_parser(parser)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--parser") from err
    return parser


def _exec_as_wandb(argv: list[str], dir_: Path | None, project: str | None, mirror: str | None) -> None:
    """Replace this process with the command, its ``import wandb`` resolved to expertrack's stand-in.

    exec, not a child: signals, the terminal and the exit status are the command's own, as if run directly.
    The tracking directory is fixed here ($EXPERTRACK_DIR) so a framework's wandb ``dir=`` cannot move the run.
    """
    from expertrack.paths import ENV_DIR, tracking_dir
    from expertrack.standin import with_stand_in

    env = with_stand_in(os.environ)
    env[ENV_DIR] = str(tracking_dir(dir_))
    if project:  # both: frameworks pass WANDB_PROJECT to wandb.init themselves (the Trainer, Lightning)
        env["WANDB_PROJECT"] = env["EXPERTRACK_PROJECT"] = project
    if mirror:
        env["EXPERTRACK_MIRROR"] = mirror
    say(f"running {argv[0]} with `import wandb` resolved to expertrack; runs go to {env[ENV_DIR]}")
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        say(f"command not found: {argv[0]}")
        sys.exit(127)
    except OSError as err:  # not executable, a directory, ...
        say(f"cannot run {argv[0]}: {err.strerror or err}")
        sys.exit(126)
