"""Issue 18, item 5: ``expertrack run`` records the wrapped program (its command, resolved executable, and for a
Python program its own interpreter and packages), apart from expertrack's own environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from expertrack.capture.program import PROGRAM_FILE, python_interpreter
from tests.capture.test_run_command import expertrack_run, only_run
from tests.conftest import expertrack_cli

TRAINER = "print('step 1 loss=0.5')\n"


@pytest.fixture(scope="module")
def other_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second virtual environment (not expertrack's) whose only package is ``fakepkg 1.2.3``."""
    root = tmp_path_factory.mktemp("other") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = next(root.glob("lib/python*/site-packages"))
    info = site / "fakepkg-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.2.3\n")
    return root / "bin" / "python"


def test_a_python_program_is_recorded_with_its_own_interpreter_and_packages(
    tmp_path: Path, tracking_dir: Path, other_python: Path
) -> None:
    (tmp_path / "train.py").write_text(TRAINER)
    done = expertrack_run("--", str(other_python), "train.py", "--api-key=hunter2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = only_run(tracking_dir)
    program = json.loads(run.file(PROGRAM_FILE))
    assert program["command"] == [str(other_python), "train.py", "--api-key=[redacted]"]
    assert program["executable"] == str(other_python)
    assert program["python"]["executable"] == str(other_python)
    assert program["python"]["packages"] == {"fakepkg": "1.2.3"}  # the program's venv, not expertrack's
    assert "torch" in run.environment["packages"]  # expertrack's own environment is still recorded, apart
    shown = expertrack_cli("show", run.id, env={"COLUMNS": "200"}).stdout
    assert "program (wrapped by expertrack run)" in shown and "fakepkg 1.2.3" in shown
    assert "environment (expertrack's process)" in shown


def test_a_script_found_on_path_through_its_shebang_is_a_python_program(
    tmp_path: Path, tracking_dir: Path, other_python: Path
) -> None:
    script = tmp_path / "bin" / "train-tiny"
    script.parent.mkdir()
    script.write_text("#!/usr/bin/env python3\n" + TRAINER)
    script.chmod(0o755)
    path = f"{script.parent}{os.pathsep}{other_python.parent}{os.pathsep}{os.environ['PATH']}"
    assert python_interpreter(str(script), {"PATH": path}) == str(other_python.parent / "python3")
    done = expertrack_run("--", "train-tiny", cwd=tmp_path, env={"PATH": path})
    assert done.returncode == 0, done.stderr
    program = json.loads(only_run(tracking_dir).file(PROGRAM_FILE))
    assert program["executable"] == str(script)
    assert program["python"]["packages"] == {"fakepkg": "1.2.3"}


def test_a_program_that_is_not_python_has_no_interpreter_to_ask(tmp_path: Path, tracking_dir: Path) -> None:
    done = expertrack_run("--", "sh", "-c", "echo loss=1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    program = json.loads(only_run(tracking_dir).file(PROGRAM_FILE))
    assert program["command"] == ["sh", "-c", "echo loss=1"]
    assert program["executable"].endswith("/sh") and "python" not in program
