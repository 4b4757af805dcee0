"""Every command has working --help and a section in docs/cli.md: an undocumented command fails here."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from expertrack import __version__
from expertrack.cli.main import COMMANDS, cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
HEADING = re.compile(r"^#{2,4}\s+`expertrack ([a-z][a-z0-9 _-]*?)(?: [A-Z\[.<-].*)?`", re.MULTILINE)


def command_paths() -> list[tuple[str, ...]]:
    """Every command as the words typed after `expertrack`, subcommands of groups included."""
    ctx = click.Context(cli)
    paths: list[tuple[str, ...]] = []
    for name in sorted(COMMANDS):
        paths.append((name,))
        try:
            command = cli.get_command(ctx, name)
        except ImportError:
            continue  # reported by test_help below, where the missing module is named
        if isinstance(command, click.Group):
            sub_ctx = click.Context(command, parent=ctx, info_name=name)
            paths.extend((name, sub) for sub in command.list_commands(sub_ctx))
    return paths


def documented() -> set[str]:
    """Command names that docs/cli.md gives a section heading such as ## `expertrack import wandb DIR`."""
    return {match.group(1).strip() for match in HEADING.finditer(DOCS.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, f"`expertrack {' '.join(path)} --help` failed:\n{result.output}{result.exception!r}"
    usage, _, description = result.output.partition("\n")
    assert usage.startswith("Usage: "), result.output
    assert description.strip(), f"`expertrack {' '.join(path)}` has no help text"


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_documented(path: tuple[str, ...]) -> None:
    name = " ".join(path)
    names = documented()
    # A group (`import`) is documented by its own section or by its subcommands' (`import wandb`).
    assert name in names or any(n.startswith(name + " ") for n in names), (
        f"`expertrack {name}` has no section (## `expertrack {name} ...`) in docs/cli.md"
    )


def sections() -> dict[str, str]:
    """docs/cli.md's text under each command heading, by command name (a group's name gathers its subcommands')."""
    text = DOCS.read_text(encoding="utf-8")
    headings = list(re.finditer(r"^#{1,4} .*$", text, re.MULTILINE))
    out: dict[str, str] = {}
    for here, after in zip(headings, [*headings[1:], None]):
        match = HEADING.match(here.group(0))
        if match:
            out[match.group(1).strip()] = text[here.start() : after.start() if after else len(text)]
    return out


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_documented_options_match_help(path: tuple[str, ...]) -> None:
    """Every long option a command takes is named in its section (--dir is documented once, for all)."""
    command = cli
    ctx = click.Context(cli)
    for word in path:
        found = command.get_command(ctx, word) if isinstance(command, click.Group) else None
        assert found is not None, f"`expertrack {' '.join(path)}` cannot be loaded"
        command, ctx = found, click.Context(found, parent=ctx, info_name=word)
    section = sections().get(" ".join(path))
    options = {opt for param in command.params for opt in param.opts if opt.startswith("--")}
    if section is None:  # a group is documented through its subcommands, so it may have no options of its own
        assert isinstance(command, click.Group), f"docs/cli.md has no section for `expertrack {' '.join(path)}`"
        assert options <= {"--help"}, f"group `expertrack {' '.join(path)}` has options {options} but no section"
        return
    missing = sorted(opt for opt in options - {"--dir", "--help"} if opt not in section)
    assert not missing, f"docs/cli.md's `expertrack {' '.join(path)}` section does not mention {missing}"


def test_docs_name_only_real_commands() -> None:
    known = {" ".join(path) for path in command_paths()}
    stale = documented() - known
    assert not stale, f"docs/cli.md documents commands that do not exist: {sorted(stale)}"


def test_top_level_help_lists_every_command_and_version() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert re.search(rf"^\s+{re.escape(name)}\s", result.output, re.MULTILINE), name
    version = runner.invoke(cli, ["--version"])
    assert version.exit_code == 0
    assert __version__ in version.output


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output
