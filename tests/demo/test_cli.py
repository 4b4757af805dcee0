"""``expertrack demo`` and ``python -m expertrack.demo`` as a user runs them: real child processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

import expertrack
from tests.conftest import expertrack_cli


def test_python_m_demo_with_own_data_runs_every_variant(tmp_path: Path) -> None:
    data = tmp_path / "corpus"
    for domain, line in [
        ("poems", "the rose is red and the sky is blue\n"),
        ("sql", "SELECT id FROM t WHERE x > 1;\n"),
    ]:
        (data / domain).mkdir(parents=True)
        (data / domain / "part1.txt").write_text(line * 200)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "expertrack.demo", "--quick", "--steps", "6", "--threads", "1", "--no-figures"]
    proc = subprocess.run([*cmd, "--data", str(data), "--dir", str(runs)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "validation loss / perplexity per domain" in proc.stdout
    assert re.search(r"┃ run +┃ +poems ┃ +sql ┃", proc.stdout), proc.stdout
    # stdout is a pipe here, as in a log file: plain progress lines, not bars drawn over (issue 18, item 3)
    progress = re.findall(r"^run (\d)/3 (\S+) seed 0: step 6/6, loss \d+\.\d{3}, \d+:\d\d elapsed$", proc.stdout, re.M)
    assert progress == [("1", "dense"), ("2", "moe"), ("3", "moe-no-lb")], proc.stdout
    assert proc.stdout.index("run 3/3") < proc.stdout.index("validation loss / perplexity")
    stored = expertrack.Api(runs).runs(project="expertrack-demo")
    assert sorted(r.config["variant"] for r in stored) == ["dense", "moe", "moe-no-lb"]
    assert all(r.config["domains"] == ["poems", "sql"] for r in stored)
    assert "train/domain_loss/sql" in stored[0].metric_keys()


def test_cli_reports_a_bad_data_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = expertrack_cli("demo", "--quick", "--data", str(tmp_path / "empty"), "--dir", str(tmp_path / "runs"))
    assert proc.returncode != 0
    assert "one sub-folder per domain" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_help_lists_the_options() -> None:
    proc = expertrack_cli("demo", "--help")
    assert proc.returncode == 0
    for option in ("--dir", "--steps", "--device", "--seeds", "--data", "--out", "--quick"):
        assert option in proc.stdout
