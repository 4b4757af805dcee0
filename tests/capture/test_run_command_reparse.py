"""``expertrack reparse``: a wrapped run's metrics rebuilt from its saved console, with another parser or the
same one, keeping the run's state, exit code and point times; clear errors for runs that cannot be reparsed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import expertrack

EXPERTRACK = str(Path(sys.executable).with_name("expertrack"))

# A format no built-in parser reads: "it 3 | loss 2.5 | lr 0.001".
TRAINER = """
import sys
print("starting")
for it in range(1, 6):
    print(f"it {it} | loss {10 - it}.5 | lr 0.001", flush=True)
print("stderr noise loss=99", file=sys.stderr)
sys.exit(2)
"""

RULES = r"""
[[metric]]
regex = '^it (?P<step>\d+) \| loss (?P<loss>\S+) \| lr (?P<lr>\S+)'
rename = { loss = "train_loss" }
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXPERTRACK, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )


@pytest.fixture
def wrapped_run(tmp_path: Path, tracking_dir: Path) -> expertrack.ApiRun:
    """A finished wrapped run (exit code 2) whose output its detected parser could not read."""
    (tmp_path / "train.py").write_text(TRAINER)
    result = cli("run", "--mirror", "off", "--name", "odd", "--", sys.executable, "train.py", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (run,) = expertrack.Api(tracking_dir).runs()
    return run


def test_reparse_with_a_rules_file_rebuilds_the_metrics(
    tmp_path: Path, tracking_dir: Path, wrapped_run: expertrack.ApiRun
) -> None:
    assert "train_loss" not in wrapped_run.metric_keys()
    (tmp_path / "rules.toml").write_text(RULES)
    result = cli("reparse", "odd", "--parser", "rules.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "as rules: 6 lines, 10 points in 2 metrics" in result.stdout

    run = expertrack.Api(tracking_dir).run("odd")
    assert run.metric_keys() == ["lr", "train_loss"]  # the old keys are gone
    steps, times, values = run.scalars("train_loss")
    assert steps.tolist() == [1, 2, 3, 4, 5]
    assert values.tolist() == [9.5, 8.5, 7.5, 6.5, 5.5]
    assert run.created_at - 1 <= times.min() and times.max() <= run.ended_at + 2  # when printed, not now
    assert run.summary["train_loss"] == 5.5
    # how the run ended is kept, and stderr (in console.log) was not parsed
    assert (run.state, run.exit_code) == ("failed", 2)
    assert "loss" not in run.metric_keys()


def test_reparse_twice_gives_the_same_metrics(
    tmp_path: Path, tracking_dir: Path, wrapped_run: expertrack.ApiRun
) -> None:
    (tmp_path / "rules.toml").write_text(RULES)
    for _ in range(2):
        assert cli("reparse", wrapped_run.id, "--parser", "rules.toml", cwd=tmp_path).returncode == 0
    run = expertrack.Api(tracking_dir).run(wrapped_run.id)
    assert run.scalars("train_loss")[0].tolist() == [1, 2, 3, 4, 5]


def test_reparse_errors_are_clear(tmp_path: Path, tracking_dir: Path, wrapped_run: expertrack.ApiRun) -> None:
    result = cli("reparse", "odd", "--parser", "no-such-format", cwd=tmp_path)
    assert result.returncode == 2 and "unknown parser 'no-such-format'" in result.stderr
    result = cli("reparse", "nothing-like-this", cwd=tmp_path)
    assert result.returncode == 2 and "no run matches" in result.stderr
    with expertrack.init(project="py", name="logged-from-python", dir=tracking_dir, mirror="off") as run:
        run.log({"loss": 1.0})
    result = cli("reparse", "logged-from-python", cwd=tmp_path)
    assert result.returncode == 1
    assert "has no saved console" in result.stderr
