"""``expertrack sync`` argument handling (the sending itself is covered end to end in test_live_mirror)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import expertrack
from expertrack.cli.main import cli


def test_sync_needs_runs_a_project_or_all(tracking_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["sync"])
    assert result.exit_code == 2
    assert "name the runs to sync, or pass --project P or --all" in result.output


def test_sync_unknown_project_or_run(tracking_dir: Path) -> None:
    expertrack.init(project="p", name="one", dir=tracking_dir, mirror="off").finish()
    result = CliRunner().invoke(cli, ["sync", "--project", "nope"])
    assert result.exit_code == 2 and "no runs in project 'nope'" in result.output
    result = CliRunner().invoke(cli, ["sync", "missing-run"])
    assert result.exit_code == 2 and "no run matches 'missing-run'" in result.output


def test_sync_without_a_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["sync", "--all", "--dir", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no runs in" in result.output
