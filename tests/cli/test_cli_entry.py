"""Issue 18's smaller CLI items, as a user meets them: ``python -m expertrack``, ``--dir`` before the command,
lists in ``show`` written as a user writes them, and ``sync --all`` without W&B set up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import expertrack
from tests.conftest import expertrack_cli


def log(directory: Path, name: str, **config: object) -> str:
    with expertrack.init(project="moe", name=name, dir=directory, config=config, mirror="off") as run:
        run.log({"loss": 1.0})
    return run.id


def test_python_m_expertrack_is_the_expertrack_command(tmp_path: Path) -> None:
    log(tmp_path / "runs", "first")
    module = subprocess.run(
        [sys.executable, "-m", "expertrack", "ls", "--dir", str(tmp_path / "runs")], capture_output=True, text=True
    )
    script = expertrack_cli("ls", "--dir", str(tmp_path / "runs"))
    assert module.returncode == 0, module.stderr
    assert module.stdout == script.stdout and "first" in module.stdout
    helped = subprocess.run([sys.executable, "-m", "expertrack", "--help"], capture_output=True, text=True)
    assert helped.stdout.startswith("Usage: expertrack [OPTIONS] COMMAND")


def test_dir_is_accepted_before_the_command_and_after_it_wins(tmp_path: Path) -> None:
    log(tmp_path / "a", "in-a")
    log(tmp_path / "b", "in-b")
    before = expertrack_cli("--dir", str(tmp_path / "a"), "ls")
    assert before.returncode == 0, before.stderr
    assert "in-a" in before.stdout and "in-b" not in before.stdout
    both = expertrack_cli("--dir", str(tmp_path / "a"), "ls", "--dir", str(tmp_path / "b"))
    assert "in-b" in both.stdout and "in-a" not in both.stdout
    shown = expertrack_cli("--dir", str(tmp_path / "a"), "show", "in-a")
    assert shown.returncode == 0 and "in-a" in shown.stdout


def test_show_writes_lists_as_a_user_writes_them(tmp_path: Path) -> None:
    log(tmp_path, "lists", domains=["code", "math", "prose"], sizes=[1, 2.5], odd=["a, b"], opt={"betas": [0.9, 0.95]})
    shown = expertrack_cli("show", "lists", "--dir", str(tmp_path)).stdout
    assert "[code, math, prose]" in shown and "['code'" not in shown
    assert "[1, 2.5]" in shown and '["a, b"]' in shown
    assert "[0.9, 0.95]" in shown  # nested in a dict: shown under opt/betas


def test_sync_all_without_wandb_says_once_what_is_missing(tmp_path: Path) -> None:
    for name in ("one", "two", "three"):
        log(tmp_path / "runs", name)
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), NETRC=str(tmp_path / "no-netrc"))  # no `wandb login` either
    done = subprocess.run(
        [str(Path(sys.executable).with_name("expertrack")), "sync", "--all", "--dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""  # no line per run
    assert done.stderr.count("W&B is not set up") == 1
    assert "wandb login" in done.stderr and "WANDB_API_KEY" in done.stderr and "WANDB_MODE=offline" in done.stderr
