"""``expertrack export --rank``: one rank's series of a ranks="all" run; rank 0's without it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from expertrack.cli.main import cli
from tests.distributed.builders import two_rank_run


def export(directory: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["export", "tworanks", "--dir", str(directory), *args])
    return result.exit_code, result.output


def test_export_rank_writes_that_ranks_series_and_rank_0_by_default(tmp_path: Path) -> None:
    two_rank_run(tmp_path)
    code, text = export(tmp_path, "--rank", "1")
    assert code == 0, text
    assert [float(row["loss"]) for row in csv.DictReader(io.StringIO(text))] == [10.0, 11.0, 12.0, 13.0]
    code, text = export(tmp_path, "--format", "jsonl", "--rank", "1")
    assert code == 0 and [json.loads(line)["loss"] for line in text.splitlines()] == [10.0, 11.0, 12.0, 13.0]
    code, text = export(tmp_path)
    assert code == 0 and [float(row["loss"]) for row in csv.DictReader(io.StringIO(text))] == [0.0, 1.0, 2.0, 3.0]


def test_export_of_a_rank_the_run_does_not_have_names_the_ranks_it_has(tmp_path: Path) -> None:
    two_rank_run(tmp_path)
    code, text = export(tmp_path, "--rank", "5")
    assert code == 1
    assert "has no series of rank 5; its ranks: [0, 1]" in text


def test_show_lists_each_ranks_state(tmp_path: Path) -> None:
    two_rank_run(tmp_path)
    result = CliRunner().invoke(cli, ["show", "tworanks", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "rank 0" in result.output and "rank 1" in result.output
    assert result.output.count("finished") >= 3  # the run's state and each rank's
