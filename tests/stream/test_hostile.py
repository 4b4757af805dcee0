"""Hostile and damaged stream input: forged, malformed, truncated, oversized, interleaved and replayed tagged
lines, and a remote that dies mid-line. Real streams (a real training process's stdout), a real store."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import expertrack
from expertrack.store import SQLiteStore
from expertrack.stream import MARKER, MAX_LINE_BYTES
from expertrack.stream.lines import TaggedLineFilter, decode_line
from expertrack.stream.rebuild import StreamRebuilder
from tests.stream.trainers import STREAMING

EXPERTRACK = str(Path(sys.executable).with_name("expertrack"))


@pytest.fixture(scope="module")
def streamed(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    """The stdout of a real training process that streams 40 steps over several flushes (so several lines),
    and its own store's directory."""
    where = tmp_path_factory.mktemp("remote")
    (where / "trainer.py").write_text(STREAMING)
    env = {**os.environ, "EXPERTRACK_STREAM": "stdout", "EXPERTRACK_DIR": str(where / "runs")}
    env["EXPERTRACK_MIRROR"] = "off"
    done = subprocess.run(
        [sys.executable, "trainer.py", "40", "0.04"], cwd=where, capture_output=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, where / "runs"


def tagged(output: bytes) -> list[bytes]:
    return [line + b"\n" for line in output.split(b"\n") if MARKER in line]


def resealed(line: bytes, run_id: str, seq: int, session: bytes | None = None) -> bytes:
    """``line``'s payload under another run id, session and number, with a checksum that matches (a careful
    forgery)."""
    fields = line[line.index(MARKER) + len(MARKER) :].rstrip(b"\n").split(b" ")
    body = b"%s %s %d" % (run_id.encode(), session or fields[1], seq)
    crc = zlib.crc32(fields[4], zlib.crc32(body + b" "))
    return MARKER + body + b" %08x " % crc + fields[4] + b"\n"


def steps_in(lines: list[bytes]) -> list[int]:
    """The steps of the loss these lines carry (in ``m`` records, or ``rows`` columns)."""
    steps: list[int] = []
    for line in lines:
        for record in decode_line(line).records:
            if record[0] == "m" and "loss" in record[3]:
                steps.append(record[1])
            elif record[0] == "rows" and "loss" in record[1]:
                steps += np.frombuffer(base64.b64decode(record[2]), dtype="<i8").tolist()
    return steps


def loss(directory: Path, run_id: str) -> tuple[np.ndarray, ...]:
    with SQLiteStore(directory / "store.db", readonly=True) as store:
        return store.read_scalars(run_id, "loss")


def test_the_filter_finds_the_same_lines_however_the_output_is_cut(streamed: tuple[bytes, Path]) -> None:
    output = streamed[0][:6000] + b"\nplain @ not @@xt a marker\n" + streamed[0][6000:]
    shown_whole, lines_whole = TaggedLineFilter().feed(output)
    assert MARKER not in shown_whole and b"plain @ not @@xt a marker\n" in shown_whole
    for size in (1, 2, 5, 97, 4096):
        line_filter = TaggedLineFilter()
        shown, lines = b"", []
        for start in range(0, len(output), size):
            part, found = line_filter.feed(output[start : start + size])
            shown += part
            lines += found
        rest, cut = line_filter.end()
        assert (shown + rest, lines, cut) == (shown_whole, lines_whole, None)


def test_damaged_lines_are_dropped_said_once_each_and_the_run_is_still_rebuilt(
    streamed: tuple[bytes, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output, remote = streamed
    lines = tagged(output)
    assert len(lines) >= 3
    run_id = decode_line(lines[0]).run_id
    flipped = lines[1].replace(b"A", b"B", 1) if b"A" in lines[1] else lines[1][:-5] + b"xxxx\n"
    hostile = [
        lines[0],
        flipped,  # altered on the way: its checksum fails
        flipped,  # said once, whatever the count
        lines[1][: len(lines[1]) // 2] + b"\n",  # cut short
        lines[1][:40] + lines[2],  # interleaved: the start of one line, then another whole
        MARKER + b"x" * (MAX_LINE_BYTES + 10) + b"\n",  # oversized
        resealed(lines[1], "someoneelse", 3),  # a run never announced
        MARKER + b"not five fields\n",
        *lines[1:],
        *lines,  # a replay of the whole stream (a launcher that reconnects and repeats): skipped silently
    ]
    line_filter = TaggedLineFilter()
    rebuilder = StreamRebuilder(tmp_path, announce=lambda text: None)
    shown, found = line_filter.feed(b"".join(hostile))
    for line in found:
        rebuilder.feed(line)
    rebuilder.close()
    assert shown == b""  # none of it reached the terminal
    assert rebuilder.applied == len(lines) and rebuilder.dropped == 7
    err = capsys.readouterr().err
    for problem in ("checksum", "without its five fields", "came before its announcement", "bytes (more than"):
        assert err.count(problem) == 1, (problem, err)
    assert all(np.array_equal(a, b) for a, b in zip(loss(tmp_path, run_id), loss(remote, run_id), strict=True))
    assert expertrack.Api(tmp_path).runs()[0].state == "finished"


def test_a_forged_announcement_never_touches_a_run_already_in_the_store(
    streamed: tuple[bytes, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with expertrack.init(project="mine", dir=tmp_path, mirror="off") as mine:
        mine.log({"loss": 7.0})
    before = loss(tmp_path, mine.id)
    rebuilder = StreamRebuilder(tmp_path, announce=lambda text: None)
    for seq, line in enumerate(tagged(streamed[0])):  # the whole stream, made to claim my run, checksums right
        rebuilder.feed(resealed(line, mine.id, seq, session=b"0123456789abcdef"))
    rebuilder.close()
    assert rebuilder.applied == 0
    [run] = expertrack.Api(tmp_path).runs()
    assert (run.id, run.project, run.state) == (mine.id, "mine", "finished")
    assert all(np.array_equal(a, b) for a, b in zip(loss(tmp_path, mine.id), before, strict=True))
    assert "in the local store already" in capsys.readouterr().err


def test_a_remote_that_dies_mid_line_leaves_the_run_as_far_as_its_last_whole_line(
    streamed: tuple[bytes, Path], tmp_path: Path
) -> None:
    lines = tagged(streamed[0])
    (tmp_path / "stream.bin").write_bytes(b"".join(lines[:-1]) + lines[-1][:50])  # the end record is cut
    remote = "import os; os.write(1, open('stream.bin', 'rb').read()); os._exit(3)"
    command = [EXPERTRACK, "run", "--mirror", "off", "--dir", str(tmp_path / "local"), "--", sys.executable, "-c"]
    done = subprocess.run([*command, remote], cwd=tmp_path, capture_output=True, timeout=60)
    assert done.returncode == 3  # the command's own status comes through
    assert b"cut short" in done.stderr and MARKER not in done.stdout
    run_id = decode_line(lines[0]).run_id
    rebuilt = next(run for run in expertrack.Api(tmp_path / "local").runs() if run.id == run_id)
    assert rebuilt.state != "finished"  # its end never came: not claimed as finished
    stored = loss(tmp_path / "local", run_id)[0]
    assert list(stored) == sorted(steps_in(lines[:-1]))  # every point before the cut, none of the cut line's
