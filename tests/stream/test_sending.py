"""The sending side's failures never reach training (DESIGN.md rule 1): a record too large for a line, a stdout
that is closed, an unknown EXPERTRACK_STREAM, a snapshot directory that cannot be written. Real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import expertrack
from expertrack.notify import Notifier
from expertrack.records import Row
from expertrack.stream import MARKER, MAX_LINE_BYTES
from expertrack.stream.encode import StdoutSink
from expertrack.stream.lines import decode_line

PROGRAM = r"""
import sys
import numpy as np
import expertrack
run = expertrack.init(project="p", mirror="off")
for step in range(5):
    run.log({"loss": 1.0 / (step + 1)})
run.finish()
print("done", file=sys.stderr)
"""

# arrays of random values (they do not compress): megabytes of stream for a stdout nobody reads
MANY_STEPS = r"""
import os, sys
import numpy as np
import expertrack
run = expertrack.init(project="p", mirror="off")
rng = np.random.default_rng(0)
for step in range(int(os.environ["STEPS"])):
    run.log({"loss": 1.0 / (step + 1), "weights": rng.random(4096)})
run.finish()
print("done", file=sys.stderr)
"""


def child(env: dict[str, str], tmp_path: Path, program: str = PROGRAM) -> subprocess.Popen[bytes]:
    full = {**os.environ, "EXPERTRACK_DIR": str(tmp_path / "runs"), **env}
    return subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full)


def test_a_record_too_large_for_a_line_is_left_out_and_said_once(capsys: pytest.CaptureFixture[str]) -> None:
    written: list[bytes] = []
    sink = StdoutSink("abc123", Notifier(), written.append)
    huge = np.random.default_rng(0).random(MAX_LINE_BYTES)  # 2 MiB of float64 that do not compress: no line holds it
    records = [Row(0, 1.0, {"big": huge}), Row(1, 2.0, {"loss": 0.5}), Row(2, 3.0, {"big": huge})]
    sink.emit(records)
    lines = [line + b"\n" for line in b"".join(written).split(b"\n") if line]
    assert all(MARKER in line and len(line) <= MAX_LINE_BYTES for line in lines)
    kept = [record for line in lines for record in decode_line(line).records]
    assert [record[0] for record in kept] == ["rows"]  # the row of plain numbers, and nothing of the arrays
    assert capsys.readouterr().err.count("too large for the stream") == 1


def test_a_closed_stdout_costs_the_stream_only(tmp_path: Path) -> None:
    proc = child({"EXPERTRACK_STREAM": "stdout"}, tmp_path)
    assert proc.stdout is not None
    proc.stdout.close()  # the launcher went away: writes to stdout fail (EPIPE)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"done" in err
    assert err.count(b"could not write the stream to stdout") == 1
    [run] = expertrack.Api(tmp_path / "runs").runs()
    assert run.state == "finished" and run.summary["loss"] == pytest.approx(0.2)


def test_an_unknown_stream_setting_is_said_and_nothing_is_streamed(tmp_path: Path) -> None:
    out, err = child({"EXPERTRACK_STREAM": "stderr"}, tmp_path).communicate(timeout=60)
    assert MARKER not in out and b"EXPERTRACK_STREAM='stderr' is not known (use 'stdout')" in err


def test_a_snapshot_directory_that_cannot_be_written_is_said_once_and_the_run_is_whole(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the snapshots would go")
    env = {"EXPERTRACK_SNAPSHOT_DIR": str(blocked), "EXPERTRACK_SNAPSHOT_EVERY": "0.05"}
    _out, err = child(env, tmp_path).communicate(timeout=60)
    assert err.count(b"could not snapshot run") == 1 and b"done" in err
    [run] = expertrack.Api(tmp_path / "runs").runs()
    assert run.state == "finished"


def test_a_stdout_nobody_reads_never_holds_the_store(tmp_path: Path) -> None:
    env = {"EXPERTRACK_STREAM": "stdout", "STEPS": "600"}  # about 27 MB of stream
    proc = child(env, tmp_path, program=MANY_STEPS)  # its stdout is a pipe nobody reads: it fills at 64 KiB
    assert proc.stderr is not None
    err = proc.stderr.read()  # until the process has ended
    assert proc.wait(timeout=120) == 0 and b"done" in err
    [run] = expertrack.Api(tmp_path / "runs").runs()
    assert run.state == "finished" and len(run.scalars("loss")[0]) == 600  # everything stored
    assert len(run.array_steps("weights")) == 600
    assert err.count(b"stdout is not being read") == 1
