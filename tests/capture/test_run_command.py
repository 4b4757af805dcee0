"""``expertrack run`` end to end, as a user runs it: a real fake trainer as the child, the real console script
as the wrapper, the real store read back with ``Api``."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import expertrack

EXPERTRACK = str(Path(sys.executable).with_name("expertrack"))

# A fake trainer in the seed's gpt2-cuda format: config table, step lines, val and test lines, a stderr line.
TRAINER = r"""
import sys
n = int(sys.argv[sys.argv.index("-n") + 1]) if "-n" in sys.argv else 4
print("+-----------------------+----------------------------------------------------+")
print("| parameter             | value                                              |")
print("| batch size B          | 4                                                  |")
print("| learning rate         | 0.000300                                           |")
print("+-----------------------+----------------------------------------------------+")
for step in range(1, n + 1):
    print(f"step {step:4d}/{n}: train loss {5.0 / step:.6f} (12.{step} ms, {84000 + step} tok/s)")
print("val loss 4.567890 (avg_train 5.123, gap +0.456)")
print("warming down", file=sys.stderr)
print("test loss 4.321")
"""


def write_trainer(tmp_path: Path, source: str = TRAINER, name: str = "trainer.py") -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def expertrack_run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """``expertrack run ARGS`` with stdout and stderr captured as bytes."""
    return subprocess.run(
        [EXPERTRACK, "run", "--mirror", "off", *args],
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def only_run(tracking_dir: Path) -> expertrack.ApiRun:
    runs = expertrack.Api(tracking_dir).runs()
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("mode", [[], ["--stdout", "pty"], ["--stdout", "pipe"]], ids=["auto", "pty", "pipe"])
def test_fake_trainer_is_tracked_and_passed_through_unchanged(
    tmp_path: Path, tracking_dir: Path, mode: list[str]
) -> None:
    trainer = write_trainer(tmp_path)
    argv = [sys.executable, str(trainer), "-b", "4703", "--lr=3e-4", "-n", "5"]
    alone = subprocess.run(argv, capture_output=True, check=True)
    wrapped = expertrack_run(*mode, "--", *argv, cwd=tmp_path)

    assert wrapped.returncode == 0, wrapped.stderr
    assert wrapped.stdout == alone.stdout  # byte for byte
    assert b"warming down\n" in wrapped.stderr
    assert b"expertrack: parsing output as gpt2-cuda\n" in wrapped.stderr
    run = only_run(tracking_dir)
    assert (run.project, run.state, run.exit_code, run.exit_signal) == ("trainer", "finished", 0, None)
    assert run.config["b"] == 4703 and run.config["lr"] == pytest.approx(3e-4) and run.config["n"] == 5
    steps, _, losses = run.scalars("train_loss")
    assert losses.tolist() == pytest.approx([5.0 / s for s in range(1, 6)])
    assert len(steps) == 5 and steps.tolist() == sorted(steps.tolist())
    assert run.scalars("tok_per_sec")[2].tolist() == [84001.0, 84002.0, 84003.0, 84004.0, 84005.0]
    assert run.scalars("val_loss")[2].tolist() == [pytest.approx(4.56789)]
    assert run.scalars("test_loss")[2].tolist() == [pytest.approx(4.321)]
    assert run.file("stdout.log") == alone.stdout
    console = run.file("console.log")
    assert console is not None
    # both streams, in the order they arrived, whole lines: Python writes the stderr line as "warming down"
    # then "\n", and stdout may come in between; the console must still show the line whole
    assert console.replace(b"warming down\n", b"", 1) == alone.stdout, console
    assert b"\nwarming down\n" in console


def test_run_options_are_recorded(tmp_path: Path, tracking_dir: Path) -> None:
    trainer = write_trainer(tmp_path)
    result = expertrack_run(
        "--project", "seed", "--name", "first", "--group", "sweep", "--tag", "a", "--tag", "b",
        "--config", "seed=1337", "--config", "note=hello world", "--parser", "gpt2-cuda",
        "--", sys.executable, str(trainer), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert b"parsing output as" not in result.stderr  # chosen, not detected
    run = only_run(tracking_dir)
    assert (run.project, run.name, run.group, run.tags) == ("seed", "first", "sweep", ["a", "b"])
    assert run.config["seed"] == 1337 and run.config["note"] == "hello world"
    assert run.metric_keys()[:1] and "train_loss" in run.metric_keys()


@pytest.mark.parametrize(
    ("code", "status", "state", "signal_number"),
    [
        ("import sys; print('step 1: loss=2.5'); sys.exit(3)", 3, "failed", None),
        ("import os; print('step 1: loss=2.5', flush=True); os.kill(os.getpid(), 9)", 137, "killed", 9),
    ],
)
def test_exit_status_and_run_state_follow_the_child(
    tmp_path: Path, tracking_dir: Path, code: str, status: int, state: str, signal_number: int | None
) -> None:
    result = expertrack_run("--", sys.executable, "-c", code, cwd=tmp_path)
    assert result.returncode == status
    run = only_run(tracking_dir)
    assert (run.state, run.exit_code, run.exit_signal) == (state, status, signal_number)
    assert run.scalars("loss")[2].tolist() == [2.5]


def test_bad_output_passes_through_and_never_breaks_the_wrapper(tmp_path: Path, tracking_dir: Path) -> None:
    code = (
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'\\xff\\xfe\\x80 not utf-8 loss=1.5\\n')\n"
        "out.write(b'step=1 loss=nan grad=inf\\n')\n"
        "out.write(b'y' * (10 * 1024 * 1024))\n"  # a 10 MB line without newline...
        "out.write(b'\\nstep=2 loss=0.5 grad=-inf\\n')\n"  # ...ended here
        "out.write(b'\\r\\x1b[2Kprogress 50%\\r')\n"  # a progress bar left unfinished at exit
    )
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    wrapped = expertrack_run("--parser", "generic", "--", sys.executable, "-c", code, cwd=tmp_path)
    assert wrapped.returncode == 0, wrapped.stderr[-2000:]
    assert wrapped.stdout == alone.stdout
    run = only_run(tracking_dir)
    assert run.state == "finished"
    steps, _, loss = run.scalars("loss")
    assert steps.tolist()[-2:] == [1, 2]
    assert math.isnan(loss[-2]) and loss[-1] == 0.5
    assert run.scalars("grad")[2].tolist() == [math.inf, -math.inf]
    assert run.file("stdout.log") == alone.stdout


@pytest.mark.parametrize(
    "code",
    [
        "pass",  # exits before printing anything
        "import os, sys; os.close(1); os.write(2, b'stdout closed\\n')",  # closes stdout early
    ],
)
def test_silent_or_early_closing_children_end_cleanly(tmp_path: Path, tracking_dir: Path, code: str) -> None:
    result = expertrack_run("--", sys.executable, "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert b"parsing output as" not in result.stderr
    run = only_run(tracking_dir)
    assert run.state == "finished" and run.metric_keys() == []


def test_missing_command_exits_127_with_a_clear_message_and_no_run(tmp_path: Path, tracking_dir: Path) -> None:
    result = expertrack_run("--", "no-such-trainer-xyz", "--lr", "1", cwd=tmp_path)
    assert result.returncode == 127
    assert result.stderr.strip().endswith(b"expertrack: no-such-trainer-xyz: command not found")
    assert expertrack.Api(tracking_dir).runs() == []
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/sh\necho never\n")  # not executable
    result = expertrack_run("--", str(script), cwd=tmp_path)
    assert result.returncode == 126
    assert b"cannot execute" in result.stderr


def test_without_wandb_configured_one_message_and_the_run_goes_on(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "WANDB_API_KEY": "", "WANDB_MODE": ""}
    code = "print('loss=1.0')"
    result = subprocess.run(
        [EXPERTRACK, "run", "--", sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert result.returncode == 0
    assert result.stdout == b"loss=1.0\n"
    wandb_lines = [line for line in result.stderr.splitlines() if b"W&B" in line]
    assert len(wandb_lines) == 1, result.stderr


@pytest.mark.parametrize(
    ("argv", "project"),
    [
        (["./train", "-b", "4"], "train"),
        (["python3", "-u", "scripts/pretrain.py", "--lr", "3e-4"], "pretrain"),
        (["python", "-m", "nanogpt.train"], "train"),
        (["python", "-c", "print(1)"], "python"),
    ],
)
def test_default_project_is_the_program_or_script_name(argv: list[str], project: str) -> None:
    from expertrack.cli.capture import default_project

    assert default_project(argv) == project


def test_lines_mode_without_libstdbuf_says_so_and_still_tracks(
    tracking_dir: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from expertrack.capture import child, wrap

    monkeypatch.setattr(child, "find_libstdbuf", lambda: None)
    monkeypatch.setattr(wrap, "find_libstdbuf", lambda: None)
    code = "import os; print('step=1 loss=2.5'); print(repr(os.environ.get('LD_PRELOAD', '')))"
    options = wrap.WrapOptions([sys.executable, "-c", code], project="p", mirror="off", stdout_mode="lines")
    assert wrap.wrap(options) == 0
    out, err = capfd.readouterr()
    assert out == f"step=1 loss=2.5\n{os.environ.get('LD_PRELOAD', '')!r}\n"  # nothing added to LD_PRELOAD
    assert err.count("coreutils' libstdbuf was not found") == 1 and "use --stdout pty" in err
    assert only_run(tracking_dir).scalars("loss")[2].tolist() == [2.5]
