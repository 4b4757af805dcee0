"""Entry point of the ``expertrack`` command.

Commands are registered by name and imported only when invoked, so ``expertrack ls`` never pays
for torch, matplotlib or a web server. Each command lives in its own module under ``expertrack.cli``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from expertrack import __version__
from expertrack.cli.params import LOCATION

# command name -> "module:attribute"; the module is imported on first use.
COMMANDS: dict[str, str] = {
    "ls": "expertrack.cli.runs:ls",
    "show": "expertrack.cli.runs:show",
    "export": "expertrack.cli.runs:export",
    "rm": "expertrack.cli.runs:rm",
    "alerts": "expertrack.cli.alerts:alerts",
    "run": "expertrack.cli.capture:run",
    "reparse": "expertrack.cli.capture:reparse",
    "sync": "expertrack.cli.mirror:sync",
    "push": "expertrack.cli.copy:push",
    "pull": "expertrack.cli.copy:pull",
    "import": "expertrack.cli.mirror:import_group",
    "figures": "expertrack.cli.figures:figures",
    "ui": "expertrack.cli.dashboard:ui",
    "demo": "expertrack.cli.demo:demo",
}

# One line each for `expertrack --help`, so listing commands imports none of them.
SHORT_HELP: dict[str, str] = {
    "ls": "List runs as a table.",
    "show": "Show one run: config, summary, environment, metrics.",
    "export": "Export a run's history as CSV, Parquet or JSON lines.",
    "rm": "Delete runs from the store (asks first).",
    "alerts": "List the alerts raised for a run (NaN, loss spike, dead expert, stall, ...).",
    "run": "Run a training command and track its output.",
    "reparse": "Rebuild a wrapped run's metrics from its saved console output.",
    "sync": "Replay local runs into Weights & Biases.",
    "push": "Copy runs from the local store to another store (a directory or PostgreSQL).",
    "pull": "Copy runs from another store into the local store.",
    "import": "Import runs from other trackers (W&B offline directories, Megatron-LM tokens per expert).",
    "figures": "Make the report's figures from stored runs.",
    "ui": "Serve the live local dashboard.",
    "demo": "Run the reference experiment: dense vs MoE vs MoE without load balancing.",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="expertrack")
@click.option(
    "--dir",
    "dir_",
    type=LOCATION,
    default=None,
    help="Tracking directory (or a postgresql:// URL for reading commands), as if given to the command "
    "(`expertrack --dir D ls` = `expertrack ls --dir D`).",
)
@click.pass_context
def cli(ctx: click.Context, dir_: Path | str | None) -> None:
    """expertrack: local-first experiment tracking for dense and MoE language models.

    Runs are stored in a SQLite file under ./expertrack-runs (or --dir / EXPERTRACK_DIR).
    """
    if dir_ is not None and ctx.invoked_subcommand:
        command = cli.get_command(ctx, ctx.invoked_subcommand)
        # the command's own --dir, when given after it, still wins: a default_map only supplies defaults
        ctx.default_map = {ctx.invoked_subcommand: _dir_default(command, dir_)} if command else None


def _dir_default(command: click.Command, directory: Path | str) -> dict[str, object]:
    """A default_map giving ``--dir`` to ``command`` or, for a group (``import``), to each of its commands."""
    if isinstance(command, click.Group):
        return {name: _dir_default(sub, directory) for name, sub in command.commands.items()}
    return {"dir_": directory}


def main() -> None:
    """Console-script entry point (also ``python -m expertrack``)."""
    from expertrack.standin import deactivate

    deactivate()  # `sync` and `import wandb` need the real wandb, even with $EXPERTRACK_AS_WANDB set
    cli(prog_name="expertrack")
