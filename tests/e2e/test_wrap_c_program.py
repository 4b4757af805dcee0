"""The seed's case end to end: a C trainer that prints with printf and never calls fflush, wrapped by
``expertrack run`` with its output going to a pipe. Its lines must arrive one by one while it runs (C stdio
would hold them in a 4 KiB buffer on a pipe), and the store must hold its early steps before it ends."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import expertrack

EXPERTRACK = str(Path(sys.executable).with_name("expertrack"))
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

# Prints the seed's format without fflush, sleeping between steps; after step 3 it waits for a "release" file,
# so the test can look at the store while the program is provably still running.
TRAINER_C = r"""
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *release = argv[1];
    int steps = 6;
    printf("| parameter | value |\n");
    printf("| batch size | 4 |\n");
    printf("| max_steps | %d |\n", steps);
    for (int step = 1; step <= steps; step++) {
        printf("step %4d/%d: train loss %f (%.1f ms, %d tok/s)\n", step, steps, 6.0 / step, 12.5, 84000 + step);
        usleep(100000);
        if (step == 3) {
            while (access(release, F_OK) != 0) usleep(20000);
        }
    }
    printf("val loss %f (avg_train %.3f, gap %+.3f)\n", 4.5, 5.0, -0.5);
    printf("test loss %.3f\n", 4.25);
    return 0;
}
"""

EXPECTED_STDOUT = (
    b"| parameter | value |\n| batch size | 4 |\n| max_steps | 6 |\n"
    + b"".join(f"step {s:4d}/6: train loss {6.0 / s:f} (12.5 ms, {84000 + s} tok/s)\n".encode() for s in range(1, 7))
    + b"val loss 4.500000 (avg_train 5.000, gap -0.500)\ntest loss 4.250\n"
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CC is None, reason="no C compiler on this machine"),
]


@pytest.fixture
def trainer(tmp_path: Path) -> Path:
    source = tmp_path / "train.c"
    source.write_text(TRAINER_C)
    binary = tmp_path / "train"
    assert CC is not None
    subprocess.run([CC, "-O1", "-o", str(binary), str(source)], check=True, capture_output=True)
    return binary


# auto: a pipe here, with the trainer asked to flush per line (coreutils' libstdbuf), or a pty without libstdbuf
@pytest.mark.parametrize("mode", ["auto", "pty"])
def test_c_trainer_is_live_line_by_line_and_tracked_while_running(
    trainer: Path, tmp_path: Path, tracking_dir: Path, mode: str
) -> None:
    release = tmp_path / "release"
    proc = subprocess.Popen(
        [EXPERTRACK, "run", "--mirror", "off", "--stdout", mode, "--", str(trainer), str(release)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")), daemon=True)  # type: ignore[union-attr]
    reader.start()

    early = _wait_for_steps(tracking_dir, count=2, proc=proc)
    assert proc.poll() is None, "the trainer ended before the test released it"
    assert early[:2] == [pytest.approx(6.0), pytest.approx(3.0)]
    # what the user sees is live too: step 3 was passed through although printf never flushed
    assert any(line.startswith(b"step    3/6") for line in list(lines))

    release.touch()
    assert proc.wait(timeout=60) == 0
    reader.join(timeout=10)
    assert b"".join(lines) == EXPECTED_STDOUT

    (run,) = expertrack.Api(tracking_dir).runs()
    assert (run.project, run.state, run.exit_code) == ("train", "finished", 0)
    assert run.scalars("train_loss")[2].tolist() == pytest.approx([6.0 / s for s in range(1, 7)])
    assert run.scalars("tok_per_sec")[2].tolist() == [84000.0 + s for s in range(1, 7)]
    assert run.scalars("val_loss")[2].tolist() == [4.5]
    assert run.scalars("test_loss")[2].tolist() == [4.25]
    assert run.config["max_steps"] == 6
    assert run.file("console.log") == EXPECTED_STDOUT


def _wait_for_steps(tracking_dir: Path, count: int, proc: subprocess.Popen[bytes]) -> list[float]:
    """Poll the store (as the dashboard would) until ``count`` train_loss points are there."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            runs = expertrack.Api(tracking_dir).runs()
        except sqlite3.OperationalError:  # the store file exists but its tables are still being created
            runs = []
        if runs and "train_loss" in runs[0].metric_keys():
            values = runs[0].scalars("train_loss")[2].tolist()
            if len(values) >= count:
                return values
        time.sleep(0.1)
    raise AssertionError("the early steps never reached the store while the trainer ran")
