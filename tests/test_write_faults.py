"""The writer against a store that cannot keep up (issue 12): a lock held by another connection, a full disk.

The lock is a second real SQLite connection holding ``BEGIN IMMEDIATE``; the full disk is SQLite's own
``PRAGMA max_page_count`` on the writer's connection, which gives a real SQLITE_FULL without mounting anything
(the pragma belongs to a connection, so the test sets it on the run's: the only private handle these tests take).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import expertrack
from expertrack.notify import Notifier
from expertrack.store import SQLiteStore
from expertrack.writer import Writer, queue_bound
from tests.conftest import expertrack_cli


def stored(tracking_dir: Path, run_id: str, key: str) -> list[float]:
    return expertrack.Api(tracking_dir).run(run_id).scalars(key)[2].tolist()


def test_past_the_bound_points_are_dropped_counted_said_once_and_shown(
    tracking_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXPERTRACK_MAX_QUEUED_POINTS", "1000")
    run = expertrack.init(project="bound", mirror="off")
    run.log({"a": 0.0, "b": 0.0})
    assert run.flush()
    locker = sqlite3.connect(tracking_dir / "store.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock: nothing can be committed
    for i in range(1, 5001):
        run.log({"a": float(i), "b": float(i)})
    locker.execute("COMMIT")
    locker.close()
    run.finish()
    err = capsys.readouterr().err
    assert err.count("is not keeping up") == 1  # said once, however many rows were dropped
    record = expertrack.Api(tracking_dir).run(run.id)
    kept = record.point_count("a") + record.point_count("b")
    assert record.dropped_points > 0
    assert kept + record.dropped_points == 10_002  # every point is either stored or counted
    assert kept <= 2 + 1000 + 2  # what was waiting never passed the bound (plus the row that reached it)
    assert f"{record.dropped_points:,} points were dropped" in err  # the total, at the end
    shown = expertrack_cli("show", run.id, "--dir", str(tracking_dir))
    line = next(line for line in shown.stdout.splitlines() if "dropped points" in line)
    assert f"{record.dropped_points:,}" in line


def test_queue_bound_setting_and_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPERTRACK_MAX_QUEUED_POINTS", "5000")
    assert queue_bound() == 5000
    assert queue_bound({"max_queued_points": 7}) == 7  # init(settings={...}) wins over the environment
    monkeypatch.setenv("EXPERTRACK_MAX_QUEUED_POINTS", "lots")
    with pytest.raises(ValueError, match="max_queued_points must be a positive integer, not 'lots'"):
        queue_bound()


def fill_disk(run: expertrack.Run) -> None:
    """Leave the run's store two pages of room (a connection's own limit: a real SQLITE_FULL)."""
    conn = run._writer.store.conn  # type: ignore[union-attr]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")


def test_disk_full_is_said_and_writing_resumes_when_space_returns(
    tracking_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = expertrack.init(project="full", mirror="off")
    run.log({"a": 0.0})
    assert run.flush()
    fill_disk(run)
    for i in range(1, 50_001):
        run.log({"a": float(i), "b": float(i)})
    assert run.flush(timeout=60) is False  # not stored: flush() does not claim it was
    err = capsys.readouterr().err
    assert "disk full" in err and str(tracking_dir / "store.db") in err
    assert "cannot rollback" not in err  # the real error, not the ROLLBACK's
    assert stored(tracking_dir, run.id, "a")[:1] == [0.0]  # what was stored stays readable
    run._writer.store.conn.execute("PRAGMA max_page_count = 1073741823")  # type: ignore[union-attr]
    assert run.flush(timeout=60)  # rolled back, so the next transaction could begin
    run.finish()
    assert stored(tracking_dir, run.id, "a") == [float(i) for i in range(50_001)]
    assert stored(tracking_dir, run.id, "b") == [float(i) for i in range(1, 50_001)]


def test_disk_full_at_finish_says_how_many_points_were_not_stored(
    tracking_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = expertrack.init(project="full", mirror="off")
    run.log({"a": -1.0})
    assert run.flush()
    fill_disk(run)
    for i in range(100_000):
        run.log({"a": float(i)})
    run.finish()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "could not be stored" in line]
    assert len(lines) == 1 and "disk full" in lines[0] and str(tracking_dir / "store.db") in lines[0], err
    not_stored = int(lines[0].split(" points of run")[0].rsplit(" ", 1)[-1].replace(",", ""))
    kept = stored(tracking_dir, run.id, "a")
    assert kept[:1] == [-1.0] and len(kept) + not_stored == 100_001


def test_flush_is_false_when_the_writer_thread_is_not_running(tracking_dir: Path) -> None:
    store = SQLiteStore(tracking_dir / "store.db")
    writer = Writer(store, "no-such-run", Notifier())
    assert writer.flush(timeout=5) is False  # never started: nothing can have been written
    writer.start()
    assert writer.close(timeout=30)
    assert writer.flush(timeout=5) is False  # stopped


def test_flush_writes_the_open_row_of_an_explicit_step(tracking_dir: Path) -> None:
    run = expertrack.init(project="open", mirror="off")
    run.log({"loss": 1.0}, step=5)  # the row stays open until a later step (wandb's rule)
    assert run.flush()
    assert stored(tracking_dir, run.id, "loss") == [1.0]
    run.log({"loss": 2.0}, step=5)  # still open: the later value at step 5 wins
    run.log({"loss": 3.0}, step=6)
    run.finish()
    steps, _, values = expertrack.Api(tracking_dir).run(run.id).scalars("loss")
    assert (steps.tolist(), values.tolist()) == ([5, 6], [2.0, 3.0])


OPEN_ROW_THEN_SILENCE = """
import time, expertrack
run = expertrack.init(project="open")
run.log({"loss": 0.25}, step=7)  # then nothing more, for a long time
print(run.id, flush=True)
time.sleep(120)
"""


def test_an_open_row_reaches_the_store_within_the_flush_interval(tracking_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", OPEN_ROW_THEN_SILENCE],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "EXPERTRACK_DIR": str(tracking_dir), "EXPERTRACK_MIRROR": "off"},
    )
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stored(tracking_dir, run_id, "loss"):
            time.sleep(0.05)
        assert stored(tracking_dir, run_id, "loss") == [0.25]  # without flush(), finish() or a later step
    finally:
        proc.kill()
        proc.communicate()
